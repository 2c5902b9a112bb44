// Package dir is the directory store (`--out DIR`, any --out that is not a URL): one JSON file
// per object at a deterministic path under the output directory (see Path), written atomically:
// temp file, fsync, rename, fsync of the directory and of every directory it created. All file
// operations go through an os.Root, so neither a hostile key nor a symlink planted in the output
// directory can make Palleto write outside it. When the output directory is replaced (removed and
// made again, or moved away), the next write notices and writes to the directory that now has
// the name.
package dir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/palleto/palleto/store"
)

// FailedDir is the subdirectory of the output directory that holds failure records.
const FailedDir = "_failed"

// Result and Failure are the store's records; their JSON is the directory store's file format.
type (
	Result  = store.Result
	Failure = store.Failure
)

// Store is the directory store. It is safe for concurrent use.
type Store struct {
	dir string

	mu     sync.RWMutex // guards root, id and closed: writers hold it for reading, a reopen for writing
	root   *os.Root
	id     fileID // of the directory root was opened on
	closed bool

	hmu     sync.Mutex
	handles map[string]*dirHandle // open directories, by path relative to dir

	locks [64]sync.Mutex // by hash of a result's path: a check of the sequencer and the write after it are one step

	// With WriteInBackground: a slot per result being written, and the writes not yet done.
	writing     chan struct{}
	writes      sync.WaitGroup
	doneMu      sync.RWMutex // held for reading by each done call, for writing by Close to abandon the rest
	abandoned   bool         // Close gave up waiting: the writes still going on call no done
	beforeWrite func(Result) // a test's hook: called by a background write before it writes
}

var _ store.Store = (*Store)(nil)

// Open returns a store rooted at dir. An existing dir is opened now; a missing one is made at
// the first write or readiness check, so that a command that fails its other checks leaves
// nothing behind.
func Open(dir string) (*Store, error) {
	d := &Store{dir: dir, handles: map[string]*dirHandle{}}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return d, nil
	}
	if err := d.reopen(); err != nil {
		return nil, err
	}
	return d, nil
}

// Dir is the output directory.
func (d *Store) Dir() string { return d.dir }

func (d *Store) String() string { return d.dir }

// fileID identifies a directory across renames: a new directory made under the old name differs.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{uint64(st.Dev), uint64(st.Ino)}
	}
	return fileID{}
}

// reopen (re)creates the output directory and opens it, dropping the handles of the old one.
func (d *Store) reopen() error {
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return fmt.Errorf("%w: output directory: %w", store.ErrUnavailable, err)
	}
	root, err := os.OpenRoot(d.dir)
	if err != nil {
		return fmt.Errorf("%w: output directory: %w", store.ErrUnavailable, err)
	}
	fi, err := root.Stat(".")
	if err != nil {
		root.Close()
		return fmt.Errorf("%w: output directory: %w", store.ErrUnavailable, err)
	}
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		root.Close()
		return fmt.Errorf("%w: output directory %s: the store is closed", store.ErrUnavailable, d.dir)
	}
	old := d.root
	d.root, d.id = root, idOf(fi)
	d.mu.Unlock()
	d.hmu.Lock()
	handles := d.handles
	d.handles = map[string]*dirHandle{}
	d.hmu.Unlock()
	if old != nil {
		old.Close()
		for _, h := range handles { // writers may still hold one: closing it fails their write, which is retried
			h.close()
		}
	}
	return nil
}

// current returns the root of the directory that has the output directory's name now, reopening
// it when the one open was removed or moved away. The caller must call the returned release.
func (d *Store) current() (*os.Root, func(), error) {
	fi, err := os.Stat(d.dir)
	d.mu.RLock()
	same := err == nil && d.root != nil && idOf(fi) == d.id
	closed := d.closed
	d.mu.RUnlock()
	if closed {
		return nil, nil, fmt.Errorf("%w: output directory %s: the store is closed", store.ErrUnavailable, d.dir)
	}
	if !same {
		if err := d.reopen(); err != nil {
			return nil, nil, err
		}
	}
	d.mu.RLock()
	if d.root == nil || d.closed { // closed meanwhile
		d.mu.RUnlock()
		return nil, nil, fmt.Errorf("%w: output directory %s: the store is closed", store.ErrUnavailable, d.dir)
	}
	return d.root, d.mu.RUnlock, nil
}

// Close waits for the results being written in the background (up to closeWait: then their
// done is never called), then releases the directory handles. No other write may be in progress
// or start after.
func (d *Store) Close() error {
	waited := make(chan struct{})
	go func() { d.writes.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(closeWait):
		d.doneMu.Lock()
		d.abandoned = true
		d.doneMu.Unlock()
		// The stuck writes hold the directory: it is left open, for the process that exits.
		return fmt.Errorf("%w: output directory %s: results still being written after %s; their messages stay in the queue", store.ErrUnavailable, d.dir, closeWait)
	}
	d.hmu.Lock()
	for _, h := range d.handles {
		h.close()
	}
	d.handles = nil
	d.hmu.Unlock()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.root == nil {
		return nil
	}
	err := d.root.Close()
	d.root = nil
	return err
}

// Ready creates, syncs and removes a small file in the output directory: the check that the disk
// takes writes (not full, not read-only, permitted, still there).
func (d *Store) Ready(context.Context) error { return d.CheckWritable() }

// CheckWritable is Ready without a context.
func (d *Store) CheckWritable() error {
	root, release, err := d.current()
	if err != nil {
		return err
	}
	defer release()
	name := tempName()
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("%w: output directory %s not writable: %w", store.ErrUnavailable, d.dir, err)
	}
	defer root.Remove(name)
	_, err = f.Write([]byte("ok\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: output directory %s not writable: %w", store.ErrUnavailable, d.dir, err)
	}
	return nil
}

func (d *Store) read(rel string) ([]byte, error) {
	root, release, err := d.current()
	if err != nil {
		return nil, err
	}
	defer release()
	data, err := root.ReadFile(rel)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", store.ErrUnavailable, rel, err)
	}
	return data, nil
}

// Result returns the result stored for bucket/key when it was written by processor.
func (d *Store) Result(_ context.Context, bucket, key, processor string) (*Result, error) {
	data, err := d.read(Path(bucket, key))
	if data == nil {
		return nil, err
	}
	var r Result
	if json.Unmarshal(data, &r) != nil || r.Bucket != bucket || r.Key != key || r.Processor != processor {
		return nil, nil
	}
	return &r, nil
}

// Failure returns the failure record of bucket/key, or of message messageID when bucket is "".
func (d *Store) Failure(_ context.Context, bucket, key, messageID string) (*Failure, error) {
	data, err := d.read(failurePath(bucket, key, messageID))
	if data == nil {
		return nil, err
	}
	var f Failure
	if json.Unmarshal(data, &f) != nil || f.Bucket != bucket || (bucket != "" && f.Key != key) || (bucket == "" && f.MessageID != messageID) {
		return nil, nil
	}
	return &f, nil
}

func failurePath(bucket, key, messageID string) string {
	if bucket != "" {
		return path.Join(FailedDir, Path(bucket, key))
	}
	return path.Join(FailedDir, "_messages", escape(messageID)+".json")
}

// WriteInBackground makes Put return before the result is written: up to n results are written
// at once, each by a goroutine of its own, and done is called once the result is durable; Put
// waits for a free slot beyond n. The worker takes its next object meanwhile, as it does with the
// grouped stores: a result's fsyncs (file and directory) took some 16 ms on the bench's VM, a
// worker's whole time for a small object and 7% of it for a 100 MiB one. Close waits for the
// writes. Call it before the first Put.
func (d *Store) WriteInBackground(n int) { d.writing = make(chan struct{}, max(n, 1)) }

// Put stores r durably and removes the object's failure record, unless the result there is a
// later event's or the same version's (done gets store.ErrSuperseded, ErrAlreadyStored); done is
// called once r is durable, or with what stopped it: before Put returns, unless in background.
func (d *Store) Put(ctx context.Context, r Result, done func(error)) string {
	p := Path(r.Bucket, r.Key)
	data, err := store.Encode(r) // a result that cannot be encoded fails alone, at once
	if err != nil {
		done(err)
		return p
	}
	if d.writing == nil {
		p, err := d.write(r, data)
		done(err)
		return p
	}
	select {
	case d.writing <- struct{}{}:
	case <-ctx.Done():
		done(diskErr("wait to write", p, ctx.Err()))
		return p
	}
	d.writes.Add(1)
	go func() {
		defer d.writes.Done()
		if d.beforeWrite != nil {
			d.beforeWrite(r)
		}
		_, err := d.write(r, data)
		<-d.writing
		d.doneMu.RLock()
		defer d.doneMu.RUnlock()
		if !d.abandoned {
			done(err)
		}
	}()
	return p
}

// closeWait bounds how long Close waits for the results being written: a write stuck on a dead
// disk (an NFS server gone) must not keep the daemon from exiting. Its message is not deleted and
// comes back after its visibility timeout.
const closeWait = 10 * time.Second

// WriteResult is Put without the callback: it returns the result's path relative to the output
// directory, and what done would get.
func (d *Store) WriteResult(r Result) (string, error) {
	data, err := store.Encode(r)
	if err != nil {
		return Path(r.Bucket, r.Key), err
	}
	return d.write(r, data)
}

// write stores r, whose JSON is data, unless the result there is to be kept (see Put).
func (d *Store) write(r Result, data []byte) (string, error) {
	p := Path(r.Bucket, r.Key)
	lock := d.lock(p)
	lock.Lock()
	defer lock.Unlock()
	old, err := d.Result(context.Background(), r.Bucket, r.Key, r.Processor)
	switch {
	case err != nil:
		return p, err
	case old != nil && store.Later(old.Sequencer, r.Sequencer):
		return p + " (kept: a later event's result)", store.ErrSuperseded
	case store.SameVersion(old, r.VersionID, r.ETag):
		return p + " (kept: the same version's result)", store.ErrAlreadyStored
	}
	if err := d.writeAtomic(p, bytesWriter(append(data, '\n'))); err != nil {
		return p, err
	}
	if root, release, err := d.current(); err == nil {
		_ = root.Remove(path.Join(FailedDir, p))
		release()
	}
	return p, nil
}

func (d *Store) lock(p string) *sync.Mutex {
	h := fnv.New32a()
	h.Write([]byte(p))
	return &d.locks[h.Sum32()%uint32(len(d.locks))]
}

// PutFailure stores f durably and returns its path relative to the output directory: under
// _failed/ at the object's path when the bucket and key are known, else under
// _failed/_messages/ by message ID.
func (d *Store) PutFailure(_ context.Context, f Failure) (string, error) {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return "", err
	}
	p := failurePath(f.Bucket, f.Key, f.MessageID)
	return p, d.writeAtomic(p, bytesWriter(append(data, '\n')))
}

// WriteFrom stores everything r yields at rel (a path relative to the output directory, such as
// CopyPath gives) with the same atomic protocol as results, and returns the bytes written. Nothing
// is left at rel when r fails: the temp file is removed. An error of r is returned as it is; an
// error of the disk wraps store.ErrUnavailable.
func (d *Store) WriteFrom(rel string, r io.Reader) (n int64, err error) {
	if !fs.ValidPath(rel) || rel == "." || strings.HasPrefix(rel, FailedDir+"/") {
		return 0, fmt.Errorf("write %q: not a path Palleto writes", rel)
	}
	src := &readErr{r: r}
	err = d.writeAtomic(rel, func(w io.Writer) error {
		n, err = io.Copy(w, src)
		return err
	})
	if src.err != nil {
		return n, src.err
	}
	return n, err
}

// readErr remembers an error of the reader, so that it is not taken for the disk's.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}

func bytesWriter(data []byte) func(io.Writer) error {
	return func(w io.Writer) error { _, err := w.Write(data); return err }
}
