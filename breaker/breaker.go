// Package breaker is the circuit breaker of the daemon's dependencies: S3 (one per bucket) and
// the results store. A failure of the world counts against the dependency it names; enough of
// them in a row make it suspect, and a probe (a cheap call of the dependency's own, never the
// call that failed) decides: the dependency answers (it stays closed: the failures were the
// objects' own business) or it does not (it opens). While it is open, the probe runs again with a
// growing interval, and the first probe or call that works closes it.
//
// What an open dependency stops depends on its Key: a dependency with no Scope (the results
// store) is needed by every message, so receiving pauses (Admit, Wait); a scoped one (S3 of one
// bucket) stops only the work that needs it (Allow: the daemon defers those messages without
// calling it), unless every scope of it the breaker knows is open (S3 as a whole is down), which
// pauses receiving too. One unreadable bucket, or a forged event naming a bucket that refuses us,
// never stops the others: and even then one receive per TrialEvery still goes out, so a bucket
// not seen yet is found and resumes the work.
package breaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// Key names a dependency: what it is (Dep: "S3", "results store") and, for a dependency of many
// parts that fail apart, which part (Scope: the bucket, for S3). Scope "" is a dependency every
// message needs.
type Key struct{ Dep, Scope string }

func (k Key) String() string {
	if k.Scope == "" {
		return k.Dep
	}
	return k.Dep + " (" + k.Scope + ")"
}

// Probe is a cheap call that says whether a dependency answers (nil) or not.
type Probe func(ctx context.Context) error

// Clock is the time the breaker waits on; tests give it a fake one.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config sets a Breaker up; zero fields take the defaults of New.
type Config struct {
	Logger *slog.Logger
	// FailuresToOpen failures of the world in a row, with no success between, make a dependency
	// suspect: its probe runs at once, and opens it only if it fails too. Default 3.
	FailuresToOpen int
	// ProbeEvery is the probe's interval once open, doubling up to MaxProbeEvery; ProbeTimeout
	// bounds each probe. Defaults 1s, 10s, 30s.
	ProbeEvery, MaxProbeEvery, ProbeTimeout time.Duration
	// TrialEvery is how often an open dependency lets one call (Allow) or one receive (Admit)
	// through, the half-open trial that closes it when its probe cannot. Default MaxProbeEvery.
	TrialEvery time.Duration
	// MaxScopes bounds the scopes kept per dependency (memory stays bounded whatever buckets
	// events name): past it, closed scopes are forgotten, and a new scope is not tracked while
	// every kept one is open. Default 1000.
	MaxScopes int
	// OnChange, when set, is told each open and close, with how many keys of the same Dep are
	// open after it. It is called with the breaker's lock held: it must not call the breaker.
	OnChange func(k Key, open bool, openOfDep int, why error)
	Clock    Clock
}

// Breaker tracks dependencies. Safe for concurrent use. Close it to stop its probes.
type Breaker struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	deps      map[Key]*dep
	changed   chan struct{} // closed and replaced at every open and close
	nextTrial time.Time     // of Admit, while receiving is paused by scoped dependencies only
	paused    time.Time     // since when receiving is paused; zero while it is not
	ctx       context.Context
	stop      context.CancelFunc
	probes    sync.WaitGroup
}

type state int

const (
	closed  state = iota
	suspect       // FailuresToOpen reached: the first probe decides
	open
)

type dep struct {
	key       Key
	inARow    int
	state     state
	probing   bool // a probe loop runs for it
	since     time.Time
	lastErr   error
	probe     Probe
	nextTrial time.Time // of Allow
}

// New returns a Breaker with cfg's zero fields set to their defaults.
func New(cfg Config) *Breaker {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.FailuresToOpen <= 0 {
		cfg.FailuresToOpen = 3
	}
	if cfg.ProbeEvery <= 0 {
		cfg.ProbeEvery = time.Second
	}
	if cfg.MaxProbeEvery <= 0 {
		cfg.MaxProbeEvery = 10 * time.Second
	}
	if cfg.ProbeTimeout <= 0 {
		cfg.ProbeTimeout = 30 * time.Second
	}
	if cfg.TrialEvery <= 0 {
		cfg.TrialEvery = cfg.MaxProbeEvery
	}
	if cfg.MaxScopes <= 0 {
		cfg.MaxScopes = 1000
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	b := &Breaker{cfg: cfg, log: cfg.Logger, deps: map[Key]*dep{}, changed: make(chan struct{})}
	b.ctx, b.stop = context.WithCancel(context.Background())
	return b
}

// get returns k's entry, making it when missing; nil when k is a new scope and MaxScopes kept
// scopes of its Dep are all open.
func (b *Breaker) get(k Key) *dep {
	if d := b.deps[k]; d != nil {
		return d
	}
	if k.Scope != "" && b.scopes(k.Dep) >= b.cfg.MaxScopes {
		for key, d := range b.deps { // forget one closed scope (any) to make room
			if key.Dep == k.Dep && key.Scope != "" && d.state == closed && !d.probing {
				delete(b.deps, key)
				break
			}
		}
		if b.scopes(k.Dep) >= b.cfg.MaxScopes {
			return nil
		}
	}
	d := &dep{key: k}
	b.deps[k] = d
	return d
}

func (b *Breaker) scopes(dep string) int {
	n := 0
	for k := range b.deps {
		if k.Dep == dep && k.Scope != "" {
			n++
		}
	}
	return n
}

// Failure counts a failure of the world against k; probe, when not nil, becomes k's probe. It
// reports whether k is open now.
func (b *Breaker) Failure(k Key, err error, probe Probe) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.get(k)
	if d == nil {
		return false
	}
	d.inARow++
	d.lastErr = err
	if probe != nil {
		d.probe = probe
	}
	if d.state != closed || d.inARow < b.cfg.FailuresToOpen {
		return d.state == open
	}
	d.state = suspect
	if !d.probing {
		d.probing = true
		b.probes.Add(1)
		go func() { defer b.probes.Done(); b.probeLoop(d) }()
	}
	return false
}

// Success says a call of k worked: k's count starts over, and k closes if it was open.
func (b *Breaker) Success(k Key) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.deps[k]
	if d == nil {
		if k.Scope == "" {
			return
		}
		if d = b.get(k); d == nil { // a scope is known from its first success: Admit needs it
			return
		}
	}
	d.inARow = 0
	b.closeLocked(d)
}

func (b *Breaker) openLocked(d *dep) {
	d.state, d.since = open, b.cfg.Clock.Now()
	d.nextTrial = d.since.Add(b.cfg.TrialEvery)
	what := "the messages that need it are put back with a retry delay"
	if d.key.Scope == "" {
		what = "receiving paused"
	}
	b.log.Error(fmt.Sprintf("%s UNAVAILABLE%s: %s, messages kept; probing until it answers", d.key.Dep, scope(d.key), what),
		"dependency", d.key.String(), "failures_in_a_row", d.inARow, "error", d.lastErr)
	b.notifyLocked(d.key, true, d.lastErr)
}

func (b *Breaker) closeLocked(d *dep) {
	was := d.state
	d.state = closed
	if was != open {
		return
	}
	b.log.Warn(fmt.Sprintf("%s available again%s: its work resumes", d.key.Dep, scope(d.key)), "dependency", d.key.String(),
		"down_for", b.cfg.Clock.Now().Sub(d.since).Round(time.Second).String())
	b.notifyLocked(d.key, false, nil)
}

// scope is how the log names k's scope: " (bucket)" after the dependency's name and state, so
// that "S3 UNAVAILABLE" reads the same for every bucket.
func scope(k Key) string {
	if k.Scope == "" {
		return ""
	}
	return " (" + k.Scope + ")"
}

func (b *Breaker) notifyLocked(k Key, isOpen bool, why error) {
	close(b.changed)
	b.changed = make(chan struct{})
	switch paused, _ := b.pausedLocked(); {
	case !paused:
		b.paused = time.Time{}
	case b.paused.IsZero():
		b.paused = b.cfg.Clock.Now()
	}
	if b.cfg.OnChange != nil {
		n := 0
		for _, d := range b.deps {
			if d.key.Dep == k.Dep && d.state == open {
				n++
			}
		}
		b.cfg.OnChange(k, isOpen, n, why)
	}
}

// probeLoop probes d at once (it is suspect), then, once it is open, every ProbeEvery doubling
// up to MaxProbeEvery, until it answers or is closed by a success.
func (b *Breaker) probeLoop(d *dep) {
	every := b.cfg.ProbeEvery
	for first := true; ; first = false {
		if !first {
			select {
			case <-b.ctx.Done():
				b.mu.Lock()
				d.probing = false
				b.mu.Unlock()
				return
			case <-b.cfg.Clock.After(every):
			}
			every = min(2*every, b.cfg.MaxProbeEvery)
		}
		b.mu.Lock()
		probe := d.probe
		if d.state == closed {
			d.probing = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		err := errors.New("no probe")
		if probe != nil {
			ctx, cancel := context.WithTimeout(b.ctx, b.cfg.ProbeTimeout)
			err = probe(ctx)
			cancel()
		}
		b.mu.Lock()
		switch {
		case b.ctx.Err() != nil:
			d.probing = false
			b.mu.Unlock()
			return
		case err == nil:
			if d.state == suspect {
				b.log.Debug("failures in a row, but the dependency answers its probe: not opened", "dependency", d.key.String(), "last_error", d.lastErr)
			}
			d.inARow = 0
			b.closeLocked(d)
			d.probing = false
			b.mu.Unlock()
			return
		case d.state == closed: // a success came while the probe ran
			d.probing = false
			b.mu.Unlock()
			return
		}
		d.lastErr = err
		if d.state == suspect {
			b.openLocked(d)
		} else {
			b.log.Debug("probe: still unavailable", "dependency", d.key.String(), "error", err)
		}
		b.mu.Unlock()
	}
}

// IsOpen reports whether k is open.
func (b *Breaker) IsOpen(k Key) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.deps[k]
	return d != nil && d.state == open
}

// Allow reports whether a call of k may go now: always while k is not open; while it is, once
// per TrialEvery (the half-open trial, which closes it by working when its probe cannot).
func (b *Breaker) Allow(k Key) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.deps[k]
	if d == nil || d.state != open {
		return true
	}
	now := b.cfg.Clock.Now()
	if now.Before(d.nextTrial) {
		return false
	}
	d.nextTrial = now.Add(b.cfg.TrialEvery)
	return true
}

// Close stops the probes and waits for them.
func (b *Breaker) Close() {
	b.stop()
	b.probes.Wait()
}
