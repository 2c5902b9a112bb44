package queuetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/palleto/palleto/queue"
)

// The tests of what the contract says about held messages: kept alive past the transport's
// timeout, never renewed after a retry or a release, redelivered when their consumer dies
// without a word, counted on each delivery, and deleted for good by Close's flush.

// poll receives from s until within has passed, failing if anything comes (what: why nothing
// should).
func pollNothing(t *testing.T, s queue.Source, within time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		msgs, err := s.Receive(context.Background(), 10)
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		if len(msgs) > 0 {
			t.Fatalf("%s: %q received by another consumer", what, bodies(msgs))
		}
		time.Sleep(20 * time.Millisecond) // an empty poll: nothing visible, as it should be
	}
}

func testDeliveryCount(t *testing.T, e Env) {
	defer e.Source.Close()
	msg := sendOne(t, e, "counted")
	if msg.ReceiveCount == 0 {
		e.Source.Delete(msg)
		t.Skip("the source does not count deliveries (ReceiveCount 0)")
	}
	counts := []int{msg.ReceiveCount}
	for i := range 3 {
		var err error
		if i == 2 {
			err = e.Source.Retry(context.Background(), msg, time.Second)
		} else {
			err = e.Source.Release(context.Background(), []*queue.Message{msg})
		}
		if err != nil {
			t.Fatal(err)
		}
		again := receiveAll(t, e.Source, 1, 10*time.Second)
		if len(again) != 1 {
			t.Fatalf("not delivered again after %d deliveries", len(counts))
		}
		msg = again[0]
		counts = append(counts, msg.ReceiveCount)
		if counts[i+1] <= counts[i] {
			t.Fatalf("delivery counts %v: the poison guard would not see a redelivery", counts)
		}
	}
	e.Source.Delete(msg)
}

func testKeepAlive(t *testing.T, e Env) {
	msg := sendOne(t, e, "held")
	other := e.Another(t)
	defer other.Close()
	hold := 2*e.AckTimeout + e.AckTimeout/4
	pollNothing(t, other, hold, fmt.Sprintf("a message held for %s by a consumer whose keep-alive runs (ack timeout %s)", hold, e.AckTimeout))
	e.Source.Delete(msg)
	e.Source.Close()
}

// testRenewal holds messages until renewals are due, then retries (with a delay of a quarter of
// the ack timeout) or releases them one after another over half an ack timeout, so that some
// of those calls meet a renewal: each must come back within its delay plus half an ack timeout,
// well before a renewal that landed after it would let it (a whole ack timeout).
func testRenewal(t *testing.T, e Env) {
	defer e.Source.Close()
	other := e.Another(t)
	defer other.Close()
	const n = 6
	for _, release := range []bool{false, true} {
		for i := range n {
			e.Send(fmt.Sprintf("r%d", i))
		}
		msgs := receiveAll(t, e.Source, n, 10*time.Second)
		if len(msgs) != n {
			t.Fatalf("received %d of %d", len(msgs), n)
		}
		time.Sleep(e.AckTimeout / 2) // held until a renewal is due: the state this test is about
		delay := e.AckTimeout / 4
		if release {
			delay = 0
		}
		// Another consumer takes each message as soon as it is visible again, from the first call on.
		var mu sync.Mutex
		arrived := map[string]time.Time{}
		stop, all := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			for {
				select {
				case <-stop:
					done <- nil
					return
				default:
				}
				msgs, err := other.Receive(context.Background(), 1)
				if err != nil {
					done <- err
					return
				}
				for _, m := range msgs {
					mu.Lock()
					arrived[string(m.Body)] = time.Now()
					if len(arrived) == n {
						close(all)
					}
					mu.Unlock()
					other.Delete(m)
				}
			}
		}()
		back := map[string]time.Time{} // body -> by when it must be visible again
		for _, m := range msgs {
			var err error
			if release {
				err = e.Source.Release(context.Background(), []*queue.Message{m})
			} else {
				err = e.Source.Retry(context.Background(), m, delay)
			}
			if err != nil {
				t.Fatal(err)
			}
			back[string(m.Body)] = time.Now().Add(delay + e.AckTimeout/2)
			time.Sleep(e.AckTimeout / (2 * n))
		}
		var last time.Time
		for _, b := range back {
			if b.After(last) {
				last = b
			}
		}
		select {
		case <-all:
		case <-time.After(time.Until(last)):
		}
		close(stop)
		if err := <-done; err != nil {
			t.Fatalf("Receive: %v", err)
		}
		mu.Lock()
		what := "retried with a delay of " + delay.String()
		if release {
			what = "released"
		}
		for b, by := range back {
			if at, ok := arrived[b]; !ok || at.After(by) {
				t.Errorf("%s, %s was not visible again within its delay and half an ack timeout (%s): a renewal after the call held it", what, b, e.AckTimeout/2)
			}
		}
		mu.Unlock()
		if t.Failed() {
			return
		}
	}
}

func testAbandoned(t *testing.T, e Env) {
	msg := sendOne(t, e, "orphan")
	e.Abandon()
	other := e.Another(t)
	defer other.Close()
	again := receiveAll(t, other, 1, 2*e.AckTimeout+10*time.Second)
	if len(again) != 1 || string(again[0].Body) != "orphan" {
		t.Fatalf("a message held by a consumer that died without a word was not delivered again within %s: %q", 2*e.AckTimeout+10*time.Second, bodies(again))
	}
	if msg.ReceiveCount > 0 && again[0].ReceiveCount <= msg.ReceiveCount {
		t.Errorf("redelivered with delivery count %d after %d", again[0].ReceiveCount, msg.ReceiveCount)
	}
	other.Delete(again[0])
}

func testCloseFlushes(t *testing.T, e Env) {
	const n = 25
	for i := range n {
		e.Send(fmt.Sprintf("c%d", i))
	}
	msgs := receiveAll(t, e.Source, n, 10*time.Second)
	if len(msgs) != n {
		t.Fatalf("received %d of %d", len(msgs), n)
	}
	for _, m := range msgs {
		e.Source.Delete(m)
	}
	e.Source.Close() // at once: deletes may still be pending, and Close must flush them
	other := e.Another(t)
	defer other.Close()
	// A delete Close dropped would come back within an ack timeout of its last renewal.
	pollNothing(t, other, e.AckTimeout+e.AckTimeout/4, "a message deleted just before Close")
}
