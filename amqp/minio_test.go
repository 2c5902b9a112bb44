package amqp_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/amqp"
	"github.com/palleto/palleto/internal/sourcetest"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/queue"
)

// MinIO's own AMQP target publishes each upload's event to RabbitMQ; Palleto consumes the queue
// bound to its exchange and stores every object's result; the queue ends empty.
func TestMinIOEventsThroughRabbitMQ(t *testing.T) {
	env := testenv.Get(t)
	base := testenv.AMQPURL(t)
	target := testenv.MinIOAMQPTarget(t)
	s3c := env.S3()
	bucket := testenv.Name("amqp")
	ctx := context.Background()
	sourcetest.Bucket(t, s3c, bucket, target.ARN)
	qname := testenv.Name("minio-events")
	src := open(t, fmt.Sprintf("%s?queue=%s&exchange=%s&routing_key=%s&dlq=%s-dlq", base, qname, target.Exchange, target.RoutingKey, qname))
	want := sourcetest.Upload(t, s3c, bucket, 20)

	cfg := sourcetest.Config(t, bucket)
	cfg.Engine.ExitWhenIdle = 3 * time.Second
	d, err := palleto.New(cfg, palleto.Deps{S3: s3c, Source: src, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	sum, err := d.Run(runCtx)
	if err != nil {
		t.Fatal(err)
	}
	got := sourcetest.Results(t, cfg.OutDir, bucket, want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results (key: lines):\n got %v\nwant %v", got, want)
	}
	if sum.Objects != 20 || sum.Failed != 0 {
		t.Fatalf("summary: %d objects, %d failed; want 20, 0", sum.Objects, sum.Failed)
	}
	q, err := testenv.AMQPChannel(t, base).QueueDeclarePassive(qname, true, false, false, false, nil)
	if err != nil || q.Messages != 0 {
		t.Fatalf("queue after the run: %d messages, %v", q.Messages, err)
	}
}

// The broker stopped mid-run and started again: nothing is lost, nothing counts as an object's
// fault, Ready says why meanwhile, and the work resumes without a restart of Palleto.
func TestBrokerOutageLosesNothing(t *testing.T) {
	env := testenv.Get(t)
	rabbit := testenv.StartRabbitMQ(t)
	s3c := env.S3()
	bucket := testenv.Name("amqp-outage")
	ctx := context.Background()
	sourcetest.Bucket(t, s3c, bucket, "")
	want := sourcetest.Upload(t, s3c, bucket, 40)
	src, qname := newQueue(t, rabbit.URL, false)
	ch := testenv.AMQPChannel(t, rabbit.URL)
	for _, body := range sourcetest.Events(t, s3c, bucket, want) {
		publish(t, ch, qname, body)
	}

	// The 10th object is held until the broker is down, so that the outage comes mid-run with
	// work in flight.
	hold := sourcetest.NewHoldNth(10)
	u, _ := url.Parse(src)
	s, err := amqp.Open(ctx, u, queue.Options{WaitTime: 500 * time.Millisecond, CallTimeout: 5 * time.Second, MaxInFlight: 8})
	if err != nil {
		t.Fatal(err)
	}
	cfg := sourcetest.Config(t, bucket)
	d, err := palleto.New(cfg, palleto.Deps{S3: s3c, Source: s, Processor: hold, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan palleto.Summary)
	go func() { sum, _ := d.Run(runCtx); done <- sum }()

	sourcetest.WaitFor(t, 60*time.Second, "the 10th object started", func() bool { return hold.Started() >= 10 })
	rabbit.Stop(t)
	sourcetest.WaitFor(t, 30*time.Second, "Ready to report the broker down", func() bool { return d.Ready(ctx) != nil })
	hold.Release()
	rabbit.Start(t)
	sourcetest.WaitFor(t, 90*time.Second, "every result stored after the broker came back", func() bool {
		return len(sourcetest.Results(t, cfg.OutDir, bucket, want)) == len(want)
	})
	sourcetest.WaitFor(t, 60*time.Second, "the queue to empty", func() bool {
		c, err := amqp091.Dial(rabbit.URL)
		if err != nil {
			return false
		}
		defer c.Close()
		ch, err := c.Channel()
		if err != nil {
			return false
		}
		q, err := ch.QueueDeclarePassive(qname, true, false, false, false, nil)
		return err == nil && q.Messages == 0 && s.Ready(ctx) == nil
	})
	cancel()
	sum := <-done
	got := sourcetest.Results(t, cfg.OutDir, bucket, want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results (key: lines):\n got %v\nwant %v", got, want)
	}
	if sum.Failed != 0 {
		t.Fatalf("%d failures recorded: an outage of the broker is never the objects' fault", sum.Failed)
	}
}
