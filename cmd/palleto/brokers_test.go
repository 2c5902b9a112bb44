package main

import (
	"context"

	"encoding/json"
	"fmt"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/testenv"
)

// brokerKill9 is the end-to-end run of a broker source, as a user runs it: palleto backfill
// --to SOURCE announces n objects, palleto run --source SOURCE is killed -9 halfway and started
// again, and every object has its result, none is recorded as failed, and settled() says every
// message was acknowledged.
func brokerKill9(t *testing.T, env testenv.Env, bucket, source, idle string, settled func() string) {
	t.Helper()
	const n = 400
	objs := uploadMany(t, env.S3(), bucket, "k i/l+l", n, 40, 31)
	code, stdout, stderr := runPalleto(t, env.AWSEnv(), time.Minute, "backfill", "--bucket", bucket, "--to", source, "--json")
	var sum struct{ Sent int }
	if code != 0 || json.Unmarshal([]byte(lastLine(stdout)), &sum) != nil || sum.Sent != n {
		t.Fatalf("backfill --to: exit %d, %q\n%s", code, lastLine(stdout), tail(stderr, 2000))
	}
	out := t.TempDir()
	args := []string{"run", "--source", source, "--out", out, "--wait-time", "1s", "--log-format", "json", "--bucket", bucket}
	cmd, logs := startPalleto(t, env.AWSEnv(), args...)
	deadline := time.Now().Add(time.Minute)
	for countResults(out, bucket) < n/2 {
		if time.Now().After(deadline) {
			t.Fatalf("no progress:\n%s", tail(logs.String(), 3000))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	t.Logf("killed with %d of %d results written", countResults(out, bucket), n)

	// Kafka gives the killed member's partitions to the new one once its session times out (10s):
	// the idle time of the restart must be longer than that.
	code, _, stderr2 := runPalleto(t, env.AWSEnv(), 2*time.Minute, append(args, "--exit-when-idle", idle)...)
	if code != 0 {
		t.Fatalf("restart exited %d\n%s", code, tail(stderr2, 3000))
	}
	if bad := checkResults(t, out, objs); bad > 0 {
		t.Errorf("%d of %d objects have no correct result after the restart", bad, n)
	}
	if recs := failureRecords(out); len(recs) > 0 {
		t.Errorf("failures recorded: %v", recs[:min(5, len(recs))])
	}
	if why := settled(); why != "" {
		t.Errorf("after the restart: %s", why)
	}
}

// TestEndToEndKafkaKill9: --source kafka:// with backfill --to kafka://, a kill -9 halfway and a
// restart: every result right, and the group's committed offsets at the end of the topic.
func TestEndToEndKafkaKill9(t *testing.T) {
	env := testenv.Get(t)
	brokers := testenv.KafkaBrokers(t)
	bucket, topic := testenv.Name("kafkae2e"), testenv.Name("events")
	testenv.CreateTopic(t, testenv.KafkaProducer(t, brokers), topic, 3)
	createBucket(t, env, bucket)
	group := topic + "-palleto"
	brokerKill9(t, env, bucket, fmt.Sprintf("kafka://%s/%s?group=%s", brokers, topic, group), "20s", func() string {
		if lag := testenv.KafkaLag(t, brokers, topic, group); lag != 0 {
			return fmt.Sprintf("the group is %d records behind the end of the topic: not every record was settled and committed", lag)
		}
		return ""
	})
}

// TestEndToEndRabbitMQKill9: --source amqp:// with backfill --to amqp://, a kill -9 halfway
// and a restart: every result right, and the queue empty.
func TestEndToEndRabbitMQKill9(t *testing.T) {
	env := testenv.Get(t)
	base := testenv.AMQPURL(t)
	bucket, q := testenv.Name("amqpe2e"), testenv.Name("events")
	ch := testenv.AMQPChannel(t, base)
	if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	createBucket(t, env, bucket)
	brokerKill9(t, env, bucket, base+"?queue="+q, "5s", func() string {
		st, err := testenv.AMQPChannel(t, base).QueueDeclarePassive(q, true, false, false, false, nil)
		if err != nil || st.Messages != 0 {
			return fmt.Sprintf("the queue holds %d messages (%v): not every message was acknowledged", st.Messages, err)
		}
		return ""
	})
}

// TestUnknownAMQPQueueExits1: a queue the broker does not have is one clear error at start,
// naming the queue, and exit 1.
func TestUnknownAMQPQueueExits1(t *testing.T) {
	env := testenv.Get(t)
	base := testenv.AMQPURL(t)
	q := testenv.Name("no-such-queue")
	code, _, stderr := runPalleto(t, env.AWSEnv(), time.Minute, "run", "--source", base+"?queue="+q, "--out", t.TempDir(), "--log-format", "text")
	if code != 1 || !strings.Contains(stderr, q) || !strings.Contains(stderr, "NOT_FOUND") {
		t.Fatalf("exit %d, want 1 with an error naming the queue:\n%s", code, tail(stderr, 2000))
	}
	if strings.Contains(stderr, "guest:guest") {
		t.Errorf("the error shows the password:\n%s", stderr)
	}
}

func createBucket(t *testing.T, env testenv.Env, bucket string) {
	t.Helper()
	if _, err := env.S3().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("CreateBucket %s: %v", bucket, err)
	}
}
