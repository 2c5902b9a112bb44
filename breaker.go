package palleto

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// breaker is the circuit breaker of the daemon's dependencies (S3, the results store). A failure
// of the world counts against a dependency; failuresToOpen of them in a row, with no success in
// between, open it: receiving pauses (wait blocks the pollers), /readyz says why, and the log
// says so once. While open, a probe (the call that failed, made again) runs every probeEvery,
// doubling up to maxProbeEvery; the first probe or object that works closes it, the log says so
// once, and receiving resumes. Nothing is deleted and no poison guard counts meanwhile: the
// messages in flight were put back with a retry delay, the rest wait in the queue.
type breaker struct {
	log           *slog.Logger
	probeEvery    time.Duration
	maxProbeEvery time.Duration
	probeTimeout  time.Duration
	onChange      func(dep string, open bool, why error) // metrics and the status page; optional

	mu     sync.Mutex
	deps   map[string]*dependency
	shut   chan struct{} // closed while no dependency is open
	ctx    context.Context
	stop   context.CancelFunc
	probes sync.WaitGroup
}

const failuresToOpen = 3

type dependency struct {
	name    string
	inARow  int
	open    bool
	since   time.Time
	lastErr error
	probe   func(ctx context.Context) error
}

func newBreaker(log *slog.Logger) *breaker {
	b := &breaker{log: log, probeEvery: time.Second, maxProbeEvery: 10 * time.Second, probeTimeout: 30 * time.Second,
		deps: map[string]*dependency{}, shut: make(chan struct{})}
	b.ctx, b.stop = context.WithCancel(context.Background())
	close(b.shut)
	return b
}

func (b *breaker) dep(name string) *dependency {
	d := b.deps[name]
	if d == nil {
		d = &dependency{name: name}
		b.deps[name] = d
	}
	return d
}

// failure counts a failure of the world against dep; probe is the call that failed, to be made
// again until it works. It reports whether dep is open now.
func (b *breaker) failure(dep string, err error, probe func(ctx context.Context) error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.dep(dep)
	d.inARow++
	d.lastErr = err
	if probe != nil {
		d.probe = probe
	}
	if d.open || d.inARow < failuresToOpen {
		return d.open
	}
	d.open, d.since = true, time.Now()
	if b.openCount() == 1 {
		b.shut = make(chan struct{})
	}
	b.log.Error(fmt.Sprintf("%s UNAVAILABLE: receiving paused, messages kept; probing until it answers", dep),
		"dependency", dep, "failures_in_a_row", d.inARow, "error", err)
	if b.onChange != nil {
		b.onChange(dep, true, err)
	}
	b.probes.Add(1)
	go func() { defer b.probes.Done(); b.probeLoop(d) }()
	return true
}

// success closes dep if it was open, and starts its count over.
func (b *breaker) success(dep string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.deps[dep]
	if d == nil {
		return
	}
	d.inARow = 0
	b.closeLocked(d)
}

func (b *breaker) closeLocked(d *dependency) {
	if !d.open {
		return
	}
	d.open = false
	b.log.Warn(fmt.Sprintf("%s available again: receiving resumed", d.name), "dependency", d.name, "down_for", time.Since(d.since).Round(time.Second).String())
	if b.onChange != nil {
		b.onChange(d.name, false, nil)
	}
	if b.openCount() == 0 {
		close(b.shut)
	}
}

func (b *breaker) openCount() int {
	n := 0
	for _, d := range b.deps {
		if d.open {
			n++
		}
	}
	return n
}

// isOpen reports whether dep is open.
func (b *breaker) isOpen(dep string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.deps[dep]
	return d != nil && d.open
}

func (b *breaker) probeLoop(d *dependency) {
	every := b.probeEvery
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-time.After(every):
		}
		b.mu.Lock()
		probe, open := d.probe, d.open
		b.mu.Unlock()
		if !open {
			return
		}
		ctx, cancel := context.WithTimeout(b.ctx, b.probeTimeout)
		err := errors.New("no probe")
		if probe != nil {
			err = probe(ctx)
		}
		cancel()
		b.mu.Lock()
		if err == nil {
			d.inARow = 0
			b.closeLocked(d)
			b.mu.Unlock()
			return
		}
		d.lastErr = err
		b.mu.Unlock()
		b.log.Debug("probe: still unavailable", "dependency", d.name, "error", err)
		every = min(2*every, b.maxProbeEvery)
	}
}

// wait blocks while a dependency is open; it is the pollers' gate.
func (b *breaker) wait(ctx context.Context) error {
	b.mu.Lock()
	shut := b.shut
	b.mu.Unlock()
	select {
	case <-shut:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// err says which dependencies are open, since when and why; nil when none is.
func (b *breaker) err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	var parts []string
	for _, d := range b.deps {
		if d.open {
			parts = append(parts, fmt.Sprintf("%s unavailable for %s: %v", d.name, time.Since(d.since).Round(time.Second), d.lastErr))
		}
	}
	if len(parts) == 0 {
		return nil
	}
	sort.Strings(parts)
	return errors.New(strings.Join(parts, "; "))
}

// close stops the probes and waits for them.
func (b *breaker) close() {
	b.stop()
	b.probes.Wait()
}
