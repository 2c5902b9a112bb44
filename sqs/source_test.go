package sqs_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/palleto/palleto/devstack/localsqs"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/queue/queuetest"
	"github.com/palleto/palleto/sqs"
)

// Every test here runs against the embedded development server and against local-aws-sqs.
func servers(t *testing.T) map[string]*awssqs.Client {
	_, base, stop, err := localsqs.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	client := func(endpoint string) *awssqs.Client {
		return awssqs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("t", "t", "")},
			func(o *awssqs.Options) { o.BaseEndpoint = aws.String(endpoint) })
	}
	out := map[string]*awssqs.Client{"embedded": client(base)}
	if env := os.Getenv("PALLETO_TEST_SQS_ENDPOINT"); env != "" {
		out["local-aws-sqs"] = client(env)
	} else if os.Getenv("PALLETO_REQUIRE_SERVERS") == "1" {
		testenv.Get(t)
	}
	return out
}

func fill(t *testing.T, c *awssqs.Client, url string, n int) {
	for i := 0; i < n; i++ {
		if _, err := c.SendMessage(context.Background(), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(fmt.Sprint("m", i))}); err != nil {
			t.Fatal(err)
		}
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestReceiveAtMostMaxDeleteInBatches(t *testing.T) {
	for name, c := range servers(t) {
		t.Run(name, func(t *testing.T) {
			url := testenv.NewQueue(t, c, testenv.Name("src"), nil)
			fill(t, c, url, 25)
			var deleted atomic.Int64
			src := sqs.New(c, sqs.Config{QueueURL: url, WaitTime: time.Second, VisibilityTimeout: 30 * time.Second, DeleteLinger: 5 * time.Millisecond}, quiet,
				sqs.Hooks{Deleted: func(n int) { deleted.Add(int64(n)) }})
			got := 0
			for got < 25 {
				msgs, err := src.Receive(context.Background(), 3)
				if err != nil {
					t.Fatal(err)
				}
				if len(msgs) > 3 {
					t.Fatalf("asked for 3, got %d", len(msgs))
				}
				for _, m := range msgs {
					if m.ReceiveCount != 1 || m.Handle == nil || m.Handle == "" || len(m.Body) == 0 || m.SentAt.IsZero() {
						t.Fatalf("message %+v", m)
					}
					src.Delete(m)
				}
				got += len(msgs)
			}
			src.Close()
			if deleted.Load() != 25 {
				t.Fatalf("deleted %d, want 25", deleted.Load())
			}
			if v, f := testenv.QueueCounts(t, c, url); v+f != 0 {
				t.Fatalf("queue holds %d+%d after deleting everything", v, f)
			}
		})
	}
}

func TestReleaseMakesMessagesVisibleAtOnce(t *testing.T) {
	for name, c := range servers(t) {
		t.Run(name, func(t *testing.T) {
			url := testenv.NewQueue(t, c, testenv.Name("rel"), nil)
			fill(t, c, url, 2)
			src := sqs.New(c, sqs.Config{QueueURL: url, WaitTime: time.Second, VisibilityTimeout: 60 * time.Second}, quiet, sqs.Hooks{})
			defer src.Close()
			msgs, err := src.Receive(context.Background(), 2)
			if err != nil || len(msgs) != 2 {
				t.Fatalf("receive: %v %d", err, len(msgs))
			}
			if err := src.Release(context.Background(), msgs); err != nil {
				t.Fatal(err)
			}
			again, err := src.Receive(context.Background(), 2)
			if err != nil || len(again) != 2 {
				t.Fatalf("after release: %v, %d messages", err, len(again))
			}
		})
	}
}

func TestHeartbeatKeepsSlowMessagesInvisible(t *testing.T) {
	// Embedded only: local-aws-sqs counts every visibility change as a receive.
	_, base, stop, err := localsqs.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c := awssqs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("t", "t", "")},
		func(o *awssqs.Options) { o.BaseEndpoint = aws.String(base) })
	url := testenv.NewQueue(t, c, "hb", nil)
	fill(t, c, url, 1)
	var extended atomic.Int64
	src := sqs.New(c, sqs.Config{QueueURL: url, WaitTime: 0, VisibilityTimeout: 2 * time.Second}, quiet, sqs.Hooks{Extended: func(n int) { extended.Add(int64(n)) }})
	defer src.Close()
	msgs, err := src.Receive(context.Background(), 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("%v %d", err, len(msgs))
	}
	// Work "slowly": three visibility timeouts. Nobody else must see the message meanwhile.
	other := sqs.New(c, sqs.Config{QueueURL: url, WaitTime: 0, VisibilityTimeout: 30 * time.Second}, quiet, sqs.Hooks{})
	defer other.Close()
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		stolen, err := other.Receive(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(stolen) > 0 {
			t.Fatalf("message redelivered while in flight, after %d extensions", extended.Load())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if extended.Load() < 3 {
		t.Fatalf("%d heartbeat extensions in 3 timeouts", extended.Load())
	}
	src.Delete(msgs[0])
}

func TestRetrySetsBackoff(t *testing.T) {
	for name, c := range servers(t) {
		t.Run(name, func(t *testing.T) {
			url := testenv.NewQueue(t, c, testenv.Name("retry"), nil)
			fill(t, c, url, 1)
			src := sqs.New(c, sqs.Config{QueueURL: url, WaitTime: 0, VisibilityTimeout: 60 * time.Second}, quiet, sqs.Hooks{})
			defer src.Close()
			msgs, _ := src.Receive(context.Background(), 1)
			if len(msgs) != 1 {
				t.Fatal("no message")
			}
			if err := src.Retry(context.Background(), msgs[0], time.Second); err != nil {
				t.Fatal(err)
			}
			if now, _ := src.Receive(context.Background(), 1); len(now) != 0 {
				t.Fatal("retried message visible before its backoff")
			}
			time.Sleep(1500 * time.Millisecond)
			later, _ := src.Receive(context.Background(), 1)
			if len(later) != 1 || later[0].ReceiveCount < 2 {
				t.Fatalf("after the backoff: %+v", later)
			}
		})
	}
}

// TestConformance runs the queue.Source conformance suite on both SQS servers, with and without
// a dead-letter queue.
func TestConformance(t *testing.T) {
	for name, c := range servers(t) {
		t.Run(name, func(t *testing.T) {
			for _, dlq := range []bool{false, true} {
				queuetest.Run(t, func(t *testing.T) queuetest.Env {
					url := testenv.NewQueue(t, c, testenv.Name("conf"), nil)
					const visibility = 4 * time.Second // SQS counts it in whole seconds
					cfg := sqs.Config{QueueURL: url, WaitTime: time.Second, VisibilityTimeout: visibility, DeleteLinger: 5 * time.Millisecond}
					if dlq {
						cfg.DLQURL = testenv.NewQueue(t, c, testenv.Name("conf-dlq"), nil)
					}
					src := sqs.New(c, cfg, quiet, sqs.Hooks{})
					e := queuetest.Env{Source: src, Send: func(b string) { fill1(t, c, url, b) }, DLQ: dlq}
					if !dlq { // the held-message tests once per server: a dead-letter queue changes nothing of them
						e.AckTimeout = visibility
						e.Another = func(t *testing.T) queue.Source { return sqs.New(c, cfg, quiet, sqs.Hooks{}) }
						e.Abandon = func() { sqs.Abandon(src) }
					}
					return e
				})
			}
		})
	}
}

func fill1(t *testing.T, c *awssqs.Client, url, body string) {
	if _, err := c.SendMessage(context.Background(), &awssqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String(body)}); err != nil {
		t.Fatal(err)
	}
}
