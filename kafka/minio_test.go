package kafka_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/internal/sourcetest"
	"github.com/palleto/palleto/internal/testenv"
)

// MinIO's own Kafka target publishes each upload's event to the topic; Palleto's group consumes
// it and stores every object's result.
func TestMinIOEventsThroughKafka(t *testing.T) {
	env := testenv.Get(t)
	brokers := testenv.KafkaBrokers(t)
	target := testenv.MinIOKafkaTarget(t)
	s3c := env.S3()
	bucket := testenv.Name("kafka")
	ctx := context.Background()
	sourcetest.Bucket(t, s3c, bucket, target.ARN)
	want := sourcetest.Upload(t, s3c, bucket, 20)
	// The group is new and reads the topic from its start: events of other tests' buckets are
	// refused by the allowlist and recorded, ours are processed.
	src := open(t, fmt.Sprintf("kafka://%s/%s?group=%s", brokers, target.Topic, testenv.Name("g")), 20)
	cfg := sourcetest.Config(t, bucket)
	d, err := palleto.New(cfg, palleto.Deps{S3: s3c, Source: src, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan palleto.Summary)
	go func() { s, _ := d.Run(runCtx); done <- s }()
	sourcetest.WaitFor(t, 90*time.Second, "every result of MinIO's events", func() bool { return len(sourcetest.Results(t, cfg.OutDir, bucket, want)) == len(want) })
	cancel()
	<-done
	if got := sourcetest.Results(t, cfg.OutDir, bucket, want); fmt.Sprint(got) != fmt.Sprint(want) {
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
	sourcetest.Bucket(t, s3c, bucket, "")
	want := sourcetest.Upload(t, s3c, bucket, 40)

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
	testenv.Produce(t, pr, name, sourcetest.Events(t, s3c, bucket, want)...)
	pr.Close()

	// The 10th object is held until the broker is down, so that the outage comes mid-run with
	// work in flight.
	hold := sourcetest.NewHoldNth(10)
	s := open(t, src, 8)
	cfg := sourcetest.Config(t, bucket)
	d, err := palleto.New(cfg, palleto.Deps{S3: s3c, Source: s, Processor: hold, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan palleto.Summary)
	go func() { sum, _ := d.Run(runCtx); done <- sum }()
	sourcetest.WaitFor(t, 60*time.Second, "the 10th object started", func() bool { return hold.Started() >= 10 })
	broker.Close()
	sourcetest.WaitFor(t, 30*time.Second, "Ready to report the broker down", func() bool { return d.Ready(ctx) != nil })
	hold.Release()
	broker = startBroker()
	defer broker.Close()
	sourcetest.WaitFor(t, 120*time.Second, "every result stored after the broker came back", func() bool {
		return len(sourcetest.Results(t, cfg.OutDir, bucket, want)) == len(want)
	})
	cancel()
	sum := <-done
	if got := sourcetest.Results(t, cfg.OutDir, bucket, want); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results (key: lines):\n got %v\nwant %v", got, want)
	}
	if sum.Failed != 0 {
		t.Fatalf("%d failures recorded: an outage of the broker is never the objects' fault", sum.Failed)
	}
}
