package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeSource hands out consecutive integers, at most per items per call (0: as many as asked),
// and records what each Receive asked for. With gate set, each call first waits for a value.
type fakeSource struct {
	mu     sync.Mutex
	asks   []int
	next   int
	per    int
	limit  int // total items available; 0 = unlimited
	gate   chan struct{}
	active int
	peak   int
	// reached, when set, is closed once at least want items have been handed out.
	want    int
	reached chan struct{}
}

func (s *fakeSource) Receive(ctx context.Context, max int) ([]int, error) {
	s.mu.Lock()
	s.asks = append(s.asks, max)
	s.active++
	s.peak = maxInt(s.peak, s.active)
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.active--; s.mu.Unlock() }()
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := max
	if s.per > 0 && n > s.per {
		n = s.per
	}
	if s.limit > 0 && s.next+n > s.limit {
		n = s.limit - s.next
	}
	out := make([]int, n)
	for i := range out {
		out[i] = s.next
		s.next++
	}
	if s.reached != nil && s.want > 0 && s.next >= s.want {
		close(s.reached)
		s.reached = nil
	}
	if n == 0 {
		// An empty long poll: wait a little, as SQS would, or the producer spins.
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return out, nil
}

func (s *fakeSource) calls() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.asks)
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

func collect(t *testing.T, p *Producer[int], n int) []int {
	t.Helper()
	var got []int
	timeout := time.After(5 * time.Second)
	for len(got) < n {
		select {
		case v := <-p.Out():
			got = append(got, v)
		case <-timeout:
			t.Fatalf("got %d items, want %d", len(got), n)
		}
	}
	return got
}

func startProducer(t *testing.T, src Source[int], cfg ProducerConfig) (*Producer[int], func() []int) {
	t.Helper()
	p := NewProducer(src, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []int, 1)
	go func() { done <- p.Run(ctx) }()
	stop := func() []int { cancel(); return <-done }
	t.Cleanup(func() { cancel() })
	return p, stop
}

func TestDemandOfTenAsksForTen(t *testing.T) {
	src := &fakeSource{}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 1, MaxBatch: 10})
	p.Ask(10)
	got := collect(t, p, 10)
	stop()
	if calls := src.calls(); len(calls) != 1 || calls[0] != 10 {
		t.Fatalf("Receive calls asked for %v, want exactly [10]", calls)
	}
	if !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Fatalf("items %v", got)
	}
}

func TestPartialBatchesUntilDemandMet(t *testing.T) {
	src := &fakeSource{per: 2}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 1, MaxBatch: 10})
	p.Ask(10)
	got := collect(t, p, 10)
	// The producer must not ask for more once the demand is met.
	time.Sleep(50 * time.Millisecond)
	stop()
	if calls := src.calls(); !slices.Equal(calls, []int{10, 8, 6, 4, 2}) {
		t.Fatalf("Receive calls asked for %v, want [10 8 6 4 2]", calls)
	}
	if len(got) != 10 {
		t.Fatalf("got %d items", len(got))
	}
}

func TestDemandFromSeveralConsumersIsAggregated(t *testing.T) {
	src := &fakeSource{gate: make(chan struct{})}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 1, MaxBatch: 20})
	p.Ask(1) // consumer A: the first poll asks for 1 and blocks at the gate
	waitFor(t, func() bool { return len(src.calls()) == 1 })
	var wg sync.WaitGroup
	for _, n := range []int{4, 5, 5} { // consumers B, C, D ask while the poll is in flight
		wg.Add(1)
		go func() { defer wg.Done(); p.Ask(n) }()
	}
	wg.Wait()
	waitFor(t, func() bool { return p.Demand() == 15 }) // the producer has taken every ask before the gate opens
	src.gate <- struct{}{}
	src.gate <- struct{}{}
	got := collect(t, p, 15)
	stop()
	if calls := src.calls(); !slices.Equal(calls, []int{1, 14}) {
		t.Fatalf("Receive calls asked for %v, want [1 14] (the demand of 3 consumers in one ask)", calls)
	}
	if len(got) != 15 {
		t.Fatalf("got %d items", len(got))
	}
}

func TestNoDemandNoPoll(t *testing.T) {
	src := &fakeSource{}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 4, MaxBatch: 10})
	time.Sleep(100 * time.Millisecond)
	if calls := src.calls(); len(calls) != 0 {
		t.Fatalf("producer polled %v with no demand", calls)
	}
	p.Ask(3)
	collect(t, p, 3)
	time.Sleep(100 * time.Millisecond)
	stop()
	if calls := src.calls(); !slices.Equal(calls, []int{3}) {
		t.Fatalf("Receive calls %v, want [3] and nothing once the demand was met", calls)
	}
}

func TestPollersRunConcurrentlyAndSplitDemand(t *testing.T) {
	src := &fakeSource{gate: make(chan struct{})}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 3, MaxBatch: 10})
	p.Ask(25)
	waitFor(t, func() bool { return len(src.calls()) == 3 })
	calls := src.calls()
	slices.Sort(calls)
	if !slices.Equal(calls, []int{5, 10, 10}) {
		t.Fatalf("concurrent polls asked for %v, want 10, 10 and 5", calls)
	}
	close(src.gate)
	collect(t, p, 25)
	stop()
	if src.peak != 3 {
		t.Fatalf("peak concurrent polls %d, want 3", src.peak)
	}
}

// Demand that trickles in while polls are out (each finished item asks for one more) must not
// take a free poller per unit: that turns every poll into a request for 1 or 2 messages, and
// each request costs a round trip and, on SQS, money. At most one short poll is out at a time;
// the rest of the demand waits for it and goes out together.
func TestTricklingDemandIsNotSplitAcrossFreePollers(t *testing.T) {
	src := &fakeSource{gate: make(chan struct{})}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 4, MaxBatch: 10})
	p.Ask(10)
	waitFor(t, func() bool { return len(src.calls()) == 1 })
	for i := range 3 { // three consumers finish one after another, each asking for one more
		p.Ask(1)
		waitFor(t, func() bool { return p.Demand() == 11+i }) // the producer has seen this unit alone
	}
	time.Sleep(20 * time.Millisecond) // a negative check: room for a poll that must not start
	if calls := src.calls(); !slices.Equal(calls, []int{10, 1}) {
		t.Fatalf("polls out %v, want [10 1]: one full poll and one short one, the other 2 units waiting", calls)
	}
	close(src.gate)
	collect(t, p, 13)
	stop()
	if calls := src.calls(); !slices.Equal(calls, []int{10, 1, 2}) {
		t.Fatalf("polls %v, want [10 1 2]: the 2 units that waited go out in one poll", calls)
	}
}

// While a full batch of received items still waits for consumers (a prefetch buffer), demand
// that comes back one unit at a time is not polled for in short calls: it waits until it makes a
// full batch, or until fewer than a batch are left waiting. (With SQS: 7.1 messages per receive
// in P2 of the bench before, where every finished object asked for one more.)
func TestShortPollsWaitWhileAFullBatchIsBuffered(t *testing.T) {
	src := &fakeSource{}
	var mu sync.Mutex
	var polls []string // the producer's trace of polls started, written from its own goroutine
	trace := func(format string, args ...any) {
		if msg := fmt.Sprintf(format, args...); strings.Contains(msg, "asking for") {
			mu.Lock()
			polls = append(polls, msg)
			mu.Unlock()
		}
	}
	started := func() int { mu.Lock(); defer mu.Unlock(); return len(polls) }
	poll := func(i int) string { mu.Lock(); defer mu.Unlock(); return polls[i] }
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 4, MaxBatch: 10, Trace: trace})
	p.Ask(20) // a prefetch: 20 items received and waiting, nobody takes them yet
	waitFor(t, func() bool { return p.Demand() == 0 && len(src.calls()) == 2 })
	got := collect(t, p, 1) // a consumer takes one (19 wait) and asks for it again
	p.Ask(1)
	waitFor(t, func() bool { return p.Demand() == 1 || started() > 2 })
	// The producer stored that demand before deciding on polls; the next item it hands out comes
	// from a later turn of its loop, after that decision.
	got = append(got, collect(t, p, 1)...) // 18 wait
	if n := started(); n != 2 {
		t.Fatalf("a short poll went out with 19 items waiting: %q", poll(2))
	}
	p.Ask(9) // the demand makes a full batch (10): it goes out at once
	waitFor(t, func() bool { return started() == 3 })
	if last := poll(2); !strings.Contains(last, "asking for 10 events") {
		t.Fatalf("poll %q, want a full batch of 10", last)
	}
	got = append(got, collect(t, p, 18)...) // 10 of the new batch wait
	p.Ask(3)
	waitFor(t, func() bool { return p.Demand() == 3 })
	got = append(got, collect(t, p, 1)...) // 9 wait: fewer than a batch, a short poll is due
	waitFor(t, func() bool { return started() == 4 })
	if last := poll(3); !strings.Contains(last, "asking for 3 events") {
		t.Fatalf("poll %q, want the 3 units of demand once fewer than a batch wait", last)
	}
	got = append(got, collect(t, p, 12)...)
	stop()
	if calls := src.calls(); !slices.Equal(calls, []int{10, 10, 10, 3}) {
		t.Fatalf("Receive calls asked for %v, want [10 10 10 3]", calls)
	}
	if len(got) != 33 {
		t.Fatalf("got %d items, want 33", len(got))
	}
}

func TestUndeliveredItemsAreReturned(t *testing.T) {
	src := &fakeSource{}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 1, MaxBatch: 10})
	p.Ask(5)
	waitFor(t, func() bool { return len(src.calls()) == 1 })
	got := collect(t, p, 2) // the poll has come back with all 5: 3 wait in the producer
	left := stop()
	if len(got)+len(left) != 5 {
		t.Fatalf("delivered %v and returned %v: want 5 items in all", got, left)
	}
}

type errSource struct {
	mu    sync.Mutex
	calls int
}

func (s *errSource) Receive(ctx context.Context, max int) ([]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.calls == 1 {
		return nil, errors.New("connection refused")
	}
	return []int{s.calls}, nil
}

func TestReceiveErrorBacksOffThenRecovers(t *testing.T) {
	src := &errSource{}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 1, MaxBatch: 10, ErrorBackoff: 30 * time.Millisecond})
	start := time.Now()
	p.Ask(1)
	collect(t, p, 1)
	stop()
	if elapsed := time.Since(start); elapsed < 30*time.Millisecond {
		t.Fatalf("recovered after %s, sooner than the backoff", elapsed)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

type settled struct {
	mu   sync.Mutex
	errs map[int]error
	by   map[int]int
}

func TestCrashingWorkerIsRestartedAndItsItemNotAcked(t *testing.T) {
	src := &fakeSource{limit: 20}
	s := &settled{errs: map[int]error{}, by: map[int]int{}}
	var traceMu sync.Mutex
	var trace []string
	cfg := Config{Producer: ProducerConfig{Pollers: 1, MaxBatch: 10, Trace: func(f string, a ...any) {
		traceMu.Lock()
		trace = append(trace, fmt.Sprintf(f, a...))
		traceMu.Unlock()
	}}, Workers: 1, ShutdownTimeout: time.Second, ExitWhenIdle: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	pl := New[int](src, cfg, Handler[int]{
		Handle: func(ctx context.Context, w int, item int) error {
			if item == 3 || item == 7 {
				panic(fmt.Sprintf("boom on %d", item))
			}
			return nil
		},
		Settle: func(item int, err error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if _, dup := s.errs[item]; dup {
				t.Errorf("item %d settled twice", item)
			}
			s.errs[item] = err
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pl.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if len(s.errs) != 20 {
		t.Fatalf("settled %d items, want all 20 (the worker must be restarted after each crash)", len(s.errs))
	}
	for item, err := range s.errs {
		crashed := item == 3 || item == 7
		if crashed != errors.Is(err, ErrPanic) {
			t.Errorf("item %d settled with %v", item, err)
		}
	}
	restarts := 0
	for _, line := range trace {
		if line == "supervisor: pipeline 1 crashed; restarted" {
			restarts++
		}
	}
	if restarts != 2 {
		t.Fatalf("%d restarts traced, want 2", restarts)
	}
}

func TestWorkersBoundInFlightAndDemand(t *testing.T) {
	src := &fakeSource{limit: 200}
	var mu sync.Mutex
	cur, peak, done := 0, 0, 0
	cfg := Config{Producer: ProducerConfig{Pollers: 2, MaxBatch: 10}, Workers: 4, ShutdownTimeout: time.Second, ExitWhenIdle: 50 * time.Millisecond}
	pl := New[int](src, cfg, Handler[int]{
		Handle: func(ctx context.Context, w int, item int) error {
			mu.Lock()
			cur++
			peak = maxInt(peak, cur)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			cur--
			done++
			mu.Unlock()
			return nil
		},
		Settle: func(int, error) {},
	})
	if err := pl.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if done != 200 || peak > 4 {
		t.Fatalf("handled %d (want 200), peak concurrency %d (want <= 4)", done, peak)
	}
	for _, n := range src.calls() {
		if n > 4 {
			t.Fatalf("a poll asked for %d with only 4 workers", n)
		}
	}
}

func TestShutdownFinishesInFlightAndReleasesTheRest(t *testing.T) {
	// Prefetch 3: items beyond the 2 workers wait in the pipeline, and must be handed back. The
	// stop comes once both workers are busy and at least 5 items were received, so at least 3
	// wait unstarted whatever the scheduling; the workers finish only after the stop.
	reached := make(chan struct{})
	src := &fakeSource{want: 5, reached: reached}
	started := make(chan int, 10)
	proceed := make(chan struct{})
	var mu sync.Mutex
	var ok, released []int
	cfg := Config{Producer: ProducerConfig{Pollers: 1, MaxBatch: 10}, Workers: 2, Prefetch: 3, ShutdownTimeout: 5 * time.Second}
	pl := New[int](src, cfg, Handler[int]{
		Handle: func(ctx context.Context, w int, item int) error {
			started <- item
			<-proceed
			return ctx.Err()
		},
		Settle: func(item int, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok = append(ok, item)
			}
		},
		Release: func(items []int) { mu.Lock(); released = append(released, items...); mu.Unlock() },
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; <-started; <-reached; cancel(); close(proceed) }()
	if err := pl.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	if len(ok) != 2 {
		t.Fatalf("%d in-flight items finished cleanly, want 2", len(ok))
	}
	src.mu.Lock()
	received := src.next
	src.mu.Unlock()
	all := append(slices.Clone(ok), released...)
	slices.Sort(all)
	if distinct := len(slices.Compact(slices.Clone(all))); len(released) == 0 || len(all) != received || distinct != received {
		t.Fatalf("received %d items; finished %v and released %v: every item not finished must be released, once", received, ok, released)
	}
	if p := pl.InFlight(); p != 0 {
		t.Fatalf("in flight after Run: %d", p)
	}
}

// TestHardStopDoesNotWaitForeverForAStuckHandler: a handler that ignores its context does not
// hold Run past the shutdown timeout plus the hard-stop timeout.
func TestHardStopDoesNotWaitForeverForAStuckHandler(t *testing.T) {
	src := &fakeSource{limit: 1}
	stuck := make(chan struct{})
	defer close(stuck)
	started := make(chan struct{})
	cfg := Config{Producer: ProducerConfig{Pollers: 1, MaxBatch: 10}, Workers: 1, ShutdownTimeout: 10 * time.Millisecond, HardStopTimeout: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	pl := New[int](src, cfg, Handler[int]{
		Handle: func(ctx context.Context, w int, item int) error { close(started); <-stuck; return nil },
		Settle: func(int, error) {},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { pl.Run(ctx); close(done) }()
	<-started
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run still waits for a handler that ignores its context, 5s after the stop")
	}
}

// TestGatePausesPolling: while the gate is shut (a dependency down), demand does not poll; once
// it opens, polling resumes by itself.
func TestGatePausesPolling(t *testing.T) {
	src := &fakeSource{}
	open := make(chan struct{})
	gate := func(ctx context.Context) error {
		select {
		case <-open:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 2, MaxBatch: 10, Gate: gate})
	p.Ask(5)
	time.Sleep(50 * time.Millisecond) // a negative check: nothing may happen in this window
	if calls := src.calls(); len(calls) != 0 {
		t.Fatalf("polled %v with the gate shut", calls)
	}
	close(open)
	collect(t, p, 5)
	stop()
}

// TestReceiveErrorBackoffGrows: errors in a row wait longer each time, so an SQS outage is not
// hammered; a success starts over.
func TestReceiveErrorBackoffGrows(t *testing.T) {
	src := &failingSource{fails: 4}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 1, MaxBatch: 10, ErrorBackoff: 20 * time.Millisecond, MaxErrorBackoff: time.Second})
	p.Ask(1)
	collect(t, p, 1)
	stop()
	at := src.times()
	if len(at) < 5 {
		t.Fatalf("%d calls, want at least 5", len(at))
	}
	for i, want := range []time.Duration{20, 40, 80, 160} {
		if gap := at[i+1].Sub(at[i]); gap < want*time.Millisecond {
			t.Errorf("wait after error %d: %s, want at least %dms", i+1, gap, want)
		}
	}
}

type failingSource struct {
	mu    sync.Mutex
	fails int
	at    []time.Time
}

func (s *failingSource) Receive(ctx context.Context, max int) ([]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.at = append(s.at, time.Now())
	if len(s.at) <= s.fails {
		return nil, errors.New("connection refused")
	}
	return []int{len(s.at)}, nil
}

func (s *failingSource) times() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.at)
}

// TestIdleExitWaitsForDeferredItems: an item put back with a retry delay is work still to do;
// the idle exit waits for it to come back and be handled.
func TestIdleExitWaitsForDeferredItems(t *testing.T) {
	src := &redelivering{}
	var pl *Pipeline[int]
	var mu sync.Mutex
	var handled []int
	cfg := Config{Producer: ProducerConfig{Pollers: 1, MaxBatch: 10}, Workers: 1, ShutdownTimeout: time.Second, ExitWhenIdle: 50 * time.Millisecond}
	pl = New[int](src, cfg, Handler[int]{
		Handle: func(ctx context.Context, w int, item int) error {
			mu.Lock()
			defer mu.Unlock()
			handled = append(handled, item)
			if len(handled) == 1 {
				return errors.New("retry me")
			}
			return nil
		},
		Settle: func(item int, err error) {
			if err != nil {
				until := time.Now().Add(300 * time.Millisecond)
				src.comeBack(item, until)
				pl.Deferred(until)
			}
		},
	})
	if err := pl.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(handled) != "[7 7]" {
		t.Fatalf("handled %v: the idle exit did not wait for the item in its retry delay", handled)
	}
}

// redelivering hands out 7 once, then again after the delay given to comeBack, as SQS does with
// a message whose visibility was set to a retry delay; otherwise it polls empty after 5ms.
type redelivering struct {
	mu    sync.Mutex
	given bool
	back  time.Time
	item  int
}

func (s *redelivering) comeBack(item int, at time.Time) {
	s.mu.Lock()
	s.item, s.back = item, at
	s.mu.Unlock()
}

func (s *redelivering) Receive(ctx context.Context, max int) ([]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.given:
		s.given = true
		return []int{7}, nil
	case !s.back.IsZero() && time.Now().After(s.back):
		s.back = time.Time{}
		return []int{s.item}, nil
	}
	s.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	s.mu.Lock()
	return nil, nil
}

// step is one scripted answer of a poll: wait, then return items.
type step struct {
	wait  time.Duration
	items []int
}

// scripted answers its n-th poll with script[n-1], and later polls empty after 5ms (a long
// poll on an empty queue, shortened).
type scripted struct {
	mu     sync.Mutex
	calls  int
	script []step
}

func (s *scripted) Receive(ctx context.Context, max int) ([]int, error) {
	s.mu.Lock()
	s.calls++
	st := step{wait: 5 * time.Millisecond}
	if s.calls <= len(s.script) {
		st = s.script[s.calls-1]
	}
	s.mu.Unlock()
	time.Sleep(st.wait)
	return st.items, nil
}

// runToIdle runs a pipeline with a 50ms idle exit and returns what it handled and released.
func runToIdle(t *testing.T, src Source[int], pollers, workers int) (handled []int, released int) {
	t.Helper()
	var mu sync.Mutex
	cfg := Config{Producer: ProducerConfig{Pollers: pollers, MaxBatch: 10}, Workers: workers, ShutdownTimeout: time.Second, ExitWhenIdle: 50 * time.Millisecond}
	pl := New[int](src, cfg, Handler[int]{
		Handle: func(ctx context.Context, w int, item int) error {
			mu.Lock()
			handled = append(handled, item)
			mu.Unlock()
			return nil
		},
		Settle:  func(int, error) {},
		Release: func(items []int) { released += len(items) },
	})
	if err := pl.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	slices.Sort(handled)
	return handled, released
}

// Servers hand a message to one poll only: local-aws-sqs gives every message to the first of
// two polls and answers it only at the end of its wait, while the second comes back empty.
func TestIdleExitWaitsForOlderPollsInFlight(t *testing.T) {
	src := &scripted{script: []step{{wait: 300 * time.Millisecond, items: []int{1, 2, 3}}}}
	if handled, released := runToIdle(t, src, 2, 4); fmt.Sprint(handled) != "[1 2 3]" || released != 0 {
		t.Fatalf("handled %v and released %d: the idle exit came while the first poll still held the items", handled, released)
	}
}

// With one poller, the first poll comes back empty and the second, started after it, brings
// items only after the idle delay: the queue looked idle while it was out.
func TestItemsArrivingAtIdleExitAreHandledNotReleased(t *testing.T) {
	src := &scripted{script: []step{{wait: 60 * time.Millisecond}, {wait: 200 * time.Millisecond, items: []int{1, 2, 3}}}} // the empty poll long-polls a while, as SQS does
	if handled, released := runToIdle(t, src, 1, 2); fmt.Sprint(handled) != "[1 2 3]" || released != 0 {
		t.Fatalf("handled %v, released %d: items that came back during the idle stop were handed back", handled, released)
	}
}

// emptyAtOnce answers every poll empty at once, as SQS does with a wait time of 0.
type emptyAtOnce struct{ calls atomic.Int64 }

func (e *emptyAtOnce) Receive(ctx context.Context, max int) ([]int, error) {
	e.calls.Add(1)
	return nil, nil
}

// TestEmptyQueueWithoutLongPollsDoesNotSpin: with demand, a source that answers empty at once
// (no long polling) is asked again only after a pause, not thousands of times a second.
func TestEmptyQueueWithoutLongPollsDoesNotSpin(t *testing.T) {
	src := &emptyAtOnce{}
	p, stop := startProducer(t, src, ProducerConfig{Pollers: 4, MaxBatch: 10})
	p.Ask(40)
	time.Sleep(500 * time.Millisecond) // the observation window: how often it polls in it
	stop()
	if n := src.calls.Load(); n > 20 {
		t.Fatalf("%d polls of an empty queue in 500ms: the producer spins", n)
	}
}
