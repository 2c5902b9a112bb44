package amqp_test

import (
	"context"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palleto/palleto/amqp"
	"github.com/palleto/palleto/internal/faultproxy"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/queue"
)

// signalHandler is a slog handler that closes lost the first time the source logs that its
// connection was lost (after it forgot what that connection held).
type signalHandler struct {
	once *sync.Once
	lost chan struct{}
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "connection lost") {
		h.once.Do(func() { close(h.lost) })
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }

// openBehindProxy opens a source on a fresh queue reached through a fault proxy in front of
// RabbitMQ; lost is closed once the source logged the loss of its connection.
func openBehindProxy(t *testing.T) (s *amqp.Source, p *faultproxy.Proxy, name string, lost chan struct{}) {
	t.Helper()
	base := testenv.AMQPURL(t)
	src, name := newQueue(t, base, false)
	bu, _ := url.Parse(base)
	p, err := faultproxy.Start(faultproxy.Config{Target: bu.Host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	u, _ := url.Parse(src)
	u.Host = strings.TrimPrefix(p.URL(), "http://")
	lost = make(chan struct{})
	log := slog.New(signalHandler{once: &sync.Once{}, lost: lost})
	s, err = amqp.Open(context.Background(), u, queue.Options{WaitTime: 300 * time.Millisecond, CallTimeout: 5 * time.Second, MaxInFlight: 5, Logger: log})
	if err != nil {
		t.Fatalf("Open through the proxy: %v", err)
	}
	t.Cleanup(s.Close)
	return s, p, name, lost
}

// waitReady waits until the source says it is connected again.
func waitReady(t *testing.T, s *amqp.Source) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.Ready(context.Background()) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not reconnected within 20s: %v", s.Ready(context.Background()))
		}
		time.Sleep(20 * time.Millisecond) // polling for the reconnection, not synchronising
	}
}

// A message received before the connection was lost is requeued by the broker; a Retry of it
// after the source reconnected must not publish a second copy of it (into the delay queue), or
// the message is delivered twice, and each such retry doubles it again.
func TestRetryAfterReconnectPublishesNoCopy(t *testing.T) {
	s, p, name, lost := openBehindProxy(t)
	ch := testenv.AMQPChannel(t, testenv.AMQPURL(t))
	publish(t, ch, name, "once")
	msgs := receive(t, s, 1, 10*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want 1", len(msgs))
	}
	p.SetDown(true)
	<-lost
	p.SetDown(false)
	waitReady(t, s)

	delay := time.Hour // the copy, if any, stays in the delay queue where the test counts it
	delayQ := name + ".palleto-delay-3600000ms"
	t.Cleanup(func() { ch.QueueDelete(delayQ, false, false, false) })
	if err := s.Retry(context.Background(), msgs[0], delay); err != nil {
		t.Logf("Retry after the reconnect: %v", err)
	}
	copies := 0
	if q, err := ch.QueueDeclarePassive(delayQ, true, false, false, false, nil); err == nil {
		copies = q.Messages
	} else {
		ch = testenv.AMQPChannel(t, testenv.AMQPURL(t)) // a passive declare of a missing queue closes the channel
	}
	again := receive(t, s, 1, 10*time.Second)
	if len(again) != 1 || string(again[0].Body) != "once" {
		t.Fatalf("the requeued original did not come back: %+v", again)
	}
	s.Delete(again[0])
	if copies != 0 {
		t.Fatalf("a retry after the reconnect published %d copies of a message the broker had requeued already: it is delivered twice", copies)
	}
}

// Depth's in-flight count is the deliveries this consumer holds: one settled after its
// connection was lost, and before the reconnect, must not count below zero afterwards.
func TestInFlightStaysRightAcrossAReconnect(t *testing.T) {
	s, p, name, lost := openBehindProxy(t)
	ch := testenv.AMQPChannel(t, testenv.AMQPURL(t))
	publish(t, ch, name, "held")
	msgs := receive(t, s, 1, 10*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want 1", len(msgs))
	}
	p.SetDown(true)
	<-lost
	s.Delete(msgs[0]) // its connection is gone: the broker requeued it
	p.SetDown(false)
	waitReady(t, s)
	again := receive(t, s, 1, 10*time.Second)
	if len(again) != 1 {
		t.Fatalf("the requeued message did not come back: %+v", again)
	}
	_, inFlight, err := s.Depth(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s.Delete(again[0])
	if inFlight != 1 {
		t.Fatalf("Depth says %d in flight while this consumer holds 1 delivery", inFlight)
	}
}

// A Receive after Close says the source is closed; it does not return nothing at once, for
// ever (a poller loop calling it would spin).
func TestReceiveAfterCloseIsAnError(t *testing.T) {
	base := testenv.AMQPURL(t)
	src, _ := newQueue(t, base, false)
	s := open(t, src)
	s.Close()
	msgs, err := s.Receive(context.Background(), 1)
	if err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Receive after Close: %d messages, %v; want an error saying the source is closed", len(msgs), err)
	}
}

// A dead letter of a message whose connection was lost since it was received is not published:
// the broker requeued the message, which comes back and would be dead-lettered a second time.
func TestDeadLetterAfterReconnectIsNotPublished(t *testing.T) {
	base := testenv.AMQPURL(t)
	src, name := newQueue(t, base, true)
	bu, _ := url.Parse(base)
	p, err := faultproxy.Start(faultproxy.Config{Target: bu.Host})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	u, _ := url.Parse(src)
	u.Host = strings.TrimPrefix(p.URL(), "http://")
	lost := make(chan struct{})
	s, err := amqp.Open(context.Background(), u, queue.Options{WaitTime: 300 * time.Millisecond, CallTimeout: 5 * time.Second, MaxInFlight: 5,
		Logger: slog.New(signalHandler{once: &sync.Once{}, lost: lost})})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ch := testenv.AMQPChannel(t, base)
	t.Cleanup(func() { ch.QueueDelete(name+"-dlq", false, false, false) })
	publish(t, ch, name, "bad")
	msgs := receive(t, s, 1, 10*time.Second)
	if len(msgs) != 1 {
		t.Fatalf("received %d messages, want 1", len(msgs))
	}
	p.SetDown(true)
	<-lost
	p.SetDown(false)
	waitReady(t, s)
	err = s.DeadLetter(context.Background(), msgs[0], queue.DeadLetter{Error: "corrupt", Class: "permanent", ReceiveCount: 1, Attempts: 1})
	s.Delete(msgs[0])
	q, qerr := ch.QueueDeclarePassive(name+"-dlq", true, false, false, false, nil)
	if qerr != nil {
		t.Fatal(qerr)
	}
	if q.Messages != 0 {
		t.Fatalf("the dead letter of a requeued message was published (%d in the DLQ, DeadLetter said %v): it is dead-lettered again when it comes back", q.Messages, err)
	}
	if err == nil {
		t.Fatal("DeadLetter of a message whose connection was lost returned nil: the daemon would delete it as dead-lettered")
	}
	again := receive(t, s, 1, 10*time.Second)
	if len(again) != 1 {
		t.Fatal("the requeued message did not come back")
	}
	s.Delete(again[0])
}
