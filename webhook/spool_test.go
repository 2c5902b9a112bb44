package webhook

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palleto/palleto/queue"
)

// receiveN receives until n messages came (each Receive waits for a POST or a due time), or
// fails after a minute.
func receiveN(t *testing.T, s *Source, n int) []*queue.Message {
	t.Helper()
	var got []*queue.Message
	deadline := time.Now().Add(time.Minute)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d messages in a minute", len(got), n)
		}
		msgs, err := s.Receive(context.Background(), min(10, n-len(got)))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, msgs...)
	}
	return got
}

func keys(t *testing.T, msgs []*queue.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, keyOf(t, m.Body))
	}
	slices.Sort(out)
	return out
}

// reopen closes s and opens its spool again, on a new port.
func reopen(t *testing.T, s *Source, mods ...func(*Config)) *Source {
	t.Helper()
	s.Close()
	return newSource(t, append([]func(*Config){func(c *Config) { c.Spool = s.cfg.Spool }}, mods...)...)
}

// TestRestartKeepsEveryAnsweredEvent: every event answered 200 is received after a restart
// with the same spool, the deleted ones excepted; the ones held when it stopped come back at
// once, with their delivery counted.
func TestRestartKeepsEveryAnsweredEvent(t *testing.T) {
	s := newSource(t)
	var want []string
	for i := range 20 {
		k := fmt.Sprintf("k%02d", i)
		if code, _, text := post(t, s.URL(), event("b", k)); code != 200 {
			t.Fatalf("POST %s: %d %s", k, code, text)
		}
		want = append(want, k)
	}
	held := receiveN(t, s, 5)
	for _, m := range held[:2] {
		s.Delete(m)
		want = slices.DeleteFunc(want, func(k string) bool { return k == keyOf(t, m.Body) })
	}
	s2 := reopen(t, s)
	got := receiveN(t, s2, 18)
	if fmt.Sprint(keys(t, got)) != fmt.Sprint(want) {
		t.Fatalf("after a restart: %v\nwant %v", keys(t, got), want)
	}
	wasHeld := map[string]bool{}
	for _, m := range held[2:] {
		wasHeld[keyOf(t, m.Body)] = true
	}
	for _, m := range got {
		if wasHeld[keyOf(t, m.Body)] != (m.ReceiveCount == 2) {
			t.Errorf("%s: delivery %d (held before the restart: %v)", keyOf(t, m.Body), m.ReceiveCount, wasHeld[keyOf(t, m.Body)])
		}
	}
	if more, _ := s2.Receive(context.Background(), 10); len(more) != 0 {
		t.Errorf("a message received twice after the restart: %v", keys(t, more))
	}
}

// TestReceiveWakesOnPost: a Receive waiting with nothing due returns the event POSTed meanwhile
// (its wait would be 10 minutes).
func TestReceiveWakesOnPost(t *testing.T) {
	s := newSource(t, func(c *Config) { c.WaitTime = 10 * time.Minute })
	waiting := make(chan struct{}, 1)
	testHookWaiting = func() { waiting <- struct{}{} }
	defer func() { testHookWaiting = nil }()
	got := make(chan []*queue.Message, 1)
	go func() {
		msgs, _ := s.Receive(context.Background(), 10)
		got <- msgs
	}()
	<-waiting
	post(t, s.URL(), event("b", "woken"))
	select {
	case msgs := <-got:
		if len(msgs) != 1 || keyOf(t, msgs[0].Body) != "woken" {
			t.Fatalf("woke with %v", msgs)
		}
	case <-time.After(time.Minute):
		t.Fatal("a waiting Receive did not wake on a POST")
	}
}

// TestReceiveReturnsOnCancel: a waiting Receive returns once its context is done.
func TestReceiveReturnsOnCancel(t *testing.T) {
	s := newSource(t, func(c *Config) { c.WaitTime = 10 * time.Minute })
	waiting := make(chan struct{}, 1)
	testHookWaiting = func() { waiting <- struct{}{} }
	defer func() { testHookWaiting = nil }()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := s.Receive(ctx, 1); done <- err }()
	<-waiting
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("Receive after cancel: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Receive did not return once its context was done")
	}
}

// TestLeaseIsKeptWhileHeld: a message held for longer than its lease is not received again
// while held (the keep-alive renews it), and Depth counts it in flight.
func TestLeaseIsKeptWhileHeld(t *testing.T) {
	s := newSource(t, func(c *Config) { c.AckTimeout = time.Second; c.WaitTime = 100 * time.Millisecond })
	post(t, s.URL(), event("b", "held"))
	post(t, s.URL(), event("b", "waiting"))
	m := receiveN(t, s, 1)[0]
	time.Sleep(2500 * time.Millisecond) // 2.5 leases: the scenario, not a synchronisation
	if v, f, err := s.Depth(context.Background()); err != nil || v != 1 || f != 1 {
		t.Errorf("Depth: %d visible, %d in flight (%v); want 1, 1", v, f, err)
	}
	other := receiveN(t, s, 1)
	if keyOf(t, other[0].Body) != "waiting" {
		t.Fatalf("received %s again while it was held", keyOf(t, other[0].Body))
	}
	if more, _ := s.Receive(context.Background(), 10); len(more) != 0 {
		t.Fatalf("received %v while held", keys(t, more))
	}
	s.Delete(m)
	s.Delete(other[0])
}

// TestRenewalNeverUndoesRetryOrRelease: a renewal decided before a retry or a release but run
// after it changes nothing.
func TestRenewalNeverUndoesRetryOrRelease(t *testing.T) {
	s := newSource(t)
	post(t, s.URL(), event("b", "retried"))
	post(t, s.URL(), event("b", "released"))
	msgs := receiveN(t, s, 2)
	ids := map[int64]int{}
	for _, m := range msgs {
		h, _ := handleOf(m)
		ids[h.id] = h.gen
	}
	for _, m := range msgs {
		if keyOf(t, m.Body) == "retried" {
			if err := s.Retry(context.Background(), m, time.Hour); err != nil {
				t.Fatal(err)
			}
		} else if err := s.Release(context.Background(), []*queue.Message{m}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.renew(context.Background(), ids); err != nil { // the late renewal
		t.Fatal(err)
	}
	got := receiveN(t, s, 1)
	if keyOf(t, got[0].Body) != "released" || got[0].ReceiveCount != 2 {
		t.Fatalf("after release and a late renewal: %s (delivery %d), want released, 2", keyOf(t, got[0].Body), got[0].ReceiveCount)
	}
	var notBefore int64
	s.sp.db.QueryRow(`SELECT not_before FROM messages WHERE CAST(body AS TEXT) LIKE '%retried%'`).Scan(&notBefore)
	if left := time.Until(time.Unix(0, notBefore)); left < 50*time.Minute {
		t.Fatalf("the retried message is due in %s, want its hour's delay kept", left)
	}
}

// TestDeadLetterGoesToFailures: a dead letter is kept in the spool's failures table, with its
// body and cause; once deleted, the message is gone.
func TestDeadLetterGoesToFailures(t *testing.T) {
	s := newSource(t)
	post(t, s.URL(), event("b", "poison"))
	m := receiveN(t, s, 1)[0]
	if err := s.DeadLetter(context.Background(), m, queue.DeadLetter{Error: "gzip: invalid header", Class: "permanent", ReceiveCount: 1, Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	s.Delete(m)
	s.Close()
	db, err := sql.Open("sqlite", s.cfg.Spool)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var body, cause, class string
	var left int
	if err := db.QueryRow(`SELECT body, error, class FROM failures`).Scan(&body, &cause, &class); err != nil {
		t.Fatal(err)
	}
	db.QueryRow(`SELECT COUNT(*) FROM messages`).Scan(&left)
	if keyOf(t, []byte(body)) != "poison" || cause != "gzip: invalid header" || class != "permanent" || left != 0 {
		t.Fatalf("failures row %q %q %q, %d messages left", body, cause, class, left)
	}
}

// TestCrashBetweenSpoolAndAnswer: an event committed to the spool whose answer never left (the
// process died) is in the spool after a restart, and the sender's second try is spooled too
// (the daemon finds the second one done).
func TestCrashBetweenSpoolAndAnswer(t *testing.T) {
	s := newSource(t)
	crashed := false
	testHookSpooled = func(http.ResponseWriter, int64) {
		if !crashed {
			crashed = true
			panic(http.ErrAbortHandler) // the connection is cut without an answer
		}
	}
	defer func() { testHookSpooled = nil }()
	req, _ := http.NewRequest(http.MethodPost, s.URL(), strings.NewReader(event("b", "once")))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the crashed POST was answered %d", resp.StatusCode)
	}
	if code, _, text := post(t, s.URL(), event("b", "once")); code != 200 { // the sender's retry
		t.Fatalf("the retry: %d %s", code, text)
	}
	s2 := reopen(t, s)
	if got := keys(t, receiveN(t, s2, 2)); fmt.Sprint(got) != "[once once]" {
		t.Fatalf("after the crash and the retry: %v", got)
	}
}

// TestDiskFull: with the spool's filesystem full, POSTs are answered 503 with Retry-After and
// nothing answered 503 is spooled; every event answered 200 is there after a restart; once
// there is room again, POSTs are taken. Needs root (a small tmpfs).
func TestDiskFull(t *testing.T) {
	dir := t.TempDir()
	if err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).Run(); err != nil {
		t.Skipf("cannot mount a small tmpfs to fill (needs root): %v", err)
	}
	defer exec.Command("umount", "-l", dir).Run()
	s := newSource(t, func(c *Config) { c.Spool = filepath.Join(dir, "spool.db") })
	var ok, refused []string
	pad := strings.Repeat("x", 64<<10)
	for i := range 3 {
		k := fmt.Sprintf("before%d-%s", i, pad)
		if code, _, text := post(t, s.URL(), event("b", k)); code != 200 {
			t.Fatalf("POST with room: %d %s", code, text)
		}
		ok = append(ok, k)
	}
	filler := filepath.Join(dir, "filler")
	os.WriteFile(filler, make([]byte, 2<<20), 0o644) // fails with ENOSPC once full, which is the point
	for i := 0; len(refused) < 3 && i < 100; i++ {
		k := fmt.Sprintf("k%03d-%s", i, pad)
		code, h, text := post(t, s.URL(), event("b", k))
		switch {
		case code == 200:
			ok = append(ok, k)
		case code == 503 && h.Get("Retry-After") != "" && strings.Contains(text, "disk is full"):
			refused = append(refused, k)
		default:
			t.Fatalf("POST on a full disk: %d %s", code, text)
		}
	}
	if len(refused) == 0 {
		t.Fatalf("100 POSTs of 64 KiB were all taken on a full 1 MiB filesystem")
	}
	if err := s.Ready(context.Background()); err == nil {
		t.Errorf("Ready says nothing with the spool's disk full")
	}
	os.Remove(filler)
	if code, _, text := post(t, s.URL(), event("b", "after")); code != 200 {
		t.Fatalf("once there is room: %d %s", code, text)
	}
	ok = append(ok, "after")
	s2 := reopen(t, s)
	got := keys(t, receiveN(t, s2, len(ok)))
	slices.Sort(ok)
	if strings.Join(got, ",") != strings.Join(ok, ",") {
		t.Fatalf("after a restart the spool holds %d events, want the %d answered 200", len(got), len(ok))
	}
	if more, _ := s2.Receive(context.Background(), 10); len(more) != 0 {
		t.Fatalf("an event answered 503 was spooled: %d more", len(more))
	}
	t.Logf("%d taken (3 before the disk filled, 1 after), %d refused with 503 on the full disk", len(ok), len(refused))
}
