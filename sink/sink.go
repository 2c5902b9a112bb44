// Package sink writes results to disk: one JSON file per object at a deterministic path under
// the output directory (see Path), written atomically: temp file, fsync, rename, fsync of the
// directory. All file operations go through an os.Root, so neither a hostile key nor a symlink
// planted in the output directory can make Palleto write outside it.
package sink

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"
)

// FailedDir is the subdirectory of the output directory that holds failure records.
const FailedDir = "_failed"

// Result is what Palleto stores for a processed object.
type Result struct {
	Bucket       string         `json:"bucket"`
	Key          string         `json:"key"`
	VersionID    string         `json:"version_id"`
	ETag         string         `json:"etag"`
	Size         int64          `json:"size"`  // bytes fetched from S3
	Bytes        int64          `json:"bytes"` // bytes after decompression
	Encoding     string         `json:"encoding"`
	Processor    string         `json:"processor"`
	MessageID    string         `json:"message_id"`
	ReceiveCount int            `json:"receive_count,omitempty"`
	EventTime    time.Time      `json:"event_time,omitzero"`
	StartedAt    time.Time      `json:"started_at"`
	FinishedAt   time.Time      `json:"finished_at"`
	Fields       map[string]any `json:"-"` // the processor's fields, e.g. "lines"
}

// MarshalJSON writes the result's own fields, then the processor's fields in key order; a
// processor field named like one of the result's own is dropped.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	own, err := json.Marshal(plain(r))
	if err != nil || len(r.Fields) == 0 {
		return own, err
	}
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		if !ownFields[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := own[:len(own)-1] // without the closing brace
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(r.Fields[k])
		if err != nil {
			return nil, fmt.Errorf("result field %q: %w", k, err)
		}
		out = append(append(append(append(out, ','), kb...), ':'), vb...)
	}
	return append(out, '}'), nil
}

// ownFields are the JSON names of Result's own fields.
var ownFields = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[Result]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}()

// Failure is the record of an object or message that could not be processed.
type Failure struct {
	Bucket       string    `json:"bucket,omitempty"`
	Key          string    `json:"key,omitempty"`
	VersionID    string    `json:"version_id,omitempty"`
	ETag         string    `json:"etag,omitempty"`
	MessageID    string    `json:"message_id"`
	Class        string    `json:"class"` // "permanent" or "retryable"
	Error        string    `json:"error"`
	ReceiveCount int       `json:"receive_count,omitempty"`
	Action       string    `json:"action"` // what happened to the message: deleted, dead-lettered, retried
	At           time.Time `json:"at"`
	Body         string    `json:"body,omitempty"` // the message body, for a message that could not be parsed
}

// Disk is a sink rooted at an output directory. It is safe for concurrent use.
type Disk struct {
	dir  string
	root *os.Root

	hmu     sync.Mutex
	handles map[string]*dirHandle // open directories, by path relative to dir
}

// Open creates dir if needed and returns a sink rooted there.
func Open(dir string) (*Disk, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	return &Disk{dir: dir, root: root, handles: map[string]*dirHandle{}}, nil
}

// Dir is the output directory.
func (d *Disk) Dir() string { return d.dir }

// Close releases the directory handle.
// Close releases the directory handles. No write may be in progress or start after.
func (d *Disk) Close() error {
	d.hmu.Lock()
	for _, h := range d.handles {
		h.close()
	}
	d.handles = nil
	d.hmu.Unlock()
	return d.root.Close()
}

// CheckWritable creates, syncs and removes a small file in the output directory: the readiness
// check that the disk takes writes (not full, not read-only, permitted).
func (d *Disk) CheckWritable() error {
	name := tempName()
	f, err := d.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("output directory %s not writable: %w", d.dir, err)
	}
	defer d.root.Remove(name)
	_, err = f.Write([]byte("ok\n"))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("output directory %s not writable: %w", d.dir, err)
	}
	return nil
}

// Existing returns the result stored for bucket/key, if any, and whether it is for the same
// object version: same versionID when both have one, else same eTag.
func (d *Disk) Existing(bucket, key, versionID, etag string) (Result, bool) {
	p := Path(bucket, key)
	dir, base := path.Split(p)
	d.hmu.Lock()
	h := d.handles[path.Clean(dir)]
	d.hmu.Unlock()
	var data []byte
	var err error
	if h != nil { // one openat instead of one per component
		data, err = h.root.ReadFile(base)
	} else {
		data, err = d.root.ReadFile(p)
	}
	if err != nil {
		return Result{}, false
	}
	var r Result
	if json.Unmarshal(data, &r) != nil || r.Bucket != bucket || r.Key != key {
		return Result{}, false
	}
	if versionID != "" && r.VersionID != "" {
		return r, versionID == r.VersionID
	}
	return r, etag != "" && r.ETag == etag
}

// WriteResult stores r durably and returns its path relative to the output directory. A failure
// record left by an earlier attempt on the same object is removed.
func (d *Disk) WriteResult(r Result) (string, error) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	p := Path(r.Bucket, r.Key)
	if err := d.writeAtomic(p, bytesWriter(append(data, '\n'))); err != nil {
		return "", err
	}
	_ = d.root.Remove(path.Join(FailedDir, p))
	return p, nil
}

// WriteFailure stores f durably and returns its path relative to the output directory: under
// _failed/ at the object's path when the bucket and key are known, else under
// _failed/_messages/ by message ID.
func (d *Disk) WriteFailure(f Failure) (string, error) {
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return "", err
	}
	var p string
	if f.Bucket != "" {
		p = path.Join(FailedDir, Path(f.Bucket, f.Key))
	} else {
		p = path.Join(FailedDir, "_messages", escape(f.MessageID)+".json")
	}
	return p, d.writeAtomic(p, bytesWriter(append(data, '\n')))
}

// WriteFrom stores everything r yields at rel (a path relative to the output directory, such as
// CopyPath gives) with the same atomic protocol as results, and returns the bytes written. Nothing
// is left at rel when r fails: the temp file is removed.
func (d *Disk) WriteFrom(rel string, r io.Reader) (n int64, err error) {
	if !fs.ValidPath(rel) || rel == "." || strings.HasPrefix(rel, FailedDir+"/") {
		return 0, fmt.Errorf("write %q: not a path Palleto writes", rel)
	}
	err = d.writeAtomic(rel, func(w io.Writer) error {
		n, err = io.Copy(w, r)
		return err
	})
	return n, err
}

func bytesWriter(data []byte) func(io.Writer) error {
	return func(w io.Writer) error { _, err := w.Write(data); return err }
}

// writeAtomic writes what fill writes to rel: a temp file in the same directory, fsync, rename,
// fsync of the directory. Temp names start with "%tmp-", which Path never produces.
func (d *Disk) writeAtomic(rel string, fill func(io.Writer) error) (err error) {
	dir, base := path.Split(rel)
	h, release, err := d.dirHandle(path.Clean(dir))
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	defer release()
	tmp := tempName()
	f, err := h.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrNotExist) && d.forget(path.Clean(dir), h) {
		// The directory was removed since it was opened (an operator cleaning up): open it again.
		release()
		if h, release, err = d.dirHandle(path.Clean(dir)); err != nil {
			return fmt.Errorf("write %s: %w", rel, err)
		}
		defer release()
		f, err = h.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			h.root.Remove(tmp)
		}
	}()
	if err = fill(f); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", rel, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", rel, err)
	}
	if err = h.root.Rename(tmp, base); err != nil {
		return fmt.Errorf("rename %s: %w", rel, err)
	}
	if err = h.dir.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("fsync dir of %s: %w", rel, err)
	}
	return nil
}

// tempName is a fresh name for a file being written: "%tmp-" and 16 hex digits, a name Path never
// produces.
func tempName() string {
	var rnd [8]byte
	rand.Read(rnd[:])
	return "%tmp-" + hex.EncodeToString(rnd[:])
}

// dirHandle is an open directory under the output directory: a Root for the operations inside
// it (one openat each, instead of one per path component) and the directory itself, to fsync.
type dirHandle struct {
	root *os.Root
	dir  *os.File
}

func (h *dirHandle) close() {
	h.dir.Close()
	h.root.Close()
}

// forget drops h from the open handles, if it is still there; it reports whether it was. The
// handle is not closed: writers may still hold it (a deleted directory's descriptors are few).
func (d *Disk) forget(rel string, h *dirHandle) bool {
	d.hmu.Lock()
	defer d.hmu.Unlock()
	if d.handles[rel] != h {
		return false
	}
	delete(d.handles, rel)
	return true
}

// maxDirHandles bounds the directories kept open (two descriptors each).
const maxDirHandles = 256

// dirHandle returns the handle of rel (created when missing) and the function to call when done
// with it. Handles of recently used directories stay open for the next write; results of one
// prefix land in few directories, so most writes skip the walk from the output directory down.
func (d *Disk) dirHandle(rel string) (*dirHandle, func(), error) {
	d.hmu.Lock()
	if h, ok := d.handles[rel]; ok {
		d.hmu.Unlock()
		return h, func() {}, nil
	}
	d.hmu.Unlock()
	if err := d.root.MkdirAll(rel, 0o755); err != nil {
		return nil, nil, err
	}
	sub, err := d.root.OpenRoot(rel)
	if err != nil {
		return nil, nil, err
	}
	dir, err := sub.Open(".")
	if err != nil {
		sub.Close()
		return nil, nil, err
	}
	h := &dirHandle{root: sub, dir: dir}
	d.hmu.Lock()
	defer d.hmu.Unlock()
	if old, ok := d.handles[rel]; ok { // another writer opened it meanwhile
		h.close()
		return old, func() {}, nil
	}
	if d.handles == nil || len(d.handles) >= maxDirHandles {
		return h, h.close, nil // not kept: closed after this write
	}
	d.handles[rel] = h
	return h, func() {}, nil
}
