package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// GroupWriter writes a group of results in one transaction: all of them or none. It is what a
// grouped store (SQLite, PostgreSQL) implements; the Committer does the grouping. Its error wraps
// ErrBadData when the store refused the group for the data of (some of) its results; any other
// error is taken for the store being unavailable.
type GroupWriter interface {
	WriteGroup(ctx context.Context, rs []Result) error
}

// GroupReporter is a GroupWriter that also says what it did with each result: kept[i] is nil
// when rs[i] was written, ErrAlreadyStored or ErrSuperseded when the store kept the result it
// held (see Store.Put); a nil kept means every result was written. The Committer passes each
// report to its result's done.
type GroupReporter interface {
	WriteGroupReport(ctx context.Context, rs []Result) (kept []error, err error)
}

// GroupConfig sizes a Committer.
type GroupConfig struct {
	// Size is the most results in one commit (default 200); Timeout is the longest a result
	// waits for others to join its group (default 50ms).
	Size    int
	Timeout time.Duration
	// MaxPending is the most results held, waiting or being retried, before Put blocks its
	// caller (default 5 x Size): memory stays bounded while the store is down, and the workers
	// stop asking for more.
	MaxPending int
	Logger     *slog.Logger
	// OnCommit, when set, is told of each commit: how many results, how long it took, its error.
	OnCommit func(n int, took time.Duration, err error)
}

// DefaultGroupConfig returns groups of up to 200 results or 50ms.
func DefaultGroupConfig() GroupConfig {
	return GroupConfig{Size: 200, Timeout: 50 * time.Millisecond}
}

// Validate names the first bad setting.
func (c GroupConfig) Validate() error {
	if c.Size < 1 || c.Size > 10000 {
		return fmt.Errorf("commit-batch-size: %d is out of range [1, 10000]", c.Size)
	}
	if c.Timeout < 0 || c.Timeout > time.Minute {
		return fmt.Errorf("commit-batch-timeout: %s is out of range [0s, 1m]", c.Timeout)
	}
	return nil
}

type pending struct {
	r    Result
	done func(error)
}

// Committer groups results for a GroupWriter: each Put joins the current group, which is
// written in one transaction once it holds Size results or its first result has waited
// Timeout; then each result's done is called. A group whose commit fails is held and written
// again (after 1s, doubling to 10s) until it works: no done is called meanwhile, so no message
// is deleted, and Put blocks once MaxPending results are held. A group refused for its data
// (ErrBadData) is split in halves, each written on its own, down to the results at fault: their
// done gets the error, the others are committed. Close commits what is pending (one more try
// each) and fails what still cannot be written.
type Committer struct {
	w      GroupWriter
	cfg    GroupConfig
	in     chan pending // buffered to MaxPending: Put blocks beyond
	closed chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	mu     sync.RWMutex // Put holds it for reading, Close for writing: no send on a closed channel

	groups, results atomic.Int64
	failing         atomic.Bool
}

// NewCommitter starts a committer writing to w.
func NewCommitter(w GroupWriter, cfg GroupConfig) *Committer {
	def := DefaultGroupConfig()
	if cfg.Size <= 0 {
		cfg.Size = def.Size
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = def.Timeout
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 5 * cfg.Size
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	c := &Committer{w: w, cfg: cfg, in: make(chan pending, cfg.MaxPending), closed: make(chan struct{})}
	c.wg.Add(1)
	go func() { defer c.wg.Done(); c.run() }()
	return c
}

// Put adds r to the current group; done is called once r is committed (nil) or cannot be. It
// blocks while MaxPending results are held; ctx ends that wait (done gets ctx's error).
func (c *Committer) Put(ctx context.Context, r Result, done func(error)) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	select {
	case <-c.closed:
		done(fmt.Errorf("%w: the store is closed", ErrUnavailable))
		return
	default:
	}
	select {
	case c.in <- pending{r, done}:
	case <-ctx.Done():
		done(ctx.Err())
	}
}

// Stats returns how many groups and results were committed.
func (c *Committer) Stats() (groups, results int64) { return c.groups.Load(), c.results.Load() }

// Close commits what is pending and stops.
func (c *Committer) Close() {
	c.once.Do(func() {
		c.mu.Lock()
		close(c.closed)
		close(c.in)
		c.mu.Unlock()
		c.wg.Wait()
	})
}

func (c *Committer) run() {
	for {
		first, ok := <-c.in
		if !ok {
			return
		}
		group := []pending{first}
		timer := time.NewTimer(c.cfg.Timeout)
	fill:
		for len(group) < c.cfg.Size {
			select {
			case p, ok := <-c.in:
				if !ok {
					break fill
				}
				group = append(group, p)
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		c.commit(group)
	}
}

// commit writes group and calls the done of each of its results.
func (c *Committer) commit(group []pending) {
	kept, err := c.write(group)
	if errors.Is(err, ErrBadData) && len(group) > 1 {
		// Find the results at fault: each half on its own, so that the healthy ones commit.
		mid := len(group) / 2
		c.commit(group[:mid])
		c.commit(group[mid:])
		return
	}
	if errors.Is(err, ErrBadData) {
		c.cfg.Logger.Warn("result refused by the results store for its data; the object fails, the other results are committed",
			"bucket", group[0].r.Bucket, "key", group[0].r.Key, "error", err)
	}
	for i, p := range group {
		if err == nil && i < len(kept) {
			p.done(kept[i])
			continue
		}
		p.done(err)
	}
}

// write writes group in one transaction, again and again while the store is unavailable. It
// returns nil once the group is committed (with the writer's report, for a GroupReporter), the
// store's refusal of its data (ErrBadData), or, when the committer is closing and one more try
// failed, the store's unavailability.
func (c *Committer) write(group []pending) ([]error, error) {
	rs := make([]Result, len(group))
	for i, p := range group {
		rs[i] = p.r
	}
	wait := time.Second
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		var kept []error
		var err error
		if gr, ok := c.w.(GroupReporter); ok {
			kept, err = gr.WriteGroupReport(ctx, rs)
		} else {
			err = c.w.WriteGroup(ctx, rs)
		}
		cancel()
		if c.cfg.OnCommit != nil {
			c.cfg.OnCommit(len(rs), time.Since(start), err)
		}
		if err == nil {
			if c.failing.Swap(false) {
				c.cfg.Logger.Warn("results store commits work again", "results", len(rs), "attempts", attempt)
			}
			c.groups.Add(1)
			c.results.Add(int64(len(rs)))
			return kept, nil
		}
		if errors.Is(err, ErrBadData) {
			return nil, err
		}
		if !errors.Is(err, ErrUnavailable) {
			err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		closing := false
		select {
		case <-c.closed:
			closing = true
		default:
		}
		if closing && attempt >= 2 {
			c.cfg.Logger.Error("results store commit failed at shutdown; the messages of these results are kept and come back", "results", len(rs), "error", err)
			return nil, err
		}
		if !c.failing.Swap(true) {
			c.cfg.Logger.Error("RESULTS STORE COMMIT FAILED: no message of the group is deleted; the results are held and written again until it works",
				"results", len(rs), "error", err)
		}
		select {
		case <-time.After(wait):
		case <-c.closed:
		}
		wait = min(2*wait, 10*time.Second)
	}
}
