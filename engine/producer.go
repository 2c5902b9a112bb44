// Package engine is Palleto's demand-driven stage engine, the GenStage/Broadway model done the Go
// way: consumers ask for N items, the Producer asks its Source for at most the unmet demand (in up
// to Pollers concurrent calls of at most MaxBatch each, of which at most one asks for less than
// MaxBatch, and none while MaxBatch received items still wait for a consumer), hands items over
// only to consumers that are waiting for them, and never calls the Source while there is no
// demand.
//
// The engine knows nothing of AWS: an SQS queue, a file or a test fake plug in as a Source.
package engine

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Source produces items on demand.
//
// Receive returns at most max items (1 <= max <= the producer's MaxBatch). It may block (a long
// poll) and may return no items. It must return promptly once ctx is done. Receive is called from
// up to Pollers goroutines at once.
type Source[T any] interface {
	Receive(ctx context.Context, max int) ([]T, error)
}

// Tracer receives the engine's flow in words (demand asked, polls started, items received). It is
// called from several goroutines; nil means no trace.
type Tracer func(format string, args ...any)

// ProducerConfig sizes a Producer.
type ProducerConfig struct {
	// Pollers is how many Receive calls may be in flight at once. Of those, at most one asks for
	// less than MaxBatch, and none does while MaxBatch received items or more wait for a
	// consumer: demand that comes in one unit at a time is gathered, not spread over many small
	// calls.
	Pollers int
	// MaxBatch caps what one Receive call asks for (SQS allows 10).
	MaxBatch int

	// ErrorBackoff is how long the producer waits before polling again after a Receive error;
	// it doubles with each error in a row, up to MaxErrorBackoff (default 30s), and starts over
	// after a Receive that works.
	ErrorBackoff    time.Duration
	MaxErrorBackoff time.Duration
	// Gate, when set, is called by each poll before it calls Receive, and blocks while receiving
	// must pause (a circuit breaker: a dependency the items need is down). It returns nil when
	// the poll may go on, or ctx's error once the producer stops.
	Gate func(ctx context.Context) error
	// Trace, when set, is told of demand and polls.
	Trace Tracer
	// DrainPolls is how long Run, once stopped, waits for polls in flight to come back before
	// cancelling them. Items they bring are returned as undelivered, so the caller can hand them
	// back at once; a cancelled poll may have taken messages that then wait out their timeout.
	DrainPolls time.Duration
	// OnReceive, when set, is called after each Receive returns, from the producer's goroutine.
	// Used for idle detection and metrics.
	OnReceive func(PollDone)
}

// PollDone describes a Receive call that returned.
type PollDone struct {
	ID           int   // the poll's number, counting from 1
	Items        int   // items it brought
	Err          error // its error, if any
	Started      int   // polls started so far: the highest ID
	OldestActive int   // the lowest ID of a poll still in flight; 0 when none is
	// StartedAt is when its Receive was called (after the Gate let it through).
	StartedAt time.Time
}

// DefaultProducerConfig returns one poller asking for up to 10 items.
func DefaultProducerConfig() ProducerConfig {
	return ProducerConfig{Pollers: 1, MaxBatch: 10, ErrorBackoff: time.Second, MaxErrorBackoff: 30 * time.Second}
}

// Validate reports the first setting out of range.
func (c ProducerConfig) Validate() error {
	if c.Pollers < 1 || c.Pollers > 100 {
		return fmt.Errorf("pollers: %d is out of range [1, 100]", c.Pollers)
	}
	if c.MaxBatch < 1 {
		return fmt.Errorf("max batch: %d must be at least 1", c.MaxBatch)
	}
	if c.ErrorBackoff < 0 || c.MaxErrorBackoff < 0 {
		return fmt.Errorf("error backoff: %s (max %s) must not be negative", c.ErrorBackoff, c.MaxErrorBackoff)
	}
	return nil
}

// Producer turns demand into Receive calls. Consumers call Ask(n) and then read Out(); every item
// read from Out meets one unit of demand. Create it with NewProducer and run it with Run.
type Producer[T any] struct {
	src Source[T]
	cfg ProducerConfig

	mu     sync.Mutex
	asked  int           // demand added by Ask since the producer last looked
	signal chan struct{} // capacity 1: wakes the producer after Ask; one pending wake-up is enough
	out    chan T        // unbuffered: an item is handed over only to a consumer waiting for it
	unmet  atomic.Int64  // the unmet demand as of the producer's last look, for Demand
}

// NewProducer returns a Producer polling src. The config must be valid.
func NewProducer[T any](src Source[T], cfg ProducerConfig) *Producer[T] {
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 10
	}
	if cfg.Pollers == 0 {
		cfg.Pollers = 1
	}
	if cfg.MaxErrorBackoff == 0 {
		cfg.MaxErrorBackoff = 30 * time.Second
	}
	return &Producer[T]{src: src, cfg: cfg, signal: make(chan struct{}, 1), out: make(chan T)}
}

// Ask adds n to the demand. It never blocks and is safe for concurrent use.
func (p *Producer[T]) Ask(n int) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	p.asked += n
	p.mu.Unlock()
	select {
	case p.signal <- struct{}{}:
	default:
	}
}

// Out is where items are handed to consumers. It is never closed; consumers stop by their own
// context.
func (p *Producer[T]) Out() <-chan T { return p.out }

// Demand is the demand not yet met: asked for and not yet received. Safe to call any time.
func (p *Producer[T]) Demand() int { return int(p.unmet.Load()) }

func (p *Producer[T]) takeAsked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.asked
	p.asked = 0
	return n
}

func (p *Producer[T]) trace(format string, args ...any) {
	if p.cfg.Trace != nil {
		p.cfg.Trace(format, args...)
	}
}

// An empty poll that returned within emptyPollFast (a source that does not long-poll) makes
// the producer pause emptyPollPause before polling again.
const (
	emptyPollFast  = 50 * time.Millisecond
	emptyPollPause = 200 * time.Millisecond
)

type pollResult[T any] struct {
	id      int
	asked   int
	items   []T
	err     error
	started time.Time
	gated   bool // stopped at the gate: Receive was never called
}

// pollRequest asks a poller for one Receive of n items.
type pollRequest struct{ id, n int }

// poller runs the polls Run asks for, one at a time, until polls is closed; each sends exactly
// one result (results has room for every poll in flight) and marks it done on wg.
func (p *Producer[T]) poller(ctx, pollCtx context.Context, polls <-chan pollRequest, results chan<- pollResult[T], wg *sync.WaitGroup) {
	for r := range polls {
		if p.cfg.Gate != nil {
			if err := p.cfg.Gate(ctx); err != nil {
				results <- pollResult[T]{id: r.id, asked: r.n, err: err, gated: true}
				wg.Done()
				continue
			}
		}
		started := time.Now()
		items, err := p.src.Receive(pollCtx, r.n)
		results <- pollResult[T]{id: r.id, asked: r.n, items: items, err: err, started: started}
		wg.Done()
	}
}

// errorBackoff is the wait after the n-th Receive error in a row (n >= 1).
func (p *Producer[T]) errorBackoff(n int) time.Duration {
	b := p.cfg.ErrorBackoff
	for i := 1; i < n && b < p.cfg.MaxErrorBackoff; i++ {
		b *= 2
	}
	return min(b, max(p.cfg.MaxErrorBackoff, p.cfg.ErrorBackoff))
}

// Run polls until ctx is done, then waits for the polls in flight (cancelling them after
// DrainPolls) and returns the items that were received but never handed to a consumer, so that
// the caller can give them back.
func (p *Producer[T]) Run(ctx context.Context) (undelivered []T) {
	pollCtx, cancelPolls := context.WithCancel(context.WithoutCancel(ctx))
	// Buffered to Pollers: each poll sends exactly one result and must never block on it.
	results := make(chan pollResult[T], p.cfg.Pollers)
	var wg sync.WaitGroup
	var pending []T
	demand, asking, active, partial, pollSeq, errorsInARow := 0, 0, 0, 0, 0, 0
	inFlight := map[int]bool{} // IDs of the polls in flight
	var backoff <-chan time.Time
	// The pollers live as long as Run: a goroutine per poll would grow its stack through the
	// SDK's deep call chains on every poll (in P2's profile, 6 µs of CPU an object went to that
	// alone). At most Pollers polls are in flight, so a send on polls never blocks.
	polls := make(chan pollRequest, p.cfg.Pollers)
	for range p.cfg.Pollers {
		go p.poller(ctx, pollCtx, polls, results, &wg)
	}
	defer close(polls) // after the deferred wait below: no poll is in flight then

	defer func() {
		if active > 0 {
			p.trace("producer: stopping; waiting up to %s for %d polls in flight", p.cfg.DrainPolls, active)
		}
		stopTimer := time.AfterFunc(p.cfg.DrainPolls, cancelPolls)
		wg.Wait()
		stopTimer.Stop()
		cancelPolls()
		close(results)
		for r := range results {
			pending = append(pending, r.items...)
		}
		undelivered = pending
	}()

	for {
		if n := p.takeAsked(); n > 0 {
			demand += n
			p.trace("producer: demand +%d, unmet demand now %d", n, demand)
		}
		p.unmet.Store(int64(demand))
		for backoff == nil && active < p.cfg.Pollers && demand-asking > 0 && ctx.Err() == nil {
			n := min(p.cfg.MaxBatch, demand-asking)
			if n < p.cfg.MaxBatch && (partial > 0 || len(pending) >= p.cfg.MaxBatch) {
				// At most one poll short of a full batch at a time: demand that trickles in, one
				// finished item after another, waits for that poll to come back and then goes
				// out together, instead of each unit taking a free poller for itself. And none
				// while a full batch of received items still waits to be handed out: those keep
				// the consumers busy for longer than a poll takes, so the demand can grow to a
				// full batch first. Every poll costs a request (SQS bills them) and a round trip,
				// whatever it asks for.
				break
			}
			if n < p.cfg.MaxBatch {
				partial++
			}
			asking += n
			active++
			pollSeq++
			id := pollSeq
			inFlight[id] = true
			p.trace("producer: poll #%d asking for %d events (unmet demand %d)", id, n, demand)
			wg.Add(1)
			polls <- pollRequest{id: id, n: n}
		}
		var out chan<- T
		var next T
		if len(pending) > 0 {
			out, next = p.out, pending[0]
		}
		select {
		case <-ctx.Done():
			return
		case <-p.signal:
		case r := <-results:
			active--
			if r.asked < p.cfg.MaxBatch {
				partial--
			}
			asking -= r.asked
			demand -= len(r.items)
			if demand < 0 { // a Source that returned more than asked; the extra still gets handed out
				demand = 0
			}
			pending = append(pending, r.items...)
			switch {
			case r.gated:
			case r.err != nil && ctx.Err() == nil:
				errorsInARow++
				wait := p.errorBackoff(errorsInARow)
				p.trace("producer: poll #%d failed: %v (retrying in %s)", r.id, r.err, wait)
				backoff = time.After(wait)
			default:
				errorsInARow = 0
				p.trace("producer: poll #%d received %d of %d events", r.id, len(r.items), r.asked)
				if len(r.items) == 0 && time.Since(r.started) < emptyPollFast {
					// An empty answer that came at once (no long polling: a wait time of 0): the
					// queue is empty, and asking again at once would only spin.
					backoff = time.After(emptyPollPause)
				}
			}
			delete(inFlight, r.id)
			if p.cfg.OnReceive != nil && !r.gated {
				oldest := 0
				for id := range inFlight {
					if oldest == 0 || id < oldest {
						oldest = id
					}
				}
				p.cfg.OnReceive(PollDone{ID: r.id, Items: len(r.items), Err: r.err, Started: pollSeq, OldestActive: oldest, StartedAt: r.started})
			}
		case out <- next:
			var zero T
			pending[0] = zero
			pending = pending[1:]
		case <-backoff:
			backoff = nil
		}
	}
}
