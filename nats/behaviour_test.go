package nats_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/palleto/palleto/queue"
)

// TestProcessesShareOneConsumer: two sources on one durable consumer (two Palleto processes)
// take every message between them, none twice, each some.
func TestProcessesShareOneConsumer(t *testing.T) {
	s := newStream(t)
	a, b := open(t, s.url("C", false), 30*time.Second), open(t, s.url("C", false), 30*time.Second)
	defer a.Close()
	defer b.Close()
	const n = 60
	for i := range n {
		s.send(t, fmt.Sprint("m", i))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	per := [2]int{}
	var wg sync.WaitGroup
	for i, src := range []queue.Source{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
				msgs, err := src.Receive(context.Background(), 3)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for _, m := range msgs {
					seen[string(m.Body)]++
					per[i]++
				}
				total := len(seen)
				mu.Unlock()
				for _, m := range msgs {
					time.Sleep(5 * time.Millisecond) // work, so that the other process gets its share
					src.Delete(m)
				}
				if total == n {
					return
				}
			}
		}()
	}
	wg.Wait()
	for body, c := range seen {
		if c != 1 {
			t.Errorf("%s delivered %d times while held", body, c)
		}
	}
	if len(seen) != n || per[0] == 0 || per[1] == 0 {
		t.Fatalf("%d of %d messages received, %d and %d by each process", len(seen), n, per[0], per[1])
	}
}

// TestDeadLetterPublishesThenTerms: the dead letter carries the body and the reason in headers
// on the dlq subject; the Delete after it ends the message for good.
func TestDeadLetterPublishesThenTerms(t *testing.T) {
	s := newStream(t)
	src := open(t, s.url("C", true), 30*time.Second)
	s.send(t, `{"Records":"corrupt"}`)
	msgs, err := src.Receive(context.Background(), 1)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("receive: %v, %d", err, len(msgs))
	}
	why := queue.DeadLetter{Error: "corrupt gzip\nat byte 7", Class: "permanent", ReceiveCount: 1, Attempts: 1}
	if err := src.DeadLetter(context.Background(), msgs[0], why); err != nil {
		t.Fatal(err)
	}
	src.Delete(msgs[0])
	src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, s.name)
	if err != nil {
		t.Fatal(err)
	}
	dl, err := st.GetLastMsgForSubject(ctx, s.dlq)
	if err != nil {
		t.Fatalf("no dead letter on %s: %v", s.dlq, err)
	}
	if string(dl.Data) != `{"Records":"corrupt"}` || dl.Header.Get("Palleto-Error") != "corrupt gzip at byte 7" ||
		dl.Header.Get("Palleto-Class") != "permanent" || dl.Header.Get("Palleto-Message-Id") != msgs[0].ID {
		t.Errorf("dead letter %q, headers %v", dl.Data, dl.Header)
	}
	cons, err := st.Consumer(ctx, "C")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
		t.Errorf("after the dead letter and the delete: %+v, %v", info, err)
	}
}

// TestOpenSaysWhatIsMissing: without subject= a missing stream or consumer is an error that
// says how to fix it, and a consumer that is not a pull consumer with explicit acks is refused;
// a dlq subject no stream captures fails the check at start.
func TestOpenSaysWhatIsMissing(t *testing.T) {
	s := newStream(t)
	base := strings.TrimSuffix(s.server, "/") + "/"
	for _, tt := range []struct{ url, want string }{
		{base + s.name + "/C", "nats stream " + s.name + ": not found"},
	} {
		if _, err := queue.Open(context.Background(), tt.url, queue.Options{Logger: quiet, CallTimeout: 5 * time.Second}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("open %s: %v, want %q", tt.url, err, tt.want)
		}
	}
	src := open(t, s.url("C", false), 30*time.Second) // creates the stream and consumer C
	src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	other, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: s.name + "B", Subjects: []string{s.subject + "b"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.js.DeleteStream(context.Background(), s.name+"B") })
	if _, err := other.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "ackall", AckPolicy: jetstream.AckAllPolicy}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ url, want string }{
		{base + s.name + "/missing", "consumer " + s.name + "/missing: not found"},
		{base + s.name + "B/ackall", "palleto needs explicit acks"},
	} {
		if _, err := queue.Open(context.Background(), tt.url, queue.Options{Logger: quiet, CallTimeout: 5 * time.Second}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("open %s: %v, want %q", tt.url, err, tt.want)
		}
	}
	src = open(t, base+s.name+"/C?dlq=nowhere.dead", 30*time.Second)
	defer src.Close()
	if err := src.(queue.Checker).Check(context.Background()); err == nil || !strings.Contains(err.Error(), `dlq: no stream captures the subject "nowhere.dead"`) {
		t.Errorf("Check with a dlq no stream captures: %v", err)
	}
	if v, f, err := src.(queue.Depther).Depth(context.Background()); err != nil || v != 0 || f != 0 {
		t.Errorf("Depth of an empty consumer: %d, %d, %v", v, f, err)
	}
}
