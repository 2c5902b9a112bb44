package palleto

import (
	"context"
	"testing"
	"time"

	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/queue/queuetest"
)

// uncounted is a source whose transport counts no deliveries (Kafka): every message comes with
// ReceiveCount 0.
type uncounted struct{ *queuetest.Fake }

func (u uncounted) Receive(ctx context.Context, max int) ([]*queue.Message, error) {
	msgs, err := u.Fake.Receive(ctx, max)
	for _, m := range msgs {
		m.ReceiveCount = 0
	}
	return msgs, err
}

// TestPoisonGuardWithoutDeliveryCount: on a transport that counts no deliveries, the poison
// guard counts an object's own failures from its failure records, so a message that always
// fails is dead-lettered after --max-receives failures instead of being retried for ever.
func TestPoisonGuardWithoutDeliveryCount(t *testing.T) {
	fake := &queuetest.Fake{DLQ: true}
	ok := fakeObject{body: "a\n"}
	s3 := &fakeS3{objs: map[string]fakeObject{"fail1": ok}, gets: map[string]int{}}
	fake.Send(event("fail1")) // the processor always fails on it (retryable)
	d, _, logs := daemonOn(t, uncounted{fake}, s3, disk(t), func(c *Config) { c.MaxReceives, c.Engine.ExitWhenIdle = 3, 200*time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := waitRun(t, runAsync(ctx, d), logs)
	if s.DeadLettered != 1 || s.Deleted != 1 || s.Retried != 2 {
		t.Fatalf("dead-lettered %d, deleted %d, retried %d; want 1, 1, 2 (3 failures of its own, then the poison guard)\n%s", s.DeadLettered, s.Deleted, s.Retried, logs)
	}
	if dl := fake.DeadLetters(); len(dl) != 1 || dl[0].Attempts != 3 {
		t.Fatalf("dead letters %+v, want one after 3 attempts", dl)
	}
}
