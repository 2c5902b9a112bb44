package kafka_test

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/sourcetest"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/kafka"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/queue/queuetest"
)

func open(t *testing.T, src string, maxInFlight int) *kafka.Source {
	t.Helper()
	u, err := url.Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	s, err := kafka.Open(context.Background(), u, queue.Options{WaitTime: 500 * time.Millisecond, CallTimeout: 10 * time.Second, MaxInFlight: maxInFlight})
	if err != nil {
		t.Fatalf("Open %s: %v", src, err)
	}
	return s
}

// topic creates a fresh topic of n partitions and returns the source URL of a fresh group on it.
func topic(t *testing.T, brokers string, n int32, dlq bool) (src, name string) {
	t.Helper()
	name = testenv.Name("palleto")
	testenv.CreateTopic(t, testenv.KafkaProducer(t, brokers), name, n)
	src = fmt.Sprintf("kafka://%s/%s?group=%s-g", brokers, name, name)
	if dlq {
		testenv.CreateTopic(t, testenv.KafkaProducer(t, brokers), name+"-dlq", 1)
		src += "&dlq=" + name + "-dlq"
	}
	return src, name
}

func TestConformanceKafka(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	queuetest.Run(t, func(t *testing.T) queuetest.Env {
		src, name := topic(t, brokers, 1, true)
		pr := testenv.KafkaProducer(t, brokers)
		return queuetest.Env{Source: open(t, src, 20), DLQ: true, NoDeliveryCount: true,
			Send: func(body string) { testenv.Produce(t, pr, name, body) }}
	})
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

func bodies(msgs []*queue.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, string(m.Body))
	}
	slices.Sort(out)
	return out
}

// Objects finish out of order: the committed offset never passes a record not settled yet, so
// after a restart exactly the records from the first unsettled one on come back.
func TestCommitStopsAtTheFirstUnsettledRecord(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	src, name := topic(t, brokers, 1, false)
	testenv.Produce(t, testenv.KafkaProducer(t, brokers), name, "r0", "r1", "r2", "r3", "r4")
	s := open(t, src, 20)
	got := receive(t, s, 5, 20*time.Second)
	if len(got) != 5 {
		t.Fatalf("received %d of 5", len(got))
	}
	for _, m := range got {
		if string(m.Body) != "r1" {
			s.Delete(m)
		}
	}
	s.Close() // r1 unsettled: the commit is at r1's offset

	s2 := open(t, src, 20)
	defer s2.Close()
	again := receive(t, s2, 4, 20*time.Second)
	if fmt.Sprint(bodies(again)) != "[r1 r2 r3 r4]" {
		t.Fatalf("after a restart: %v, want [r1 r2 r3 r4] (r0 settled and committed, r1 not)", bodies(again))
	}
	for _, m := range again {
		s2.Delete(m)
	}
}

// A retried record holds its partition's commit: a restart while it waits gets it back.
func TestRetriedRecordHoldsTheCommit(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	src, name := topic(t, brokers, 1, false)
	testenv.Produce(t, testenv.KafkaProducer(t, brokers), name, "a", "b")
	s := open(t, src, 20)
	got := receive(t, s, 2, 20*time.Second)
	if len(got) != 2 {
		t.Fatalf("received %d of 2", len(got))
	}
	for _, m := range got {
		if string(m.Body) == "a" {
			if err := s.Retry(context.Background(), m, time.Hour); err != nil {
				t.Fatal(err)
			}
		} else {
			s.Delete(m)
		}
	}
	s.Close()
	s2 := open(t, src, 20)
	defer s2.Close()
	again := receive(t, s2, 2, 20*time.Second)
	if fmt.Sprint(bodies(again)) != "[a b]" {
		t.Fatalf("after a restart: %v, want [a b]: the retried record must not be committed past", bodies(again))
	}
}

// Two members of one group share the partitions; one joins mid-run and leaves again: every
// record is settled by one of them, none is lost.
func TestRebalanceLosesNothing(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	src, name := topic(t, brokers, 4, false)
	pr := testenv.KafkaProducer(t, brokers)
	var want []string
	for i := range 60 {
		want = append(want, fmt.Sprintf("m%02d", i))
	}
	testenv.Produce(t, pr, name, want[:30]...)

	var mu sync.Mutex
	settled := map[string]bool{}
	consume := func(s queue.Source, stop <-chan struct{}) {
		for {
			select {
			case <-stop:
				return
			default:
			}
			msgs, err := s.Receive(context.Background(), 5)
			if err != nil {
				continue
			}
			for _, m := range msgs {
				mu.Lock()
				settled[string(m.Body)] = true
				mu.Unlock()
				s.Delete(m)
			}
		}
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(settled) }
	a := open(t, src, 10)
	defer a.Close()
	stopA, stopB := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); consume(a, stopA) }()
	sourcetest.WaitFor(t, 30*time.Second, "the first member to settle records", func() bool { return count() >= 10 })

	b := open(t, src, 10) // joins mid-run: the group rebalances
	wg.Add(1)
	go func() { defer wg.Done(); consume(b, stopB) }()
	testenv.Produce(t, pr, name, want[30:]...)
	sourcetest.WaitFor(t, 60*time.Second, "both members to settle records", func() bool { return count() >= 45 })
	close(stopB)
	b.Close() // leaves: the group rebalances again, a takes its partitions
	sourcetest.WaitFor(t, 60*time.Second, "every record settled", func() bool { return count() == len(want) })
	close(stopA)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	var got []string
	for k := range settled {
		got = append(got, k)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("settled %v, want all of %v", got, want)
	}
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct{ url, err string }{
		{"kafka://127.0.0.1:9092/events?group=palleto", ""},
		{"kafka://b1:9092,b2:9092/events?group=g&dlq=dead&tls=1&sasl=scram-sha-512&user=u&password=p", ""},
		{"kafka:///events?group=g", "names no broker"},
		{"kafka://b/?group=g", "one topic"},
		{"kafka://b/events", "no consumer group"},
		{"kafka://b/events?group=g&dlq=events", "the topic itself"},
		{"kafka://b/events?group=g&sasl=gssapi", "sasl=gssapi"},
	} {
		u, _ := url.Parse(c.url)
		err := kafka.ParseURL(u)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%s: %v, want %q", c.url, err, c.err)
		}
	}
}

// A message's acknowledgement counts once: a second one, from a delivery that was retried and
// handed out again since, is a no-op and must not settle the new delivery, whose object may
// still fail (its record would be committed past, and lost).
func TestStaleAckDoesNotSettleTheNextDelivery(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	src, name := topic(t, brokers, 1, false)
	testenv.Produce(t, testenv.KafkaProducer(t, brokers), name, "a", "b")
	s := open(t, src, 20)
	got := receive(t, s, 2, 20*time.Second)
	if len(got) != 2 {
		t.Fatalf("received %d of 2", len(got))
	}
	var first *queue.Message
	for _, m := range got {
		if string(m.Body) == "a" {
			first = m
			if err := s.Retry(context.Background(), m, 0); err != nil {
				t.Fatal(err)
			}
		} else {
			s.Delete(m)
		}
	}
	again := receive(t, s, 1, 20*time.Second)
	if len(again) != 1 || string(again[0].Body) != "a" {
		t.Fatalf("the retried record did not come back: %v", bodies(again))
	}
	s.Delete(first) // a second acknowledgement of the first delivery: a no-op
	if err := s.Retry(context.Background(), again[0], time.Hour); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := open(t, src, 20)
	defer s2.Close()
	back := receive(t, s2, 2, 20*time.Second)
	if fmt.Sprint(bodies(back)) != "[a b]" {
		t.Fatalf("after a restart: %v, want [a b]: a stale ack settled the record being retried", bodies(back))
	}
}

// With a backlog, every Receive hands out records: the client's buffer is not dropped (and
// fetched again from the broker) between two Receives. Pausing the topic once the client had
// buffered a demand's worth dropped that buffer at the next poll, which returned nothing, and
// the broker served the same records again: half the Receives empty, and the backlog fetched
// again after every demand.
func TestBacklogIsNotFetchedAgainPerReceive(t *testing.T) {
	brokers := testenv.KafkaBrokers(t)
	src, name := topic(t, brokers, 1, false)
	const n = 300
	var bs []string
	for i := range n {
		bs = append(bs, fmt.Sprint("m", i))
	}
	testenv.Produce(t, testenv.KafkaProducer(t, brokers), name, bs...)
	s := open(t, src, 20)
	defer s.Close()
	first := receive(t, s, 1, 20*time.Second) // the group joined and the first fetch is in
	if len(first) != 1 {
		t.Fatal("no record within 20s")
	}
	s.Delete(first[0])
	for got := 1; got < n; {
		msgs, err := s.Receive(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			t.Fatalf("an empty Receive with %d records of the backlog still waiting", n-got)
		}
		for _, m := range msgs {
			s.Delete(m)
		}
		got += len(msgs)
	}
}

// An unsettled record holds its partition's commit back, and every later record of it waits in
// memory: past maxPending the partition pauses, so memory stays bounded; settling the held
// record resumes it, and nothing is lost.
func TestPartitionPausesBehindAnUnsettledRecord(t *testing.T) {
	defer kafka.SetMaxPending(5)()
	brokers := testenv.KafkaBrokers(t)
	src, name := topic(t, brokers, 1, false)
	var all []string
	for i := range 20 {
		all = append(all, fmt.Sprintf("r%02d", i))
	}
	testenv.Produce(t, testenv.KafkaProducer(t, brokers), name, all...)
	s := open(t, src, 50)
	defer s.Close()
	first := receive(t, s, 1, 20*time.Second)
	if len(first) != 1 || string(first[0].Body) != "r00" {
		t.Fatalf("first receive: %v", bodies(first))
	}
	got := 1
	for empty := 0; empty < 4; { // four empty polls in a row (500ms each): the partition is paused
		msgs, err := s.Receive(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			empty++
		} else {
			empty = 0
		}
		for _, m := range msgs {
			s.Delete(m)
		}
		got += len(msgs)
	}
	if got >= len(all) {
		t.Fatalf("received all %d records while r00 was unsettled: the partition never paused", got)
	}
	s.Delete(first[0]) // the held record settled: the partition resumes
	rest := receive(t, s, len(all)-got, 20*time.Second)
	if got+len(rest) != len(all) {
		t.Fatalf("received %d + %d of %d after the held record was settled", got, len(rest), len(all))
	}
}
