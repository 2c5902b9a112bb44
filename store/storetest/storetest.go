// Package storetest is the conformance suite every results store passes: the directory store,
// and any store added behind the store.Store seam. Run it from the store's own tests:
//
//	storetest.Run(t, func(t *testing.T) storetest.Opener { ... })
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/palleto/palleto/store"
)

// Opener opens the store under test; called again after Close, it must open the same data (a
// restart after a crash or a stop).
type Opener func() (store.Store, error)

// Run runs every conformance test. fresh returns an Opener of a new, empty store.
func Run(t *testing.T, fresh func(t *testing.T) Opener) {
	t.Run("PutThenFind", func(t *testing.T) { testPutThenFind(t, fresh(t)) })
	t.Run("Idempotent", func(t *testing.T) { testIdempotent(t, fresh(t)) })
	t.Run("ProcessorIsPartOfTheIdentity", func(t *testing.T) { testProcessor(t, fresh(t)) })
	t.Run("LaterEventWins", func(t *testing.T) { testSequencer(t, fresh(t)) })
	t.Run("AlreadyStoredIsReported", func(t *testing.T) { testAlreadyStored(t, fresh(t)) })
	t.Run("Failures", func(t *testing.T) { testFailures(t, fresh(t)) })
	t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrent(t, fresh(t)) })
	t.Run("ReopenKeepsWhatWasDone", func(t *testing.T) { testReopen(t, fresh(t)) })
	t.Run("BadDataFailsAlone", func(t *testing.T) { testBadData(t, fresh) })
}

func open(t *testing.T, o Opener) store.Store {
	t.Helper()
	s, err := o()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Ready(context.Background()); err != nil {
		t.Fatalf("Ready of a new store: %v", err)
	}
	return s
}

// put stores r and waits for done, which must be called exactly once.
func put(t *testing.T, s store.Store, r store.Result) {
	t.Helper()
	if err := putErr(s, r); err != nil {
		t.Fatalf("Put %s/%s: %v", r.Bucket, r.Key, err)
	}
}

func putErr(s store.Store, r store.Result) error {
	done := make(chan error, 2)
	s.Put(context.Background(), r, func(err error) { done <- err })
	select {
	case err := <-done:
		select {
		case <-done:
			return fmt.Errorf("done called twice")
		case <-time.After(10 * time.Millisecond):
		}
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("done not called within 30s")
	}
}

func result(bucket, key string, lines int) store.Result {
	now := time.Now().UTC().Truncate(time.Millisecond)
	return store.Result{Bucket: bucket, Key: key, ETag: "e-" + key, Size: 10, Bytes: int64(lines * 4), Encoding: "gzip",
		Processor: "lines", MessageID: "m-" + key, ReceiveCount: 1, StartedAt: now, FinishedAt: now, Fields: map[string]any{"lines": int64(lines)}}
}

func find(t *testing.T, s store.Store, bucket, key, processor string) *store.Result {
	t.Helper()
	r, err := s.Result(context.Background(), bucket, key, processor)
	if err != nil {
		t.Fatalf("Result %s/%s: %v", bucket, key, err)
	}
	return r
}

func lines(r *store.Result) string {
	if r == nil {
		return "<none>"
	}
	return fmt.Sprint(r.Fields["lines"])
}

func testPutThenFind(t *testing.T, o Opener) {
	s := open(t, o)
	want := result("bkt", "dir/a b+c.gz", 7)
	want.VersionID, want.Sequencer = "v1", "0055AA"
	put(t, s, want)
	got := find(t, s, "bkt", "dir/a b+c.gz", "lines")
	if got == nil {
		t.Fatal("the result just put is not found")
	}
	if got.Bucket != want.Bucket || got.Key != want.Key || got.ETag != want.ETag || got.VersionID != want.VersionID ||
		got.Sequencer != want.Sequencer || got.Size != want.Size || got.Bytes != want.Bytes || got.Encoding != want.Encoding ||
		got.Processor != want.Processor || got.MessageID != want.MessageID || lines(got) != "7" {
		t.Fatalf("found %+v, want %+v", got, want)
	}
	if !store.SameVersion(got, "v1", "") || store.SameVersion(got, "v2", "") {
		t.Fatal("SameVersion does not tell versions apart")
	}
	if r := find(t, s, "bkt", "dir/other", "lines"); r != nil {
		t.Fatalf("found a result never put: %+v", r)
	}
}

// kept checks that Put reported that the store kept its own result (want: store.ErrAlreadyStored
// or store.ErrSuperseded) instead of storing r.
func kept(t *testing.T, s store.Store, r store.Result, want error) {
	t.Helper()
	err := putErr(s, r)
	if !errors.Is(err, want) || (want == store.ErrAlreadyStored && errors.Is(err, store.ErrSuperseded)) {
		t.Fatalf("Put %s/%s (etag %q, version %q, sequencer %q): done got %v, want %v", r.Bucket, r.Key, r.ETag, r.VersionID, r.Sequencer, err, want)
	}
}

func testIdempotent(t *testing.T, o Opener) {
	s := open(t, o)
	r := result("bkt", "k", 3)
	put(t, s, r)
	kept(t, s, r, store.ErrAlreadyStored)
	if got := find(t, s, "bkt", "k", "lines"); lines(got) != "3" || got.ETag != r.ETag {
		t.Fatalf("after putting the same result twice: %+v", got)
	}
}

func testProcessor(t *testing.T, o Opener) {
	s := open(t, o)
	put(t, s, result("bkt", "k", 3))
	if got := find(t, s, "bkt", "k", "grep"); got != nil {
		t.Fatalf("a result of processor lines was found for grep: %+v", got)
	}
	g := result("bkt", "k", 3)
	g.Processor, g.Fields = "grep", map[string]any{"matches": int64(1)}
	put(t, s, g)
	if got := find(t, s, "bkt", "k", "grep"); got == nil || fmt.Sprint(got.Fields["matches"]) != "1" {
		t.Fatalf("grep's result: %+v", got)
	}
}

func testSequencer(t *testing.T, o Opener) {
	s := open(t, o)
	newer := result("bkt", "k", 2)
	newer.ETag, newer.Sequencer = "new", "0062E"
	put(t, s, newer)
	older := result("bkt", "k", 1)
	older.ETag, older.Sequencer = "old", "62D" // shorter: compared left-padded, so older
	kept(t, s, older, store.ErrSuperseded)
	if got := find(t, s, "bkt", "k", "lines"); got == nil || got.ETag != "new" {
		t.Fatalf("an older event replaced a newer result: %+v", got)
	}
	latest := result("bkt", "k", 3)
	latest.ETag, latest.Sequencer = "latest", "00630000"
	put(t, s, latest)
	if got := find(t, s, "bkt", "k", "lines"); got == nil || got.ETag != "latest" {
		t.Fatalf("a later event did not replace the result: %+v", got)
	}
}

// testAlreadyStored: Put reports a result of the same object version already there (the same
// version ID when both have one, else the same eTag, quotes aside) and keeps it; a result of
// another version replaces it.
func testAlreadyStored(t *testing.T, o Opener) {
	s := open(t, o)
	first := result("bkt", "k", 1)
	put(t, s, first)
	again := result("bkt", "k", 2)
	again.MessageID, again.ReceiveCount = "m-again", 2
	kept(t, s, again, store.ErrAlreadyStored)
	again.ETag = `"` + first.ETag + `"`
	kept(t, s, again, store.ErrAlreadyStored)
	if got := find(t, s, "bkt", "k", "lines"); got == nil || got.MessageID != first.MessageID || lines(got) != "1" {
		t.Fatalf("a result of the same version replaced the one there: %+v", got)
	}
	other := result("bkt", "k", 3)
	other.ETag = "e-other"
	put(t, s, other)
	if got := find(t, s, "bkt", "k", "lines"); got == nil || got.ETag != "e-other" || lines(got) != "3" {
		t.Fatalf("a result of another eTag did not replace the one there: %+v", got)
	}
	v1 := result("bkt", "v", 1)
	v1.VersionID, v1.ETag = "v1", "x"
	put(t, s, v1)
	v1b := v1
	v1b.ETag, v1b.MessageID = "y", "m-v1b" // version IDs decide when both have one
	kept(t, s, v1b, store.ErrAlreadyStored)
	v2 := v1b
	v2.VersionID = "v2"
	put(t, s, v2)
	if got := find(t, s, "bkt", "v", "lines"); got == nil || got.VersionID != "v2" {
		t.Fatalf("a result of another version did not replace the one there: %+v", got)
	}
	// Other processors are other results.
	g := result("bkt", "k", 1)
	g.ETag, g.Processor, g.Fields = "e-other", "grep", map[string]any{"matches": int64(1)}
	put(t, s, g)
}

func testFailures(t *testing.T, o Opener) {
	s := open(t, o)
	ctx := context.Background()
	f := store.Failure{Bucket: "bkt", Key: "bad.gz", ETag: "e", MessageID: "m1", Class: "retryable", Error: "exec: exit 1",
		ReceiveCount: 2, Attempts: 2, Action: "retry in 20s", At: time.Now().UTC()}
	if _, err := s.PutFailure(ctx, f); err != nil {
		t.Fatal(err)
	}
	got, err := s.Failure(ctx, "bkt", "bad.gz", "")
	if err != nil || got == nil || got.Attempts != 2 || got.Class != "retryable" || got.Error != f.Error || got.MessageID != "m1" {
		t.Fatalf("failure record: %+v, %v", got, err)
	}
	f.Attempts, f.Class = 3, "permanent"
	if _, err := s.PutFailure(ctx, f); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Failure(ctx, "bkt", "bad.gz", ""); got == nil || got.Attempts != 3 || got.Class != "permanent" {
		t.Fatalf("failure record after an update: %+v", got)
	}
	r := result("bkt", "bad.gz", 1)
	put(t, s, r)
	if got, _ := s.Failure(ctx, "bkt", "bad.gz", ""); got != nil {
		t.Fatalf("a success left the failure record: %+v", got)
	}
	msg := store.Failure{MessageID: "m/../2", Class: "permanent", Error: "malformed notification", Body: "{", At: time.Now().UTC()}
	if _, err := s.PutFailure(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Failure(ctx, "", "", "m/../2"); got == nil || got.Body != "{" {
		t.Fatalf("message failure: %+v", got)
	}
	if got, _ := s.Failure(ctx, "", "", "m3"); got != nil {
		t.Fatalf("found a message failure never put: %+v", got)
	}
}

func testConcurrent(t *testing.T, o Opener) {
	s := open(t, o)
	var wg sync.WaitGroup
	errs := make(chan error, 8*50*2)
	var mu sync.Mutex
	stored := map[int]int{} // of shared/i: the Puts that stored it
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				// Every writer writes key shared/i too: the same object processed twice at once.
				for _, key := range []string{fmt.Sprintf("w%d/%d", w, i), fmt.Sprintf("shared/%d", i)} {
					err := putErr(s, result("bkt", key, i))
					if key[0] == 's' && (err == nil || errors.Is(err, store.ErrAlreadyStored)) {
						mu.Lock()
						if err == nil {
							stored[i]++
						}
						mu.Unlock()
						continue
					}
					if err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range 50 {
		if stored[i] != 1 {
			t.Fatalf("shared/%d, put by 8 writers at once: %d Puts reported it stored, want 1 (the others ErrAlreadyStored)", i, stored[i])
		}
	}
	for w := range 8 {
		for i := range 50 {
			if got := find(t, s, "bkt", fmt.Sprintf("w%d/%d", w, i), "lines"); lines(got) != fmt.Sprint(i) {
				t.Fatalf("w%d/%d: %+v", w, i, got)
			}
		}
	}
	for i := range 50 {
		if got := find(t, s, "bkt", fmt.Sprintf("shared/%d", i), "lines"); lines(got) != fmt.Sprint(i) {
			t.Fatalf("shared/%d: %+v", i, got)
		}
	}
}

func testReopen(t *testing.T, o Opener) {
	s, err := o()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		put(t, s, result("bkt", fmt.Sprintf("r/%d", i), i))
	}
	if _, err := s.PutFailure(context.Background(), store.Failure{Bucket: "bkt", Key: "r/bad", MessageID: "m", Class: "permanent", Error: "corrupt", Attempts: 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = open(t, o)
	for i := range 20 {
		if got := find(t, s, "bkt", fmt.Sprintf("r/%d", i), "lines"); lines(got) != fmt.Sprint(i) {
			t.Fatalf("after reopening, r/%d: %+v", i, got)
		}
	}
	if got, _ := s.Failure(context.Background(), "bkt", "r/bad", ""); got == nil || got.Class != "permanent" {
		t.Fatalf("after reopening, the failure record: %+v", got)
	}
}
