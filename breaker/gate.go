package breaker

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// What the breaker tells the pollers (Admit, Wait, PausedSince) and the operator (Err, States).

// Admit says whether a receive may go now. When not, wake is closed at the next open or close,
// and retry, when not 0, is when to ask again (the next trial).
func (b *Breaker) Admit() (ok bool, wake <-chan struct{}, retry time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	paused, trial := b.pausedLocked()
	if !paused {
		return true, nil, 0
	}
	if !trial {
		return false, b.changed, 0
	}
	now := b.cfg.Clock.Now()
	if !now.Before(b.nextTrial) {
		b.nextTrial = now.Add(b.cfg.TrialEvery)
		return true, nil, 0
	}
	return false, b.changed, b.nextTrial.Sub(now)
}

// pausedLocked: receiving pauses while a dependency with no scope is open (trial false: until it
// closes), or every known scope of a dependency is (trial true: one receive per TrialEvery).
func (b *Breaker) pausedLocked() (paused, trial bool) {
	scopes := map[string][2]int{} // dep: known, open
	for _, d := range b.deps {
		if d.key.Scope == "" {
			if d.state == open {
				return true, false
			}
			continue
		}
		c := scopes[d.key.Dep]
		c[0]++
		if d.state == open {
			c[1]++
		}
		scopes[d.key.Dep] = c
	}
	for _, c := range scopes {
		if c[0] > 0 && c[0] == c[1] {
			return true, true
		}
	}
	return false, false
}

// PausedSince returns since when receiving has been paused without a break (Admit's trials
// aside); zero while it is not.
func (b *Breaker) PausedSince() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.paused
}

// Wait blocks while Admit says no; it is the pollers' gate. It returns ctx's error when ctx ends
// first.
func (b *Breaker) Wait(ctx context.Context) error {
	for {
		ok, wake, retry := b.Admit()
		if ok {
			return nil
		}
		var timer <-chan time.Time
		if retry > 0 {
			timer = b.cfg.Clock.After(retry)
		}
		select {
		case <-wake:
		case <-timer:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Err says why receiving is paused (which dependencies are open, since when and why); nil when
// it is not.
func (b *Breaker) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if paused, _ := b.pausedLocked(); !paused {
		return nil
	}
	var parts []string
	for _, s := range b.statesLocked() {
		if s.Open {
			parts = append(parts, fmt.Sprintf("%s unavailable for %s: %v", s.Key, b.cfg.Clock.Now().Sub(s.Since).Round(time.Second), s.Err))
		}
	}
	return errors.New(strings.Join(parts, "; "))
}

// State is one dependency as the breaker sees it.
type State struct {
	Key   Key
	Open  bool
	Since time.Time // when it opened; zero while closed
	Err   error     // its last failure
}

// States returns every dependency the breaker tracks, sorted by key.
func (b *Breaker) States() []State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.statesLocked()
}

func (b *Breaker) statesLocked() []State {
	out := make([]State, 0, len(b.deps))
	for _, d := range b.deps {
		s := State{Key: d.key, Open: d.state == open, Err: d.lastErr}
		if s.Open {
			s.Since = d.since
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.String() < out[j].Key.String() })
	return out
}
