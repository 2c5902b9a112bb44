package breaker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock hands each After to the test (waits), which fires it when it wants; Now moves only
// when the test says so.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits chan after
}

type after struct {
	d time.Duration
	c chan time.Time
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), waits: make(chan after, 16)}
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.waits <- after{d, ch}
	return ch
}
func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// nextWait returns the next After the breaker asked for.
func (c *fakeClock) nextWait(t *testing.T) after {
	t.Helper()
	select {
	case a := <-c.waits:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("the breaker never waited")
		return after{}
	}
}

// probe is a probe the test answers: each call sends on calls and returns what the test sends
// on answers.
type probe struct {
	calls   chan struct{}
	answers chan error
}

func newProbe() *probe { return &probe{calls: make(chan struct{}, 1), answers: make(chan error)} }

func (p *probe) fn(ctx context.Context) error {
	p.calls <- struct{}{}
	select {
	case err := <-p.answers:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// answer waits for the probe to be called and answers err.
func (p *probe) answer(t *testing.T, err error) {
	t.Helper()
	select {
	case <-p.calls:
	case <-time.After(10 * time.Second):
		t.Fatal("the probe was never called")
	}
	p.answers <- err
}

type change struct {
	k         Key
	open      bool
	openOfDep int
}

type rig struct {
	b       *Breaker
	clock   *fakeClock
	changes chan change
	logs    *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newRig(t *testing.T) *rig {
	r := &rig{clock: newClock(), changes: make(chan change, 16), logs: &syncBuffer{}}
	r.b = New(Config{Clock: r.clock, Logger: slog.New(slog.NewTextHandler(r.logs, nil)),
		OnChange: func(k Key, open bool, n int, _ error) { r.changes <- change{k, open, n} }})
	t.Cleanup(r.b.Close)
	return r
}

func (r *rig) change(t *testing.T) change {
	t.Helper()
	select {
	case c := <-r.changes:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no open or close")
		return change{}
	}
}

var (
	store  = Key{Dep: "results store"}
	s3a    = Key{Dep: "S3", Scope: "a"}
	s3b    = Key{Dep: "S3", Scope: "b"}
	errOut = errors.New("connection refused")
)

// admitted reports whether a receive may go now.
func admitted(b *Breaker) bool { ok, _, _ := b.Admit(); return ok }

// TestFailuresInARowThenAProbeThatFailsOpen: fewer failures than FailuresToOpen, or a success
// between them, change nothing; the third in a row makes the probe run at once, and its failure
// opens the dependency: receiving pauses and Err says why.
func TestFailuresInARowThenAProbeThatFailsOpen(t *testing.T) {
	r := newRig(t)
	p := newProbe()
	r.b.Failure(store, errOut, p.fn)
	r.b.Failure(store, errOut, p.fn)
	r.b.Success(store)
	r.b.Failure(store, errOut, p.fn)
	if r.b.Failure(store, errOut, p.fn) || r.b.IsOpen(store) || !admitted(r.b) {
		t.Fatal("open after two failures in a row (a success between)")
	}
	if r.b.Failure(store, errOut, p.fn) {
		t.Fatal("open before its probe said so")
	}
	p.answer(t, errOut)
	if c := r.change(t); c != (change{store, true, 1}) {
		t.Fatalf("change %+v, want the store open", c)
	}
	if !r.b.IsOpen(store) || admitted(r.b) {
		t.Fatal("the store is down and receiving goes on")
	}
	if err := r.b.Err(); err == nil || !strings.Contains(err.Error(), "results store unavailable") || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Err() = %v", err)
	}
	if !strings.Contains(r.logs.String(), "results store UNAVAILABLE: receiving paused") {
		t.Errorf("log: %s", r.logs)
	}
	if since := r.b.PausedSince(); !since.Equal(r.clock.Now()) {
		t.Errorf("paused since %v, want %v", since, r.clock.Now())
	}
}

// TestSuspectThatAnswersItsProbeStaysClosed: failures of one object each (a 403 on one key) make
// the bucket suspect, but the bucket answers: nothing opens, nothing is said, nothing pauses.
func TestSuspectThatAnswersItsProbeStaysClosed(t *testing.T) {
	r := newRig(t)
	p := newProbe()
	for range 3 {
		r.b.Failure(s3a, errOut, p.fn)
	}
	p.answer(t, nil)
	r.b.Close() // waits for the probe loop to end
	select {
	case c := <-r.changes:
		t.Fatalf("a dependency that answers its probe changed: %+v", c)
	default:
	}
	if r.b.IsOpen(s3a) || !r.b.Allow(s3a) || !admitted(r.b) {
		t.Fatal("closed dependency stops work")
	}
}

// TestOpenDependencyIsProbedWithBackoffUntilItAnswers: once open, the probe runs after
// ProbeEvery, doubling to MaxProbeEvery; the first that works closes it and receiving resumes.
func TestOpenDependencyIsProbedWithBackoffUntilItAnswers(t *testing.T) {
	r := newRig(t)
	p := newProbe()
	for range 3 {
		r.b.Failure(store, errOut, p.fn)
	}
	p.answer(t, errOut)
	r.change(t)
	waited := make(chan error, 1)
	go func() { waited <- r.b.Wait(context.Background()) }()
	var got []time.Duration
	for i := range 5 {
		a := r.clock.nextWait(t)
		got = append(got, a.d)
		a.c <- time.Time{}
		if i < 4 {
			p.answer(t, errOut)
		}
	}
	if fmt.Sprint(got) != "[1s 2s 4s 8s 10s]" {
		t.Errorf("probe intervals %v, want 1s doubling to 10s", got)
	}
	select {
	case <-waited:
		t.Fatal("receiving resumed while the store is still down")
	default:
	}
	p.answer(t, nil)
	if c := r.change(t); c != (change{store, false, 0}) {
		t.Fatalf("change %+v, want the store closed", c)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	if r.b.Err() != nil || !r.b.PausedSince().IsZero() || !strings.Contains(r.logs.String(), "results store available again") {
		t.Errorf("Err %v, paused since %v; log %s", r.b.Err(), r.b.PausedSince(), r.logs)
	}
}

// TestSuccessClosesAnOpenDependency: a call that works closes it without waiting for the probe.
func TestSuccessClosesAnOpenDependency(t *testing.T) {
	r := newRig(t)
	p := newProbe()
	for range 3 {
		r.b.Failure(s3a, errOut, p.fn)
	}
	p.answer(t, errOut)
	r.change(t)
	r.b.Success(s3a)
	if c := r.change(t); c != (change{s3a, false, 0}) || r.b.IsOpen(s3a) {
		t.Fatalf("change %+v", c)
	}
	r.clock.nextWait(t).c <- time.Time{} // the probe loop wakes, finds it closed, and ends
}

// TestOneBucketDownDoesNotPauseTheOthers: with bucket a down and b known to work, receiving goes
// on, a's calls are refused but for one trial per TrialEvery, b's all go; with both down,
// receiving pauses but for one trial receive per TrialEvery.
func TestOneBucketDownDoesNotPauseTheOthers(t *testing.T) {
	r := newRig(t)
	r.b.Success(s3b)
	p := newProbe()
	for range 3 {
		r.b.Failure(s3a, errOut, p.fn)
	}
	p.answer(t, errors.New("403 AccessDenied"))
	if c := r.change(t); c != (change{s3a, true, 1}) {
		t.Fatalf("change %+v", c)
	}
	if !admitted(r.b) || r.b.Err() != nil || !r.b.PausedSince().IsZero() {
		t.Fatalf("bucket a down paused receiving: %v", r.b.Err())
	}
	if !strings.Contains(r.logs.String(), "S3 UNAVAILABLE (a): the messages that need it are put back") {
		t.Errorf("log: %s", r.logs)
	}
	if !r.b.Allow(s3b) || !r.b.Allow(s3b) {
		t.Error("bucket b's calls refused")
	}
	if r.b.Allow(s3a) {
		t.Error("bucket a called before its trial time")
	}
	r.clock.advance(10 * time.Second)
	if !r.b.Allow(s3a) || r.b.Allow(s3a) {
		t.Error("bucket a: want exactly one trial call per TrialEvery")
	}

	pb := newProbe()
	for range 3 {
		r.b.Failure(s3b, errOut, pb.fn)
	}
	pb.answer(t, errOut)
	if c := r.change(t); c != (change{s3b, true, 2}) {
		t.Fatalf("change %+v", c)
	}
	if !admitted(r.b) {
		t.Error("every bucket down: the first trial receive must go")
	}
	ok, _, retry := r.b.Admit()
	if ok || retry != 10*time.Second {
		t.Errorf("every bucket down: Admit %v, retry %s; want paused until the next trial in 10s", ok, retry)
	}
	if err := r.b.Err(); err == nil || !strings.Contains(err.Error(), "S3 (a)") || !strings.Contains(err.Error(), "S3 (b)") || r.b.PausedSince().IsZero() {
		t.Errorf("Err() = %v, paused since %v", err, r.b.PausedSince())
	}
	r.clock.advance(10 * time.Second)
	if !admitted(r.b) {
		t.Error("no trial receive after TrialEvery")
	}
}

// TestScopesAreBounded: events naming ever new buckets keep the breaker's memory bounded.
func TestScopesAreBounded(t *testing.T) {
	clock := newClock()
	b := New(Config{Clock: clock, MaxScopes: 4, Logger: slog.New(slog.DiscardHandler)})
	defer b.Close()
	for i := range 100 {
		b.Success(Key{"S3", fmt.Sprint(i)})
		b.Failure(Key{"S3", fmt.Sprint(i)}, errOut, nil)
	}
	if n := len(b.States()); n > 4 {
		t.Errorf("%d scopes kept, want at most 4", n)
	}
}

// TestCloseStopsProbes: Close returns with a dependency open and its probe waiting.
func TestCloseStopsProbes(t *testing.T) {
	r := newRig(t)
	p := newProbe()
	for range 3 {
		r.b.Failure(store, errOut, p.fn)
	}
	p.answer(t, errOut)
	r.change(t)
	r.clock.nextWait(t)
	r.b.Close() // must not hang
}
