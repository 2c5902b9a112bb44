package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// ErrPanic is wrapped by the error an item is settled with when its handler panicked.
var ErrPanic = errors.New("handler panicked")

// PanicError carries a recovered panic and its stack.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("handler panicked: %v", e.Value) }
func (e *PanicError) Unwrap() error { return ErrPanic }

// Config sizes a Pipeline.
type Config struct {
	Producer ProducerConfig
	// Workers is how many items are handled at once; each worker asks for one item when idle.
	Workers int
	// Prefetch is demand beyond the idle workers: the pipeline asks for this many items once, at
	// start, and every item a worker takes is asked for again, so up to Prefetch received items
	// wait for a worker (Broadway's max_demand, shared by the workers). It hides the poll's
	// round trip from workers that finish quickly; 0 asks only for idle workers. Items still
	// waiting at shutdown are handed back (Handler.Release).
	Prefetch int
	// ShutdownTimeout bounds how long in-flight items may take to finish after Run's context is
	// done; then their context is cancelled.
	ShutdownTimeout time.Duration
	// HardStopTimeout bounds how long Run waits, after cancelling in-flight items, for handlers
	// that do not return; then Run returns without them (their items come back when the source's
	// own timeout says so). 0 means 10s.
	HardStopTimeout time.Duration
	// ExitWhenIdle, when positive, makes Run return once nothing is in flight, the last poll came
	// back empty, and nothing was received or finished for that long.
	ExitWhenIdle time.Duration
	// Busy, when set, holds an idle exit while it reports true: work the pipeline settled that
	// its owner has not finished (results waiting to commit, acknowledgements in a queue).
	Busy func() bool
	// Logger gets panics with their stacks; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns 8 workers fed by 1 poller, a 30s shutdown grace period, no idle exit.
func DefaultConfig() Config {
	return Config{Producer: DefaultProducerConfig(), Workers: 8, ShutdownTimeout: 30 * time.Second}
}

// Validate reports the first setting out of range, naming it.
func (c Config) Validate() error {
	if err := c.Producer.Validate(); err != nil {
		return err
	}
	if c.Workers < 1 || c.Workers > 10000 {
		return fmt.Errorf("workers: %d is out of range [1, 10000]", c.Workers)
	}
	if c.Prefetch < 0 || c.Prefetch > 1000 {
		return fmt.Errorf("prefetch: %d is out of range [0, 1000]", c.Prefetch)
	}
	if c.ShutdownTimeout < 0 {
		return fmt.Errorf("shutdown-timeout: %s must be 0s or more", c.ShutdownTimeout)
	}
	if c.HardStopTimeout < 0 {
		return fmt.Errorf("hard-stop-timeout: %s must be 0s (default 10s) or more", c.HardStopTimeout)
	}
	if c.ExitWhenIdle < 0 {
		return fmt.Errorf("exit-when-idle: %s must be 0s (off) or more", c.ExitWhenIdle)
	}
	return nil
}

// Handler is what a Pipeline does with items.
type Handler[T any] struct {
	// Handle processes one item on worker number worker (1-based). Its ctx is cancelled only at
	// the hard stop after ShutdownTimeout. Required.
	Handle func(ctx context.Context, worker int, item T) error
	// Settle is called exactly once for every item handed to a worker, after Handle, with Handle's
	// error; a panic in Handle is settled with a *PanicError (errors.Is ErrPanic). Required.
	Settle func(item T, err error)
	// Release is given the items that were received but never handed to a worker, once, when Run
	// stops, and an item taken early (TakeNext) by a worker that then stopped or taken by a worker
	// as Run stopped; the last two from the worker's goroutine. Optional.
	Release func(items []T)
	// Prepare is told of an item a worker took early with TakeNext, the one it handles next,
	// on that worker's goroutine, within the Handle that called TakeNext. It must not block:
	// it may start work for the item (a download) that Handle then takes up. Optional.
	Prepare func(ctx context.Context, worker int, item T)
}

// Pipeline is a Producer feeding Workers supervised workers.
type Pipeline[T any] struct {
	cfg  Config
	h    Handler[T]
	prod *Producer[T]
	log  *slog.Logger

	inFlight     atomic.Int64
	lastActivity atomic.Int64 // unix nanos of the last item received or settled
	emptyPolls   atomic.Int64 // polls that came back empty since lastActivity
	// An empty poll proves little while an older poll is still out: that one may hold the
	// messages (servers hand a message to one poll only). emptyMark is the highest poll ID
	// started when the first empty poll since lastActivity came back; the queue counts as
	// empty only once every poll up to it is back (oldestActive, as last reported, is past it).
	emptyMark, oldestActive atomic.Int64
	// Items handed back to come again later (a retry delay) are work still to do: deferredUntil
	// is the latest time one comes back (unix nanos), and the queue counts as empty only once a
	// poll started after it came back empty (emptyPollStart, unix nanos).
	deferredUntil, emptyPollStart atomic.Int64
	idleStop                      atomic.Bool  // Run is stopping because the queue stayed empty
	idleWorkers                   atomic.Int64 // workers waiting for an item now
}

// New returns a Pipeline; cfg must be valid and h.Handle and h.Settle set.
func New[T any](src Source[T], cfg Config, h Handler[T]) *Pipeline[T] {
	p := &Pipeline[T]{cfg: cfg, h: h, log: cfg.Logger}
	if p.log == nil {
		p.log = slog.Default()
	}
	pc := cfg.Producer
	if pc.DrainPolls == 0 {
		pc.DrainPolls = cfg.ShutdownTimeout
	}
	user := pc.OnReceive
	pc.OnReceive = func(d PollDone) {
		p.oldestActive.Store(int64(d.OldestActive))
		if d.Items > 0 {
			p.touch()
		} else if d.Err == nil {
			storeMax(&p.emptyPollStart, d.StartedAt.UnixNano())
			if p.emptyPolls.Load() == 0 { // the mark first: watchIdle reads emptyPolls, then the mark
				p.emptyMark.Store(int64(d.Started))
			}
			p.emptyPolls.Add(1)
		}
		if user != nil {
			user(d)
		}
	}
	p.prod = NewProducer(src, pc)
	p.touch()
	return p
}

// Demand is the workers' demand not yet met by the source.
func (p *Pipeline[T]) Demand() int { return p.prod.Demand() }

// InFlight is the number of items being handled now.
func (p *Pipeline[T]) InFlight() int { return int(p.inFlight.Load()) }

// Deferred tells the pipeline that an item it settled will come back from the source at until
// (a retry delay): an idle exit waits for it. Safe to call from Settle.
func (p *Pipeline[T]) Deferred(until time.Time) { storeMax(&p.deferredUntil, until.UnixNano()) }

func storeMax(v *atomic.Int64, n int64) {
	for {
		old := v.Load()
		if n <= old || v.CompareAndSwap(old, n) {
			return
		}
	}
}

func (p *Pipeline[T]) touch() {
	p.emptyPolls.Store(0)
	p.emptyMark.Store(0)
	p.lastActivity.Store(time.Now().UnixNano())
}

func (p *Pipeline[T]) trace(format string, args ...any) {
	if p.cfg.Producer.Trace != nil {
		p.cfg.Producer.Trace(format, args...)
	}
}

// Run runs the pipeline until ctx is done (or, with ExitWhenIdle, until idle). Then it stops
// polling, lets in-flight items finish within ShutdownTimeout (cancelling their context after
// that), releases items never started, and returns. It returns ctx's error if stopped by ctx.
func (p *Pipeline[T]) Run(ctx context.Context) error {
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()

	var undelivered []T
	prodDone := make(chan struct{})
	go func() {
		defer close(prodDone)
		undelivered = p.prod.Run(pollCtx)
	}()

	if p.cfg.Prefetch > 0 {
		p.trace("pipeline: prefetch asks for %d events", p.cfg.Prefetch)
		p.prod.Ask(p.cfg.Prefetch)
	}
	var workers sync.WaitGroup
	for i := 1; i <= p.cfg.Workers; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			p.supervise(pollCtx, workCtx, i)
		}()
	}

	idleDone := make(chan struct{})
	go func() {
		defer close(idleDone)
		p.watchIdle(pollCtx, stopPolling)
	}()

	<-pollCtx.Done()
	<-idleDone
	workersDone := make(chan struct{})
	go func() { workers.Wait(); close(workersDone) }()
	select {
	case <-workersDone:
	case <-time.After(p.cfg.ShutdownTimeout):
		p.log.Warn("shutdown timeout reached; cancelling in-flight work", "in_flight", p.InFlight(), "timeout", p.cfg.ShutdownTimeout)
		cancelWork()
		hard := p.cfg.HardStopTimeout
		if hard == 0 {
			hard = 10 * time.Second
		}
		select {
		case <-workersDone:
		case <-time.After(hard):
			// A handler that ignores its context (a stuck call with no deadline) must not hold the
			// process: its item was never settled, so it comes back by the source's own timeout.
			p.log.Error("in-flight work did not stop after cancelling; leaving it", "in_flight", p.InFlight(), "waited", hard)
		}
	}
	<-prodDone
	if len(undelivered) > 0 && p.idleStop.Load() && ctx.Err() == nil {
		// A poll that was out when the queue looked idle brought items back. Nobody asked to
		// stop: handle them rather than hand them back to a queue that other idle consumers
		// may already have left.
		p.trace("pipeline: %d events arrived while stopping for idleness; handling them", len(undelivered))
		undelivered = p.handleRest(ctx, workCtx, undelivered)
	}
	if len(undelivered) > 0 {
		p.trace("producer: releasing %d events never started", len(undelivered))
		if p.h.Release != nil {
			p.h.Release(undelivered)
		}
	}
	return ctx.Err()
}

// handleRest handles items with up to Workers goroutines, and returns those not started because
// ctx was done first.
func (p *Pipeline[T]) handleRest(ctx, workCtx context.Context, items []T) (notStarted []T) {
	ch := make(chan T) // unbuffered: an item is taken only by a free goroutine
	var wg sync.WaitGroup
	for i := 1; i <= min(p.cfg.Workers, len(items)); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for item := range ch {
				p.handleAndSettle(workCtx, i, item)
			}
		}()
	}
	for k, item := range items {
		select {
		case ch <- item:
		case <-ctx.Done():
			notStarted = items[k:]
		}
		if notStarted != nil {
			break
		}
	}
	close(ch)
	wg.Wait()
	return notStarted
}

func (p *Pipeline[T]) watchIdle(ctx context.Context, stop func()) {
	if p.cfg.ExitWhenIdle <= 0 {
		<-ctx.Done()
		return
	}
	tick := time.NewTicker(max(p.cfg.ExitWhenIdle/20, 5*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			idleFor := time.Since(time.Unix(0, p.lastActivity.Load()))
			oldest := p.oldestActive.Load()
			allBack := oldest == 0 || oldest > p.emptyMark.Load()
			// An item in a retry delay is still to do: wait until a poll started after its return
			// came back empty.
			deferredBack := p.emptyPollStart.Load() > p.deferredUntil.Load()
			busy := p.cfg.Busy != nil && p.cfg.Busy()
			if p.inFlight.Load() == 0 && p.emptyPolls.Load() > 0 && allBack && deferredBack && !busy && idleFor >= p.cfg.ExitWhenIdle {
				p.trace("pipeline: idle for %s with nothing in flight; stopping", idleFor.Round(time.Millisecond))
				p.idleStop.Store(true)
				stop()
				return
			}
		}
	}
}

// supervise runs worker i, restarting it after a crash, until polling stops.
func (p *Pipeline[T]) supervise(pollCtx, workCtx context.Context, i int) {
	w := &worker[T]{p: p, i: i}
	for pollCtx.Err() == nil {
		if !p.work(pollCtx, workCtx, w) {
			break
		}
		p.trace("supervisor: pipeline %d crashed; restarted", i)
	}
	if item, ok := w.takeHeld(); ok { // taken early, never started: it goes back as the producer's items do
		p.trace("pipeline %d: releasing the event it had taken early", i)
		p.inFlight.Add(-1)
		if p.h.Release != nil {
			p.h.Release([]T{item})
		}
	}
}

// worker is one worker's state that outlives a crash: the item it took early (TakeNext).
type worker[T any] struct {
	p *Pipeline[T]
	i int

	mu      sync.Mutex // a handler may read its input on a goroutine of its own
	next    T
	hasNext bool
}

// takeHeld returns the item taken early, if any, and forgets it.
func (w *worker[T]) takeHeld() (T, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	item, ok := w.next, w.hasNext
	var zero T
	w.next, w.hasNext = zero, false
	return item, ok
}

type workerKey struct{}

// takeNext is TakeNext for this worker.
func (w *worker[T]) takeNext(ctx context.Context) bool {
	p := w.p
	w.mu.Lock()
	if w.hasNext || p.idleWorkers.Load() > 0 {
		w.mu.Unlock()
		return false // one item ahead at most, and never one an idle worker could start now
	}
	var item T
	select {
	case item = <-p.prod.Out():
		w.next, w.hasNext = item, true
		p.inFlight.Add(1)
		w.mu.Unlock()
	default:
		w.mu.Unlock()
		return false
	}
	p.prod.Ask(1) // what was taken is asked for again, as a worker's every take is
	p.trace("pipeline %d: took its next event early", w.i)
	if p.h.Prepare != nil {
		p.h.Prepare(ctx, w.i, item)
	}
	return true
}

// TakeNext, called from a Handle, takes the item its worker will handle next now, when one
// was received and waits for a worker and no worker is idle, and gives it to Handler.Prepare:
// the worker's next item can start (its download) while this one finishes. The item is handled
// by the same worker once Handle returns, or handed back (Handler.Release) if the worker stops
// first. It returns whether an item was taken; a worker holds one item ahead at most.
func TakeNext(ctx context.Context) bool {
	w, ok := ctx.Value(workerKey{}).(interface{ takeNext(context.Context) bool })
	return ok && w.takeNext(ctx)
}

// work is one life of worker w: it asks for one item at a time and handles it. It returns true
// if the worker crashed (and should be restarted), false when polling stopped.
func (p *Pipeline[T]) work(pollCtx, workCtx context.Context, w *worker[T]) (crashed bool) {
	ctx := context.WithValue(workCtx, workerKey{}, w)
	for {
		w.mu.Lock()
		held := w.hasNext
		w.mu.Unlock()
		var item T
		if held {
			if pollCtx.Err() != nil {
				return false // supervise hands it back
			}
			item, _ = w.takeHeld()
		} else {
			p.trace("pipeline %d: asks for 1 event", w.i)
			p.idleWorkers.Add(1)
			p.prod.Ask(1)
			select {
			case <-pollCtx.Done():
				p.idleWorkers.Add(-1)
				return false
			case item = <-p.prod.Out():
			}
			p.idleWorkers.Add(-1)
			if pollCtx.Err() != nil && !p.idleStop.Load() {
				// Stopped as the item came: it was never started, so it goes back as the
				// producer's undelivered items do (an idle stop handles them instead).
				if p.h.Release != nil {
					p.h.Release([]T{item})
				}
				return false
			}
			p.inFlight.Add(1)
		}
		if err := p.handleCounted(ctx, w.i, item); errors.Is(err, ErrPanic) {
			return true
		}
	}
}

// handleAndSettle handles item on worker i, settles it with the outcome, and returns that outcome.
func (p *Pipeline[T]) handleAndSettle(ctx context.Context, i int, item T) error {
	p.inFlight.Add(1)
	return p.handleCounted(ctx, i, item)
}

// handleCounted is handleAndSettle for an item already counted in flight.
func (p *Pipeline[T]) handleCounted(ctx context.Context, i int, item T) error {
	err := p.handle(ctx, i, item)
	p.h.Settle(item, err)
	p.inFlight.Add(-1)
	p.touch()
	return err
}

func (p *Pipeline[T]) handle(ctx context.Context, i int, item T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			pe := &PanicError{Value: r, Stack: debug.Stack()}
			p.log.Error("pipeline worker panicked; item failed and worker restarted", "pipeline", i, "panic", fmt.Sprint(r), "stack", string(pe.Stack))
			err = pe
		}
	}()
	return p.h.Handle(ctx, i, item)
}
