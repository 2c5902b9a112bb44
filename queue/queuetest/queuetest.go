package queuetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/palleto/palleto/queue"
)

// Env is a source under test and the way to put messages into its queue.
type Env struct {
	Source queue.Source
	Send   func(body string)
	// DLQ says whether the source has a dead-letter queue configured.
	DLQ bool
	// NoDeliveryCount says the transport counts no deliveries (Kafka): its messages have
	// ReceiveCount 0, and the poison guard reads the store's failure records instead.
	NoDeliveryCount bool
	// AckTimeout is how long a received message stays invisible to other consumers without a
	// renewal (the queue's visibility timeout, NATS's AckWait), as the Env opened Source: short
	// (2-5s), so that the suite can hold messages past it. 0 skips the tests that need it.
	AckTimeout time.Duration
	// Another opens a second, independent source on the same queue, as another process would.
	// nil skips the tests that need it.
	Another func(t *testing.T) queue.Source
	// Abandon drops Source as a killed process does: no Close, no word to the queue; its
	// keep-alive stops and its connections go. nil skips the tests that need it.
	Abandon func()
}

// Run runs the conformance tests of a queue.Source. fresh returns a source on a new, empty
// queue whose received messages stay invisible to other consumers until they are deleted,
// retried or released (kept alive past Env.AckTimeout, when it is set).
func Run(t *testing.T, fresh func(t *testing.T) Env) {
	t.Run("ReceiveAtMostMax", func(t *testing.T) { testReceiveAtMostMax(t, fresh(t)) })
	t.Run("DeleteIsForGood", func(t *testing.T) { testDelete(t, fresh(t)) })
	t.Run("ReleaseIsAtOnce", func(t *testing.T) { testRelease(t, fresh(t)) })
	t.Run("RetryWaitsItsDelay", func(t *testing.T) { testRetry(t, fresh(t)) })
	t.Run("DeadLetter", func(t *testing.T) { testDeadLetter(t, fresh(t)) })
	t.Run("DeliveryCountGrows", func(t *testing.T) { testDeliveryCount(t, fresh(t)) })
	t.Run("KeepAliveHoldsPastTheAckTimeout", func(t *testing.T) { testKeepAlive(t, need(t, fresh(t), true, false)) })
	t.Run("RenewalNeverUndoesRetryOrRelease", func(t *testing.T) { testRenewal(t, need(t, fresh(t), true, false)) })
	t.Run("RedeliveredAfterTheConsumerDies", func(t *testing.T) { testAbandoned(t, need(t, fresh(t), true, true)) })
	t.Run("CloseFlushesDeletes", func(t *testing.T) { testCloseFlushes(t, need(t, fresh(t), true, false)) })
}

// need skips (closing e's source) unless e has an ack timeout and another consumer, and a way
// to abandon its source when abandon is asked.
func need(t *testing.T, e Env, another, abandon bool) Env {
	t.Helper()
	if e.AckTimeout <= 0 || another && e.Another == nil || abandon && e.Abandon == nil {
		e.Source.Close()
		t.Skip("the Env gives no ack timeout, second consumer or way to abandon its source")
	}
	return e
}

// receiveAll receives until n messages came or the deadline passed.
// sendOne sends body and receives it back.
func sendOne(t *testing.T, e Env, body string) *queue.Message {
	t.Helper()
	e.Send(body)
	msgs := receiveAll(t, e.Source, 1, 10*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("%q was sent and not received", body)
	}
	return msgs[0]
}

func receiveAll(t *testing.T, s queue.Source, n int, within time.Duration) []*queue.Message {
	t.Helper()
	var got []*queue.Message
	deadline := time.Now().Add(within)
	for len(got) < n && time.Now().Before(deadline) {
		msgs, err := s.Receive(context.Background(), min(10, n-len(got)))
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		got = append(got, msgs...)
		if len(msgs) == 0 {
			time.Sleep(20 * time.Millisecond) // an empty poll: the queue has nothing visible yet
		}
	}
	return got
}

func bodies(msgs []*queue.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Body))
	}
	slices.Sort(out)
	return out
}

func testReceiveAtMostMax(t *testing.T, e Env) {
	defer e.Source.Close()
	for i := range 7 {
		e.Send(fmt.Sprintf("b%d", i))
	}
	var got []*queue.Message
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 7 && time.Now().Before(deadline) {
		msgs, err := e.Source.Receive(context.Background(), 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) > 3 {
			t.Fatalf("asked for 3, got %d", len(msgs))
		}
		for _, m := range msgs {
			if m.ID == "" || (m.ReceiveCount < 1 && !e.NoDeliveryCount) || len(m.Body) == 0 {
				t.Fatalf("message %+v", m)
			}
		}
		got = append(got, msgs...)
	}
	if fmt.Sprint(bodies(got)) != "[b0 b1 b2 b3 b4 b5 b6]" {
		t.Fatalf("received %v", bodies(got))
	}
	for _, m := range got {
		e.Source.Delete(m)
	}
}

func testDelete(t *testing.T, e Env) {
	e.Send("gone")
	e.Send("kept")
	msgs := receiveAll(t, e.Source, 2, 10*time.Second)
	if len(msgs) != 2 {
		t.Fatalf("received %d of 2", len(msgs))
	}
	var kept *queue.Message
	for _, m := range msgs {
		if string(m.Body) == "gone" {
			e.Source.Delete(m)
		} else {
			kept = m
		}
	}
	if err := e.Source.Release(context.Background(), []*queue.Message{kept}); err != nil {
		t.Fatal(err)
	}
	again := receiveAll(t, e.Source, 2, 2*time.Second)
	if fmt.Sprint(bodies(again)) != "[kept]" {
		t.Fatalf("after deleting one and releasing the other: %v", bodies(again))
	}
	e.Source.Delete(again[0])
	e.Source.Close()
}

func testRelease(t *testing.T, e Env) {
	defer e.Source.Close()
	msgs := []*queue.Message{sendOne(t, e, "x")}
	if err := e.Source.Release(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
	again := receiveAll(t, e.Source, 1, 5*time.Second)
	if len(again) != 1 || (again[0].ReceiveCount < 2 && !e.NoDeliveryCount) {
		t.Fatalf("after release: %+v", again)
	}
	e.Source.Delete(again[0])
}

func testRetry(t *testing.T, e Env) {
	defer e.Source.Close()
	msg := sendOne(t, e, "later")
	start := time.Now()
	if err := e.Source.Retry(context.Background(), msg, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	again := receiveAll(t, e.Source, 1, 10*time.Second)
	if len(again) != 1 {
		t.Fatal("the retried message never came back")
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Fatalf("the retried message came back after %s, before its 2s delay", took)
	}
	e.Source.Delete(again[0])
}

func testDeadLetter(t *testing.T, e Env) {
	defer e.Source.Close()
	msg := sendOne(t, e, "poison")
	err := e.Source.DeadLetter(context.Background(), msg, queue.DeadLetter{Error: "corrupt", Class: "permanent", ReceiveCount: 1})
	if e.DLQ && err != nil {
		t.Fatalf("DeadLetter: %v", err)
	}
	if !e.DLQ && !errors.Is(err, queue.ErrNoDeadLetterQueue) {
		t.Fatalf("DeadLetter without a DLQ: %v, want ErrNoDeadLetterQueue", err)
	}
	e.Source.Delete(msg)
}
