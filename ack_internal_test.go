package palleto

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/metrics"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/queue/queuetest"
	"github.com/palleto/palleto/store"
	"github.com/palleto/palleto/store/dir"
)

// failAfter is how long a test waits for what must happen before it says it did not: a bound on
// failure, never a synchronisation.
const failAfter = 30 * time.Second

// daemonOn returns a daemon on the given source, S3 and store, with metrics, quick polls and
// cfg changed by mutate.
func daemonOn(t *testing.T, src queue.Source, s3 fetch.API, st store.Store, mutate func(*Config)) (*Daemon, *metrics.Metrics, *syncBuf) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.SQS.QueueURL = "http://fake/1/q"
	cfg.OutDir = "unused"
	cfg.Engine.Workers, cfg.Engine.Prefetch, cfg.Engine.Producer.Pollers = 2, 0, 1
	cfg.RetryBackoff = 0
	if mutate != nil {
		mutate(&cfg)
	}
	logs := &syncBuf{}
	met := metrics.New()
	d, err := New(cfg, Deps{Source: src, S3: s3, Store: st, Processor: procByKey{}, Logger: slog.New(slog.NewTextHandler(logs, nil)), Metrics: met})
	if err != nil {
		t.Fatal(err)
	}
	return d, met, logs
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// runAsync runs d; the channel gets its Summary when Run returns.
func runAsync(ctx context.Context, d *Daemon) <-chan Summary {
	out := make(chan Summary, 1)
	go func() { s, _ := d.Run(ctx); out <- s }()
	return out
}

func waitRun(t *testing.T, done <-chan Summary, logs *syncBuf) Summary {
	t.Helper()
	select {
	case s := <-done:
		return s
	case <-time.After(failAfter):
		t.Fatalf("Run did not return\n%s", logs)
		return Summary{}
	}
}

// metric reads one sample of the Prometheus text form, e.g. `palleto_x_total{source="sqs"}`.
func metric(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(func(context.Context) error { return nil }).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no sample %s", name)
	return 0
}

func disk(t *testing.T) *dir.Store {
	t.Helper()
	d, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// blockingDeletes is the fake source whose Delete waits until release is closed, as SQS's does
// behind a heartbeat call in flight; each Delete says when it starts.
type blockingDeletes struct {
	*queuetest.Fake
	release  chan struct{}
	deleting chan string
}

func (s *blockingDeletes) Delete(m *queue.Message) {
	s.deleting <- m.ID
	<-s.release
	s.Fake.Delete(m)
}

// heldStore is a grouped store the test commits: Put keeps done until the test calls it.
type heldStore struct {
	*dir.Store
	mu   sync.Mutex
	held []func(error)
	puts chan struct{}
	// readyErr and resultErr, when set, are what Ready and Result return.
	readyErr, resultErr error
}

func (s *heldStore) Put(ctx context.Context, r store.Result, done func(error)) string {
	s.Store.Put(ctx, r, func(error) {})
	s.mu.Lock()
	s.held = append(s.held, done)
	s.mu.Unlock()
	if s.puts != nil {
		s.puts <- struct{}{}
	}
	return "held"
}

func (s *heldStore) take() []func(error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.held
	s.held = nil
	return h
}

func (s *heldStore) Ready(ctx context.Context) error {
	if s.readyErr != nil {
		return s.readyErr
	}
	return s.Store.Ready(ctx)
}

func (s *heldStore) Result(ctx context.Context, bucket, key, processor string) (*store.Result, error) {
	if s.resultErr != nil {
		return nil, s.resultErr
	}
	return s.Store.Result(ctx, bucket, key, processor)
}

// TestSlowDeletesDoNotHoldTheCommits: the source's Delete blocks (a heartbeat call in flight);
// the grouped store's committer still calls back for every other result at once, and every
// message is deleted once the source answers.
func TestSlowDeletesDoNotHoldTheCommits(t *testing.T) {
	const n = ackers + 6
	objs := map[string]fakeObject{}
	src := &blockingDeletes{Fake: &queuetest.Fake{}, release: make(chan struct{}), deleting: make(chan string, n)}
	for i := range n {
		key := fmt.Sprintf("k%d", i)
		objs[key] = fakeObject{body: "x\n"}
		src.Send(event(key))
	}
	st := &heldStore{Store: disk(t)}
	d, _, logs := daemonOn(t, src, &fakeS3{objs: objs, gets: map[string]int{}}, st, nil)
	defer d.health.Close()
	r := &rig{d: d, src: src.Fake}
	for range n {
		r.deliverNoWait(t)
	}
	held := st.take()
	if len(held) != n {
		t.Fatalf("%d results waiting to commit, want %d", len(held), n)
	}
	committed := make(chan struct{})
	go func() { // the committer's goroutine: one group's callbacks
		for _, done := range held {
			done(nil)
		}
		close(committed)
	}()
	select {
	case <-committed:
	case <-time.After(failAfter):
		t.Fatalf("the committer waited for the source's Delete\n%s", logs)
	}
	select {
	case <-src.deleting: // a Delete is blocked now, and the commits went on
	case <-time.After(failAfter):
		t.Fatal("no Delete started")
	}
	close(src.release)
	d.ack.wait()
	d.ack.close()
	deletes := 0
	for _, e := range src.Events() {
		if strings.HasPrefix(e, "delete ") {
			deletes++
		}
	}
	if deletes != n || d.Stats().Deleted != n {
		t.Errorf("%d deletes (summary %d), want %d: %v", deletes, d.Stats().Deleted, n, src.Events())
	}
}

// deliverNoWait handles and settles the next message as a worker does, without waiting for its
// decision.
func (r *rig) deliverNoWait(t *testing.T) {
	t.Helper()
	msgs, _ := r.src.Receive(context.Background(), 1)
	if len(msgs) != 1 {
		t.Fatal("no message to deliver")
	}
	j := &job{m: msgs[0]}
	r.d.unsettled.Add(1)
	r.d.settle(j, r.d.handle(context.Background(), 1, j))
}

// TestOutcomesAreCountedForEverySource: with a source that is not SQS, the summary and
// palleto_source_messages_*_total{source} count what the daemon decided: received (redeliveries
// too), deleted, retried, dead-lettered.
func TestOutcomesAreCountedForEverySource(t *testing.T) {
	src := &queuetest.Fake{DLQ: true}
	ok := fakeObject{body: "a\nb\n"}
	s3 := &fakeS3{objs: map[string]fakeObject{"a": ok, "b": ok, "fail1": ok}, gets: map[string]int{}}
	src.Send(event("a"))
	src.Send(event("b"))
	src.Send(event("gone"))  // missing: permanent, dead-lettered and deleted
	src.Send(event("fail1")) // retryable, then promoted by the poison guard on its second delivery
	d, met, logs := daemonOn(t, src, s3, disk(t), func(c *Config) { c.MaxReceives, c.Engine.ExitWhenIdle = 2, 100*time.Millisecond })
	s := waitRun(t, runAsync(context.Background(), d), logs)
	if s.Received != 5 || s.Deleted != 4 || s.Retried != 1 || s.DeadLettered != 2 || s.Released != 0 || s.Undone != 0 {
		t.Errorf("summary: received %d, deleted %d, retried %d, dead-lettered %d, released %d, undone %d; want 5, 4, 1, 2, 0, 0\n%s",
			s.Received, s.Deleted, s.Retried, s.DeadLettered, s.Released, s.Undone, logs)
	}
	label := `{source="` + d.source() + `"}`
	for name, want := range map[string]float64{"received": 5, "deleted": 4, "retried": 1, "released": 0, "dead_lettered": 2} {
		if got := metric(t, met, "palleto_source_messages_"+name+"_total"+label); got != want {
			t.Errorf("palleto_source_messages_%s_total = %v, want %v", name, got, want)
		}
	}
	if got := metric(t, met, "palleto_sqs_messages_deleted_total"); got != 0 {
		t.Errorf("palleto_sqs_messages_deleted_total = %v with a source that is not SQS (it counts what SQS confirmed)", got)
	}
}

// TestIdleExitWaitsForResultsToCommit: with --exit-when-idle, a result that waits for its
// commit (a grouped store whose database is down) holds the exit however long the queue stays
// empty; once committed, the run ends with the message deleted and nothing undone.
func TestIdleExitWaitsForResultsToCommit(t *testing.T) {
	const idle = 50 * time.Millisecond
	src := &lateReceives{Fake: &queuetest.Fake{}, late: make(chan struct{})}
	src.Send(event("a"))
	st := &heldStore{Store: disk(t), puts: make(chan struct{}, 1)}
	d, _, logs := daemonOn(t, src, &fakeS3{objs: map[string]fakeObject{"a": {body: "x\n"}}, gets: map[string]int{}}, st,
		func(c *Config) { c.Engine.ExitWhenIdle = idle })
	done := runAsync(context.Background(), d)
	select {
	case <-st.puts:
	case <-time.After(failAfter):
		t.Fatalf("no result put\n%s", logs)
	}
	// Polls keep coming back empty (one each 200ms, the engine's pause after an instant empty
	// answer) long past the idle time: an idle exit would have come before a poll 1s from now.
	src.lateAfter(time.Now().Add(time.Second))
	select {
	case <-src.late:
	case s := <-done:
		t.Fatalf("the run exited while a result waited to commit (deleted %d, undone %d)", s.Deleted, s.Undone)
	}
	for _, f := range st.take() {
		f(nil)
	}
	s := waitRun(t, done, logs)
	if s.Deleted != 1 || s.Undone != 0 {
		t.Errorf("deleted %d, undone %d; want 1, 0", s.Deleted, s.Undone)
	}
}

// lateReceives is the fake source that closes late at the first Receive starting after a time.
type lateReceives struct {
	*queuetest.Fake
	mu    sync.Mutex
	after time.Time
	late  chan struct{}
	once  sync.Once
}

func (s *lateReceives) lateAfter(t time.Time) { s.mu.Lock(); s.after = t; s.mu.Unlock() }

func (s *lateReceives) Receive(ctx context.Context, max int) ([]*queue.Message, error) {
	s.mu.Lock()
	after := s.after
	s.mu.Unlock()
	if !after.IsZero() && time.Now().After(after) {
		s.once.Do(func() { close(s.late) })
	}
	return s.Fake.Receive(ctx, max)
}

// TestUncommittedAtTheEndIsUndone: results that could not be committed by the end (the database
// still down at Close) leave their messages in the queue, never deleted, and the summary counts
// them as undone.
func TestUncommittedAtTheEndIsUndone(t *testing.T) {
	src := &queuetest.Fake{}
	src.Send(event("a"))
	src.Send(event("b"))
	st := &heldStore{Store: disk(t), puts: make(chan struct{}, 2)}
	closing := &failAtClose{heldStore: st}
	ok := fakeObject{body: "x\n"}
	d, _, logs := daemonOn(t, src, &fakeS3{objs: map[string]fakeObject{"a": ok, "b": ok}, gets: map[string]int{}}, closing, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, d)
	for range 2 {
		select {
		case <-st.puts:
		case <-time.After(failAfter):
			t.Fatalf("no result put\n%s", logs)
		}
	}
	cancel()
	s := waitRun(t, done, logs)
	if s.Deleted != 0 || s.Undone != 2 || s.Retried != 2 {
		t.Errorf("deleted %d, undone %d, retried %d; want 0, 2, 2\n%s", s.Deleted, s.Undone, s.Retried, logs)
	}
}

// failAtClose fails every result still held when the store closes, as the grouped committer
// does when its database is still down.
type failAtClose struct{ *heldStore }

func (s *failAtClose) Close() error {
	for _, f := range s.take() {
		f(fmt.Errorf("%w: connection refused", store.ErrUnavailable))
	}
	return nil
}

// TestIdleExitFiresWhileReceivingIsPaused: the store is down, so the breaker pauses receiving;
// --exit-when-idle still ends the run, and it says how many messages it leaves undone.
func TestIdleExitFiresWhileReceivingIsPaused(t *testing.T) {
	src := &queuetest.Fake{}
	for _, k := range []string{"a", "b", "c"} {
		src.Send(event(k))
	}
	down := fmt.Errorf("%w: connection refused", store.ErrUnavailable)
	st := &heldStore{Store: disk(t), readyErr: down, resultErr: down}
	d, _, logs := daemonOn(t, src, &fakeS3{objs: map[string]fakeObject{}, gets: map[string]int{}}, st, func(c *Config) {
		c.Engine.ExitWhenIdle, c.RetryBackoff = 100*time.Millisecond, 100*time.Millisecond
	})
	d.pausedIdleAfter = 500 * time.Millisecond // the run waits this long for the store to come back
	s := waitRun(t, runAsync(context.Background(), d), logs)
	if !strings.Contains(logs.String(), "results store UNAVAILABLE: receiving paused") {
		t.Errorf("the store never paused receiving:\n%s", logs)
	}
	if s.Deleted != 0 || s.Undone != 3 {
		t.Errorf("deleted %d, undone %d; want 0, 3", s.Deleted, s.Undone)
	}
	if d.Ready(context.Background()) == nil {
		t.Error("/readyz ready while the store is down")
	}
}
