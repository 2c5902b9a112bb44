package kafka_test

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/kafka"
	"github.com/palleto/palleto/queue"
)

// TestBacklogIsReceivedWithoutEmptyPolls: with a backlog in the topic, every Receive returns as
// many records as asked, none comes back empty after its wait (the client's buffered fetch is
// handed out, not dropped and fetched again), and every record comes once.
func TestBacklogIsReceivedWithoutEmptyPolls(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	src, name := topic(t, brokers, 1, false)
	pr := testenv.KafkaProducer(t, brokers)
	var bodies []string
	for i := range 200 {
		bodies = append(bodies, fmt.Sprintf("r%03d", i))
	}
	testenv.Produce(t, pr, name, bodies...)
	u, _ := url.Parse(src)
	// A long wait: a Receive that found nothing to hand out would show as an empty answer.
	s, err := kafka.Open(context.Background(), u, queue.Options{WaitTime: 5 * time.Second, CallTimeout: 10 * time.Second, MaxInFlight: 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := receive(t, s, 1, 30*time.Second) // joins the group and fetches
	if len(first) != 1 {
		t.Fatalf("no record within 30s")
	}
	seen := map[string]bool{string(first[0].Body): true}
	s.Delete(first[0])
	for len(seen) < len(bodies) {
		want := min(10, len(bodies)-len(seen))
		msgs, err := s.Receive(context.Background(), want)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != want {
			t.Fatalf("Receive(%d) with %d records in the topic not yet received: %d", want, len(bodies)-len(seen), len(msgs))
		}
		for _, m := range msgs {
			if seen[string(m.Body)] {
				t.Fatalf("%s received twice", m.Body)
			}
			seen[string(m.Body)] = true
			s.Delete(m)
		}
	}
}
