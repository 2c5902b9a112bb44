package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
)

// refuser is a GroupWriter that refuses, for its data, every group holding a key in bad, and
// counts the groups it was given.
type refuser struct {
	mu     sync.Mutex
	bad    map[string]bool
	down   bool // every write fails as an unavailable store's
	writes [][]string
	stored map[string]bool
	wrote  chan struct{} // when set, told of each write
}

func (w *refuser) WriteGroup(_ context.Context, rs []Result) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]string, len(rs))
	for i, r := range rs {
		keys[i] = r.Key
	}
	w.writes = append(w.writes, keys)
	if w.wrote != nil {
		w.wrote <- struct{}{}
	}
	if w.down {
		return fmt.Errorf("%w: connection refused", ErrUnavailable)
	}
	for _, k := range keys {
		if w.bad[k] {
			return fmt.Errorf("%w: insert results: invalid byte sequence (SQLSTATE 22021)", ErrBadData)
		}
	}
	for _, k := range keys {
		w.stored[k] = true
	}
	return nil
}

// TestGroupRefusedForItsDataCommitsTheHealthyResults: a group of 16 holding 2 results the store
// refuses for their data commits the 14 others; only the 2 get the refusal, as ErrBadData (the
// object's own failure), and the committer finds them in a few writes, not one per result.
func TestGroupRefusedForItsDataCommitsTheHealthyResults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &refuser{bad: map[string]bool{"k3": true, "k12": true}, stored: map[string]bool{}}
		c := NewCommitter(w, GroupConfig{Size: 16, Timeout: 1e9})
		defer c.Close()
		errs := make([]error, 16)
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			c.Put(context.Background(), Result{Bucket: "b", Key: fmt.Sprintf("k%d", i)}, func(err error) { errs[i] = err; wg.Done() })
		}
		wg.Wait()
		for i, err := range errs {
			key := fmt.Sprintf("k%d", i)
			switch {
			case w.bad[key] && (!errors.Is(err, ErrBadData) || errors.Is(err, ErrUnavailable)):
				t.Errorf("%s, refused for its data: done(%v), want ErrBadData alone", key, err)
			case !w.bad[key] && err != nil:
				t.Errorf("%s, a healthy result in the refused group: done(%v)", key, err)
			case !w.bad[key] && !w.stored[key]:
				t.Errorf("%s: done(nil) but never stored", key)
			}
		}
		if len(w.writes[0]) != 16 {
			t.Fatalf("first write held %d results, want the whole group of 16", len(w.writes[0]))
		}
		if len(w.writes) > 2*2*4+1 { // 2 bad results, each found in log2(16) halvings of 2 writes
			t.Errorf("%d writes to find 2 bad results among 16: %v", len(w.writes), w.writes)
		}
		if _, n := c.Stats(); n != 14 {
			t.Errorf("Stats: %d results committed, want 14", n)
		}
	})
}

// TestGroupOfAnUnavailableStoreIsHeldWhole: a store that is down is not taken for bad data: the
// group is neither split nor failed, and is written whole once the store is back. (synctest's
// clock: the committer's waits between tries pass as soon as every goroutine is blocked.)
func TestGroupOfAnUnavailableStoreIsHeldWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := &refuser{down: true, stored: map[string]bool{}, wrote: make(chan struct{}, 100)}
		c := NewCommitter(w, GroupConfig{Size: 4, Timeout: 1e9})
		defer c.Close()
		done := make(chan error, 4)
		for i := range 4 {
			c.Put(context.Background(), Result{Bucket: "b", Key: fmt.Sprintf("k%d", i)}, func(err error) { done <- err })
		}
		for range 3 {
			<-w.wrote
		}
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("done(%v) while the store is down", err)
		default:
		}
		w.mu.Lock()
		for _, keys := range w.writes {
			if len(keys) != 4 {
				t.Fatalf("a group of an unavailable store was split: %v", w.writes)
			}
		}
		w.down = false
		w.mu.Unlock()
		for range 4 {
			if err := <-done; err != nil {
				t.Fatalf("done after the store came back: %v", err)
			}
		}
		if len(w.stored) != 4 {
			t.Fatalf("%d results stored, want 4", len(w.stored))
		}
	})
}
