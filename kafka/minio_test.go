package kafka_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/notify"
	"github.com/palleto/palleto/process"
	"github.com/palleto/palleto/store"
)

// upload puts n gzip objects of i+1 lines each into bucket and returns their keys and lines.
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
		}
	}
	return got
}

// MinIO's own Kafka target publishes each upload's event to the topic; Palleto's group consumes
// it and stores every object's result.
func TestMinIOEventsThroughKafka(t *testing.T) {
	env := testenv.Get(t)
	brokers := testenv.KafkaBrokers(t)
	target := testenv.MinIOKafkaTarget(t)
	s3c := env.S3()
	bucket := testenv.Name("kafka")
	ctx := context.Background()
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: &bucket,
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String(target.ARN), Events: []s3types.Event{"s3:ObjectCreated:*"}}}}}); err != nil {
		t.Fatalf("PutBucketNotificationConfiguration: %v", err)
	}
	want := upload(t, s3c, bucket, 20)
	// The group is new and reads the topic from its start: events of other tests' buckets are
	// refused by the allowlist and recorded, ours are processed.
	src := open(t, fmt.Sprintf("kafka://%s/%s?group=%s", brokers, target.Topic, testenv.Name("g")), 20)
	cfg := daemonConfig(t, bucket)
	d, err := palleto.New(cfg, palleto.Deps{S3: s3c, Source: src, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan palleto.Summary)
	go func() { s, _ := d.Run(runCtx); done <- s }()
	waitFor(t, 90*time.Second, "every result of MinIO's events", func() bool { return len(results(t, cfg.OutDir, bucket, want)) == len(want) })
	cancel()
	<-done
	if got := results(t, cfg.OutDir, bucket, want); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results (key: lines):\n got %v\nwant %v", got, want)
	}
}

// The broker stopped mid-run and started again on the same data: nothing is lost, nothing
// counts as an object's fault, and the work resumes without a restart of Palleto.
func TestBrokerOutageLosesNothing(t *testing.T) {
	env := testenv.Get(t)
	testenv.KafkaBrokers(t)
	s3c := env.S3()
	bucket := testenv.Name("kafka-outage")
	ctx := context.Background()
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	want := upload(t, s3c, bucket, 40)

	// A broker of the test's own, in this process, keeping its state in a directory: closed and
	// started again on the same port and directory, it is a broker restart.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	data := t.TempDir()
	startBroker := func() *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.Ports(port), kfake.DataDir(data), kfake.SyncWrites(), kfake.AllowAutoTopicCreation())
		if err != nil {
			t.Fatalf("kfake: %v", err)
		}
		return c
	}
	broker := startBroker()
	brokers := fmt.Sprintf("127.0.0.1:%d", port)
	src, name := topic(t, brokers, 3, false)
	pr := testenv.KafkaProducer(t, brokers)
	for key := range want {
		head, err := s3c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			t.Fatal(err)
		}
		testenv.Produce(t, pr, name, notify.Body(notify.Record{Bucket: bucket, Key: key, Size: aws.ToInt64(head.ContentLength),
			ETag: strings.Trim(aws.ToString(head.ETag), `"`), EventName: "ObjectCreated:Put", EventTime: time.Now()}, "test", "test"))
	}
	pr.Close()

	down := make(chan struct{})
	var mu sync.Mutex
	n := 0
	gate := func() {
		mu.Lock()
		n++
		hold := n == 10
		mu.Unlock()
		if hold {
			<-down
		}
	}
	s := open(t, src, 8)
	cfg := daemonConfig(t, bucket)
	d, err := palleto.New(cfg, palleto.Deps{S3: s3c, Source: s, Processor: gatedLines{gate}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan palleto.Summary)
	go func() { sum, _ := d.Run(runCtx); done <- sum }()
	waitFor(t, 60*time.Second, "the 10th object started", func() bool { mu.Lock(); defer mu.Unlock(); return n >= 10 })
	broker.Close()
	waitFor(t, 30*time.Second, "Ready to report the broker down", func() bool { return d.Ready(ctx) != nil })
	close(down)
	broker = startBroker()
	defer broker.Close()
	waitFor(t, 120*time.Second, "every result stored after the broker came back", func() bool {
		return len(results(t, cfg.OutDir, bucket, want)) == len(want)
	})
	cancel()
	sum := <-done
	if got := results(t, cfg.OutDir, bucket, want); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results (key: lines):\n got %v\nwant %v", got, want)
	}
	if sum.Failed != 0 {
		t.Fatalf("%d failures recorded: an outage of the broker is never the objects' fault", sum.Failed)
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
