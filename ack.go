package palleto

import (
	"errors"
	"time"

	"fmt"
	"github.com/palleto/palleto/store"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// acker owns acknowledgement, as Broadway's acker does: once a message's last part is in (its
// handling, and the commit of each of its results), the store's callback or the worker only
// enqueues it; the ackers decide it (decide: delete, retry, hand back, dead-letter, record the
// failure) on goroutines of their own. So a slow SQS call (a Delete that waits for a heartbeat
// call in flight, a dead letter with its 30s deadline) never holds a grouped store's committer,
// and a slow store never holds the source: each waits only for the queue between them.
type acker struct {
	d       *Daemon
	once    sync.Once
	mu      sync.RWMutex // enqueue holds it for reading, close for writing: no send on a closed channel
	closed  bool
	ch      chan *job
	wg      sync.WaitGroup // the acker goroutines
	pending sync.WaitGroup // decisions enqueued and not yet made (tests wait on it)
}

// ackQueue bounds the decisions waiting for an acker. The messages waiting there are held (kept
// invisible by the source's keep-alive), so memory stays bounded by settings; when it is full,
// the store's callback (or the worker, with a synchronous store) waits, the workers stop asking
// for messages, and nothing is lost. 1,024 holds five grouped commits of 200 at once.
const ackQueue = 1024

// ackers is how many decisions are made at once: a few, so that one call waiting out its deadline
// (a Delete behind a heartbeat call, a failure record on a slow store) does not hold every other
// message's acknowledgement.
const ackers = 4

func (a *acker) start() {
	a.ch = make(chan *job, ackQueue)
	for range ackers {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for j := range a.ch {
				a.decide(j)
			}
		}()
	}
}

// enqueue hands j to the ackers; after close, it is decided on the caller's goroutine.
func (a *acker) enqueue(j *job) {
	a.once.Do(a.start)
	a.pending.Add(1)
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		a.decide(j)
		return
	}
	a.ch <- j
	a.mu.RUnlock()
}

// decide decides j; a panic (a bug) is logged with its stack and the message left to come back
// by its own timeout, and the acker goes on.
func (a *acker) decide(j *job) {
	defer a.pending.Done()
	defer a.d.unsettled.Add(-1)
	defer func() {
		if p := recover(); p != nil {
			a.d.log.Error("acknowledgement panicked; the message comes back after its visibility timeout",
				"message_id", j.m.ID, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	a.d.decide(j)
}

// close waits for every decision enqueued, then stops the ackers. Run calls it once the store
// is closed (its last commits are in) and before the source is closed (so the last deletes are
// flushed).
func (a *acker) close() {
	a.once.Do(a.start)
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.ch)
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// wait returns once every decision enqueued so far is made.
func (a *acker) wait() { a.pending.Wait() }

// undoneSet holds the messages the run put back for a retry and has not finished since: work it
// leaves in the queue when it ends.
type undoneSet struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (u *undoneSet) set(id string, undone bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !undone {
		delete(u.ids, id)
		return
	}
	if u.ids == nil {
		u.ids = map[string]bool{}
	}
	u.ids[id] = true
}

func (u *undoneSet) count() int64 {
	u.mu.Lock()
	defer u.mu.Unlock()
	return int64(len(u.ids))
}

// outcomes counts what the daemon decided for messages, for every source: the Summary and
// palleto_source_messages_*_total{source}.
type outcomes struct {
	received, retried, released, deadLettered atomic.Int64
}

// source names the source in the metrics.
func (d *Daemon) source() string {
	if d.srcName == "" {
		return "custom"
	}
	return d.srcName
}

// workLeft reports whether anything is left to do for the messages received: being handled,
// waiting to commit, or waiting for its acknowledgement. An idle exit waits for it, but for a
// batch run paused longer than idleAfterPause (the results store down): it ends then, its store's
// Close fails what could not be committed, and those messages are put back and counted undone.
func (d *Daemon) workLeft() bool { return d.unsettled.Load() > 0 && !d.givingUp() }

// givingUp reports whether a batch run (--exit-when-idle) has had its receiving paused for
// longer than idleAfterPause.
func (d *Daemon) givingUp() bool {
	since := d.health.PausedSince()
	return d.cfg.Engine.ExitWhenIdle > 0 && !since.IsZero() && time.Since(since) >= d.idleAfterPause()
}

// committedGroup is told of each commit of a grouped store: the metrics, and the breaker, for a
// commit that fails because the store is unavailable holds its results (and calls no done) until
// it works: without a word to the breaker, receiving would go on piling work onto a store that
// is down, and /readyz would say nothing.
func (d *Daemon) committedGroup(n int, took time.Duration, err error) {
	d.met.Committed(n, took, err)
	switch {
	case err == nil:
		d.health.Success(storeKey)
	case !errors.Is(err, store.ErrBadData): // bad data is one result's own, failed alone
		d.health.Failure(storeKey, err, d.store.Ready)
	}
}
