package amqp_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/palleto/palleto/amqp"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/queue/queuetest"
)

// newQueue declares a fresh durable queue (and, with dlq, a dead-letter queue) on the broker at
// base and returns the source URL of it.
func newQueue(t *testing.T, base string, dlq bool) (src string, name string) {
	t.Helper()
	ch := testenv.AMQPChannel(t, base)
	name = testenv.Name("palleto")
	if _, err := ch.QueueDeclare(name, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	src = base + "?queue=" + name
	if dlq {
		src += "&dlq=" + name + "-dlq"
	}
	return src, name
}

func publish(t *testing.T, ch *amqp091.Channel, queueName, body string) {
	t.Helper()
	if err := ch.PublishWithContext(context.Background(), "", queueName, false, false,
		amqp091.Publishing{Body: []byte(body), DeliveryMode: amqp091.Persistent}); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func open(t *testing.T, src string) *amqp.Source {
	t.Helper()
	u, err := url.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	s, err := amqp.Open(context.Background(), u, queue.Options{WaitTime: 500 * time.Millisecond, CallTimeout: 10 * time.Second, MaxInFlight: 20})
	if err != nil {
		t.Fatalf("Open %s: %v", src, err)
	}
	return s
}

func TestConformanceRabbitMQ(t *testing.T) {
	base := testenv.AMQPURL(t)
	queuetest.Run(t, func(t *testing.T) queuetest.Env {
		src, name := newQueue(t, base, true)
		ch := testenv.AMQPChannel(t, base)
		return queuetest.Env{Source: open(t, src), DLQ: true, Send: func(body string) { publish(t, ch, name, body) }}
	})
}

// A retry's delay is kept by the broker: a source closed while the message waits (Palleto
// restarted) and a new one opened still get it, after the delay, with its attempt counted.
func TestRetryDelaySurvivesARestart(t *testing.T) {
	base := testenv.AMQPURL(t)
	src, name := newQueue(t, base, false)
	ch := testenv.AMQPChannel(t, base)
	publish(t, ch, name, "retry me")
	s := open(t, src)
	msgs := receive(t, s, 1, 10*time.Second)
	if len(msgs) != 1 || msgs[0].ReceiveCount != 1 {
		t.Fatalf("first delivery: %+v", msgs)
	}
	id := msgs[0].ID
	start := time.Now()
	if err := s.Retry(context.Background(), msgs[0], 2*time.Second); err != nil {
		t.Fatalf("Retry: %v", err)
	}
	s.Close()

	s2 := open(t, src)
	defer s2.Close()
	again := receive(t, s2, 1, 15*time.Second)
	if len(again) != 1 {
		t.Fatal("the retried message never came back after the restart")
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Fatalf("the retried message came back after %s, before its 2s delay", took)
	}
	if again[0].ReceiveCount != 2 || again[0].ID != id || string(again[0].Body) != "retry me" {
		t.Fatalf("after the retry: receive count %d id %q body %q; want 2, %q, the same body", again[0].ReceiveCount, again[0].ID, again[0].Body, id)
	}
	s2.Delete(again[0])
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if q.Messages != 0 {
		t.Fatalf("%d messages left in the queue after the delete", q.Messages)
	}
}

// The poison guard's count grows with each retry: the attempts header travels with the copy.
func TestAttemptsGrowPerRetry(t *testing.T) {
	base := testenv.AMQPURL(t)
	src, name := newQueue(t, base, false)
	publish(t, testenv.AMQPChannel(t, base), name, "poison")
	s := open(t, src)
	defer s.Close()
	for want := 1; want <= 3; want++ {
		msgs := receive(t, s, 1, 10*time.Second)
		if len(msgs) != 1 || msgs[0].ReceiveCount != want {
			t.Fatalf("delivery %d: %+v", want, msgs)
		}
		if want == 3 {
			s.Delete(msgs[0])
			break
		}
		if err := s.Retry(context.Background(), msgs[0], 10*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
}

// An unknown queue is one clear error at start, naming the queue and the vhost.
func TestUnknownQueueIsAClearError(t *testing.T) {
	base := testenv.AMQPURL(t)
	u, _ := url.Parse(base + "?queue=no-such-queue-" + testenv.Name("x"))
	_, err := amqp.Open(context.Background(), u, queue.Options{CallTimeout: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "no-such-queue") || !strings.Contains(err.Error(), "NOT_FOUND") {
		t.Fatalf("Open of a missing queue: %v", err)
	}
}

// The prefetch is the demand the daemon can hold: with MaxInFlight 3 and nothing acked, the
// broker hands this consumer no more than 3 of 10 messages.
func TestPrefetchIsTheDemand(t *testing.T) {
	base := testenv.AMQPURL(t)
	src, name := newQueue(t, base, false)
	ch := testenv.AMQPChannel(t, base)
	for range 10 {
		publish(t, ch, name, "m")
	}
	u, _ := url.Parse(src)
	s, err := amqp.Open(context.Background(), u, queue.Options{WaitTime: 300 * time.Millisecond, CallTimeout: 10 * time.Second, MaxInFlight: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := receive(t, s, 10, 2*time.Second)
	if len(got) != 3 {
		t.Fatalf("held %d messages with a prefetch of 3", len(got))
	}
	visible, inFlight, err := s.Depth(context.Background())
	if err != nil || visible != 7 || inFlight != 3 {
		t.Fatalf("Depth = %d visible, %d in flight, %v; want 7, 3", visible, inFlight, err)
	}
	for _, m := range got {
		s.Delete(m)
	}
}

func receive(t *testing.T, s queue.Source, n int, within time.Duration) []*queue.Message {
	t.Helper()
	var got []*queue.Message
	deadline := time.Now().Add(within)
	for len(got) < n && time.Now().Before(deadline) {
		msgs, err := s.Receive(context.Background(), n-len(got))
		if err != nil {
			t.Fatalf("Receive: %v", err)
		}
		got = append(got, msgs...)
	}
	return got
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct{ url, err string }{
		{"amqp://guest:guest@127.0.0.1:5672/?queue=q", ""},
		{"amqps://u:p@host/vh?queue=q&dlq=d&exchange=e&routing_key=k&prefetch=10", ""},
		{"amqp://127.0.0.1:5672/", "names no queue"},
		{"amqp:///?queue=q", "names no broker host"},
		{"amqp://h/?queue=q&dlq=q", "is the queue itself"},
		{"amqp://h/?queue=q&routing_key=k", "without exchange"},
		{"amqp://h/?queue=q&prefetch=0", "prefetch=0"},
	} {
		u, _ := url.Parse(c.url)
		err := amqp.ParseURL(u)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want %q", c.url, err, c.err)
		}
	}
}
