package dir

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/palleto/palleto/store"
	"github.com/palleto/palleto/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dir := t.TempDir()
		return func() (store.Store, error) { return Open(dir) }
	})
}

// The directory store as the daemon opens it: results written in the background.
func TestConformanceWritingInBackground(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		dir := t.TempDir()
		return func() (store.Store, error) {
			d, err := Open(dir)
			if err == nil {
				d.WriteInBackground(4)
			}
			return d, err
		}
	})
}

// TestBackgroundPutReturnsBeforeTheResultIsDurable: with WriteInBackground, Put hands the result
// to a writer and returns (the worker takes its next object); done comes once the file is there;
// Close waits for a write in progress; a Put beyond the writers waits for a free one. synctest
// tells when every goroutine is blocked, so the order is forced, not hoped for.
func TestBackgroundPutReturnsBeforeTheResultIsDurable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := t.TempDir()
		d, err := Open(out)
		if err != nil {
			t.Fatal(err)
		}
		d.WriteInBackground(1)
		release := make(chan struct{})
		defer func() { // a failed check must not leave the writer held
			select {
			case <-release:
			default:
				close(release)
			}
		}()
		d.beforeWrite = func(Result) { <-release }
		done := make(chan error, 2)
		p := d.Put(context.Background(), Result{Bucket: "b", Key: "k1", ETag: "e", Processor: "lines"}, func(err error) { done <- err })
		synctest.Wait() // Put returned; its writer is held before it writes
		select {
		case err := <-done:
			t.Fatalf("done (%v) before the result was written", err)
		default:
		}
		if _, err := os.Stat(filepath.Join(out, p)); err == nil {
			t.Fatal("the result is there before its write was let through")
		}
		// The only writer is busy: a second Put waits for it, and gives up with its context.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		d.Put(ctx, Result{Bucket: "b", Key: "k2", ETag: "e", Processor: "lines"}, func(err error) { done <- err })
		if err := <-done; !errors.Is(err, store.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("a Put that could not get a writer: %v, want a failure of the world (the context's)", err)
		}
		closed := make(chan error, 1)
		go func() { closed <- d.Close() }()
		synctest.Wait() // Close is blocked, or returned
		select {
		case <-closed:
			t.Fatal("Close returned while a result was being written")
		default:
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatalf("done: %v", err)
		}
		if err := <-closed; err != nil {
			t.Fatalf("Close: %v", err)
		}
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Fatalf("the result is not there once done was called: %v", err)
		}
	})
}

// TestReplacedOutputDirectoryIsFollowed: an operator who empties the output directory with
// rm -rf and mkdir, or moves it away and makes a new one, gets the next results in the directory
// that has the name now; readiness follows it too.
func TestReplacedOutputDirectoryIsFollowed(t *testing.T) {
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	d, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	write := func(key string) string {
		t.Helper()
		p, err := d.WriteResult(Result{Bucket: "b", Key: key, ETag: "e", Processor: "lines"})
		if err != nil {
			t.Fatalf("write %s: %v", key, err)
		}
		return p
	}
	write("dir/1")

	// rm -rf OUT; mkdir OUT
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.Ready(context.Background()); err != nil {
		t.Fatalf("not ready after the directory was made again: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, write("dir/2"))); err != nil {
		t.Fatalf("after rm -rf and mkdir, the result is not in the new directory: %v", err)
	}

	// mv OUT OUT.old; mkdir OUT
	old := out + ".old"
	if err := os.Rename(out, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	p := write("dir/3")
	if _, err := os.Stat(filepath.Join(out, p)); err != nil {
		t.Fatalf("after mv and mkdir, the result is not in the directory named %s: %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(old, p)); err == nil {
		t.Fatalf("after mv and mkdir, the result went to the moved directory %s", old)
	}

	// rm -rf OUT, nothing made again: Palleto makes it, as at start.
	os.RemoveAll(out)
	if _, err := os.Stat(filepath.Join(out, write("dir/4"))); err != nil {
		t.Fatalf("after rm -rf, the result is not in a new %s: %v", out, err)
	}
}

// TestDiskErrorsAreTheWorlds: a path blocked by a file (ENOTDIR) is a failure of the world,
// which never counts against the object.
func TestDiskErrorsAreTheWorlds(t *testing.T) {
	out := t.TempDir()
	d, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := os.WriteFile(filepath.Join(out, "b"), []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = d.WriteResult(Result{Bucket: "b", Key: "k", Processor: "lines"})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("write where OUT/<bucket> is a file: %v, want store.ErrUnavailable", err)
	}
	if _, err := d.PutFailure(context.Background(), Failure{Bucket: "b", Key: "k", Class: "permanent"}); err != nil {
		t.Fatalf("the failure record, under _failed/, should still be writable: %v", err)
	}
}

// TestCloseDoesNotWaitForeverForAStuckWrite: a result write stuck on a dead disk (an NFS server
// gone) holds Close for closeWait at most; the write, if it ever ends, then calls no done, so its
// message is not deleted after the daemon let go of the queue.
func TestCloseDoesNotWaitForeverForAStuckWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		d.WriteInBackground(2)
		release := make(chan struct{})
		d.beforeWrite = func(Result) { <-release }
		done := make(chan error, 1)
		d.Put(context.Background(), Result{Bucket: "b", Key: "k", ETag: "e", Processor: "lines"}, func(err error) { done <- err })
		start := time.Now()
		err = d.Close()
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Close with a stuck write: %v, want a failure of the world", err)
		}
		if waited := time.Since(start); waited != closeWait {
			t.Fatalf("Close waited %s, want %s", waited, closeWait)
		}
		close(release)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("done (%v) called after Close gave up on the write", err)
		default:
		}
	})
}
