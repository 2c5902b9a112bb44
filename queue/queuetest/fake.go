// Package queuetest holds the conformance suite every queue.Source passes (Run), and Fake, an
// in-memory Source for unit tests of what the daemon decides: it records every delete, retry,
// release and dead letter, in order.
package queuetest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/palleto/palleto/queue"
)

// Fake is an in-memory queue.Source. Messages sent with Send are received in order; a retried
// message comes back after its delay, a released one at once; each delivery counts. Safe for
// concurrent use.
type Fake struct {
	// DLQ says whether a dead-letter queue is configured; DeadLetterErr, when set, is what
	// DeadLetter returns.
	DLQ           bool
	DeadLetterErr error
	// RetryErr, when set, is what Retry returns (the visibility change failed).
	RetryErr error

	mu      sync.Mutex
	seq     int
	queue   []*entry
	events  []string
	deleted map[string]bool
	dead    []queue.DeadLetter
	closed  bool
}

type entry struct {
	id, body string
	count    int
	visible  time.Time
	held     bool
}

// Send adds a message and returns its ID.
func (f *Fake) Send(body string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	id := fmt.Sprintf("m%d", f.seq)
	f.queue = append(f.queue, &entry{id: id, body: body})
	return id
}

// SendCounted adds a message that has already been delivered count-1 times.
func (f *Fake) SendCounted(body string, count int) string {
	id := f.Send(body)
	f.mu.Lock()
	f.queue[len(f.queue)-1].count = count - 1
	f.mu.Unlock()
	return id
}

// Receive returns up to max visible messages that are not held, holding them.
func (f *Fake) Receive(ctx context.Context, max int) ([]*queue.Message, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*queue.Message
	now := time.Now()
	for _, e := range f.queue {
		if len(out) == max {
			break
		}
		if e.held || now.Before(e.visible) || f.deleted[e.id] {
			continue
		}
		e.held = true
		e.count++
		out = append(out, &queue.Message{ID: e.id, Body: []byte(e.body), ReceiveCount: e.count, ReceivedAt: now, Handle: e})
	}
	return out, nil
}

func (f *Fake) entry(m *queue.Message) *entry {
	e, _ := m.Handle.(*entry)
	if e == nil {
		panic("queuetest.Fake: a message it did not hand out")
	}
	return e
}

// Delete removes m for good.
func (f *Fake) Delete(m *queue.Message) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.deleted == nil {
		f.deleted = map[string]bool{}
	}
	f.deleted[m.ID] = true
	f.entry(m).held = false
	f.events = append(f.events, "delete "+m.ID)
}

// Retry makes m visible again after delay.
func (f *Fake) Retry(ctx context.Context, m *queue.Message, delay time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, fmt.Sprintf("retry %s %s", m.ID, delay))
	if f.RetryErr != nil {
		return f.RetryErr
	}
	e := f.entry(m)
	e.held, e.visible = false, time.Now().Add(delay)
	return nil
}

// Release makes msgs visible at once.
func (f *Fake) Release(ctx context.Context, msgs []*queue.Message) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		f.entry(m).held = false
		f.events = append(f.events, "release "+m.ID)
	}
	return nil
}

// DeadLetter records why m failed, when a DLQ is configured.
func (f *Fake) DeadLetter(ctx context.Context, m *queue.Message, why queue.DeadLetter) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.DLQ {
		return queue.ErrNoDeadLetterQueue
	}
	f.events = append(f.events, "dead-letter "+m.ID)
	if f.DeadLetterErr != nil {
		return f.DeadLetterErr
	}
	f.dead = append(f.dead, why)
	return nil
}

// Ready is always nil.
func (f *Fake) Ready(context.Context) error { return nil }

// Close marks the fake closed.
func (f *Fake) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
}

// Events returns what was done to messages, in order: "delete m1", "retry m1 10s",
// "release m1", "dead-letter m1".
func (f *Fake) Events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.events...)
}

// DeadLetters returns what the dead letters said.
func (f *Fake) DeadLetters() []queue.DeadLetter {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]queue.DeadLetter(nil), f.dead...)
}
