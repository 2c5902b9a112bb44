package amqp_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/amqp"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/notify"
	"github.com/palleto/palleto/process"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/store"
)

// upload puts n gzip objects of i+1 lines each into bucket and returns their keys and etags.
func upload(t *testing.T, s3c *s3.Client, bucket string, n int) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	for i := range n {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		for l := range i + 1 {
			fmt.Fprintf(zw, "line %d of object %d\n", l, i)
		}
		zw.Close()
		key := fmt.Sprintf("logs/%02d file+%d.gz", i, i)
		if _, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(buf.Bytes())}); err != nil {
			t.Fatalf("PutObject %s: %v", key, err)
		}
		want[key] = int64(i + 1)
	}
	return want
}

func daemonConfig(t *testing.T, bucket string) palleto.Config {
	cfg := palleto.DefaultConfig()
	cfg.SQS.QueueURL = "https://sqs.us-east-1.amazonaws.com/000000000000/unused" // the source is Deps.Source
	cfg.OutDir = t.TempDir()
	cfg.Engine.Workers = 4
	cfg.Buckets = []string{bucket}
	cfg.RetryBackoff = time.Second
	return cfg
}

// results reads the lines of every result the daemon stored in dir for bucket.
func results(t *testing.T, dir, bucket string, keys map[string]int64) map[string]int64 {
	t.Helper()
	st, err := palleto.OpenStore(context.Background(), dir, store.DefaultGroupConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := map[string]int64{}
	for k := range keys {
		r, err := st.Result(context.Background(), bucket, k, "lines")
		if err != nil {
			t.Fatal(err)
		}
		if r != nil {
			l, _ := r.Fields["lines"].(float64)
			got[k] = int64(l)
			if r.ETag == "" || r.Size == 0 {
				t.Errorf("result of %s: etag %q size %d", k, r.ETag, r.Size)
			}
		}
	}
	return got
}

// MinIO's own AMQP target publishes each upload's event to RabbitMQ; Palleto consumes the queue
// bound to its exchange and stores every object's result; the queue ends empty.
func TestMinIOEventsThroughRabbitMQ(t *testing.T) {
	env := testenv.Get(t)
	base := testenv.AMQPURL(t)
	target := testenv.MinIOAMQPTarget(t)
	s3c := env.S3()
	bucket := testenv.Name("amqp")
	ctx := context.Background()
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: &bucket,
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String(target.ARN), Events: []s3types.Event{"s3:ObjectCreated:*"}}}}}); err != nil {
		t.Fatalf("PutBucketNotificationConfiguration: %v", err)
	}
	qname := testenv.Name("minio-events")
	src := open(t, fmt.Sprintf("%s?queue=%s&exchange=%s&routing_key=%s&dlq=%s-dlq", base, qname, target.Exchange, target.RoutingKey, qname))
	want := upload(t, s3c, bucket, 20)

	cfg := daemonConfig(t, bucket)
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
	got := results(t, cfg.OutDir, bucket, want)
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
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	want := upload(t, s3c, bucket, 40)
	src, qname := newQueue(t, rabbit.URL, false)
	ch := testenv.AMQPChannel(t, rabbit.URL)
	for key := range want {
		head, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		body := notify.Body(notify.Record{Bucket: bucket, Key: key, Size: aws.ToInt64(head.ContentLength), ETag: strings.Trim(aws.ToString(head.ETag), `"`),
			EventName: "ObjectCreated:Put", EventTime: time.Now()}, "test", "test")
		publish(t, ch, qname, body)
	}

	// A processor that holds the 10th object until the broker is down, so that the outage comes
	// mid-run with work in flight.
	down := make(chan struct{})
	var once sync.Once
	var n int
	var mu sync.Mutex
	gate := func() {
		mu.Lock()
		n++
		hold := n == 10
		mu.Unlock()
		if hold {
			<-down
		}
	}
	u, _ := url.Parse(src)
	s, err := amqp.Open(ctx, u, queue.Options{WaitTime: 500 * time.Millisecond, CallTimeout: 5 * time.Second, MaxInFlight: 8})
	if err != nil {
		t.Fatal(err)
	}
	cfg := daemonConfig(t, bucket)
	d, err := palleto.New(cfg, palleto.Deps{S3: s3c, Source: s, Processor: gatedLines{gate}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan palleto.Summary)
	go func() { sum, _ := d.Run(runCtx); done <- sum }()

	waitFor(t, 60*time.Second, "the 10th object started", func() bool { mu.Lock(); defer mu.Unlock(); return n >= 10 })
	rabbit.Stop(t)
	waitFor(t, 30*time.Second, "Ready to report the broker down", func() bool { return d.Ready(ctx) != nil })
	once.Do(func() { close(down) })
	rabbit.Start(t)
	waitFor(t, 90*time.Second, "every result stored after the broker came back", func() bool {
		return len(results(t, cfg.OutDir, bucket, want)) == len(want)
	})
	waitFor(t, 60*time.Second, "the queue to empty", func() bool {
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
	got := results(t, cfg.OutDir, bucket, want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results (key: lines):\n got %v\nwant %v", got, want)
	}
	if sum.Failed != 0 {
		t.Fatalf("%d failures recorded: an outage of the broker is never the objects' fault", sum.Failed)
	}
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gatedLines counts lines as the default processor does, after calling gate.
type gatedLines struct{ gate func() }

func (g gatedLines) Name() string { return "lines" }

func (g gatedLines) Process(ctx context.Context, o process.Object, r io.Reader) (process.Fields, error) {
	g.gate()
	p, _ := process.New("lines", process.Options{})
	return p.Process(ctx, o, r)
}
