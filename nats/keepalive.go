package nats

import (
	"context"
	"sync"
	"time"

	"github.com/palleto/palleto/queue"
)

// keepAlive keeps held messages from being redelivered: at a third of the consumer's AckWait
// (under half, so one late renewal is not yet too late) it publishes InProgress for every held
// message and flushes the connection under the call deadline. The keep-alive discipline:
// untrack removes a message and, when a renewal that includes it is in flight, waits for that
// renewal to be flushed, so that no renewal can reach the server after an ack, a nak with a
// delay or a nak without one (a late InProgress would restart the redelivery timer of a
// message naked with a delay).
type keepAlive struct {
	s  *Source
	mu sync.Mutex
	m  map[*queue.Message]struct{}
	// sending holds the messages of the renewal in flight, and sent is closed when it is
	// flushed; both are nil between renewals.
	sending map[*queue.Message]struct{}
	sent    chan struct{}
	stop    context.CancelFunc
	done    chan struct{}
}

func newKeepAlive(s *Source) *keepAlive {
	ctx, cancel := context.WithCancel(context.Background())
	k := &keepAlive{s: s, m: map[*queue.Message]struct{}{}, stop: cancel, done: make(chan struct{})}
	go func() { defer close(k.done); k.run(ctx) }()
	return k
}

func (k *keepAlive) track(m *queue.Message) {
	k.mu.Lock()
	k.m[m] = struct{}{}
	k.mu.Unlock()
}

// untrack stops renewing m. It returns once no renewal of m is in flight or can start.
func (k *keepAlive) untrack(m *queue.Message) {
	k.mu.Lock()
	delete(k.m, m)
	_, busy := k.sending[m]
	sent := k.sent
	k.mu.Unlock()
	if busy {
		if testHookUntrackWaits != nil {
			testHookUntrackWaits()
		}
		<-sent
	}
}

// testHookUntrackWaits, when set by a test, is called when untrack waits for a renewal in flight;
// testHookRenewing when a renewal has published and is about to flush.
var testHookUntrackWaits, testHookRenewing func()

func (k *keepAlive) len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}

// close stops the renewals and waits for the one in flight.
func (k *keepAlive) close() {
	k.stop()
	<-k.done
}

func (k *keepAlive) run(ctx context.Context) {
	t := time.NewTicker(max(k.s.ackWait/3, 50*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.renew(ctx)
		}
	}
}

// renew publishes InProgress for every message held when it starts, then flushes.
func (k *keepAlive) renew(ctx context.Context) {
	k.mu.Lock()
	if len(k.m) == 0 {
		k.mu.Unlock()
		return
	}
	k.sending = make(map[*queue.Message]struct{}, len(k.m))
	for m := range k.m {
		k.sending[m] = struct{}{}
	}
	k.sent = make(chan struct{})
	batch := k.sending
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		close(k.sent)
		k.sending, k.sent = nil, nil
		k.mu.Unlock()
	}()
	if err := k.s.connected(); err != nil {
		return // Ready says so; the server redelivers what it must after the outage
	}
	n := 0
	for m := range batch {
		if err := k.s.nc.Publish(handle(m).msg.Reply(), ackProgress); err == nil {
			n++
		}
	}
	if testHookRenewing != nil {
		testHookRenewing()
	}
	fctx, cancel := context.WithTimeout(ctx, k.s.call)
	defer cancel()
	if err := k.s.nc.FlushWithContext(fctx); err != nil {
		if ctx.Err() == nil {
			k.s.log.Warn("NATS keep-alive (InProgress) not confirmed; will try again at the next renewal", "source", k.s.name, "messages", n, "error", err)
		}
		return
	}
	k.s.trace("nats: keep-alive: %d in-flight messages in progress (AckWait %s)", n, k.s.ackWait)
}
