package nats

import (
	"context"
	"sync"

	"github.com/palleto/palleto/queue"
)

// acksInFlight is how many acks may wait for the server's answer at once: one takes a round
// trip, so one at a time would cap acks at a few thousand a second.
const acksInFlight = 16

// acker sends the acks of deleted messages off the caller's goroutine (a slow broker never slows
// the store or a worker), each confirmed by the server under the call deadline. close waits for
// every ack handed to it.
type acker struct {
	s    *Source
	mu   sync.RWMutex        // guards ch against close: an ack after close is dropped
	ch   chan *queue.Message // buffered: a worker hands an ack over and goes on
	done chan struct{}
}

func newAcker(s *Source) *acker {
	a := &acker{s: s, ch: make(chan *queue.Message, 1024), done: make(chan struct{})}
	go a.run(a.ch)
	return a
}

func (a *acker) add(m *queue.Message) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.ch == nil { // after Close (a worker the hard stop left behind): m comes back after AckWait
		a.s.log.Warn("ack after the source was closed; the message comes back and is found done", "message_id", m.ID)
		return
	}
	a.ch <- m
}

func (a *acker) close() {
	a.mu.Lock()
	if a.ch != nil {
		close(a.ch)
		a.ch = nil
	}
	a.mu.Unlock()
	<-a.done
}

func (a *acker) run(ch <-chan *queue.Message) {
	defer close(a.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, acksInFlight)
	for m := range ch {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			a.ack(m)
		}()
	}
}

// ack acks m, or terms it when it was dead-lettered. A failure is logged: m then comes back
// after AckWait, and its result makes that cheap.
func (a *acker) ack(m *queue.Message) {
	h := handle(m)
	h.mu.Lock()
	body := ackAck
	if h.dead {
		body = ackTerm
	}
	h.mu.Unlock()
	if err := a.s.ack(context.Background(), m, body); err != nil {
		a.s.log.Warn("ack failed; the message will be delivered again and found done", "message_id", m.ID, "error", err)
		return
	}
	a.s.trace("nats: message %s acknowledged (%s)", m.ID, body)
}
