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
	"strings"
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

// MarshalJSON writes the result's own fields and the processor's fields in one object.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	own, err := json.Marshal(plain(r))
	if err != nil || len(r.Fields) == 0 {
		return own, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(own, &m); err != nil {
		return nil, err
	}
	for k, v := range r.Fields {
		if _, clash := m[k]; !clash {
			m[k] = v
		}
	}
	return json.Marshal(m)
}

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
	return &Disk{dir: dir, root: root}, nil
}

// Dir is the output directory.
func (d *Disk) Dir() string { return d.dir }

// Close releases the directory handle.
func (d *Disk) Close() error { return d.root.Close() }

// CheckWritable creates, syncs and removes a small file in the output directory: the readiness
// check that the disk takes writes (not full, not read-only, permitted).
func (d *Disk) CheckWritable() error {
	var rnd [8]byte
	rand.Read(rnd[:])
	name := "%tmp-ready-" + hex.EncodeToString(rnd[:])
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
	data, err := d.root.ReadFile(Path(bucket, key))
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

// writeAtomic writes what fill writes to rel: a temp file in the same directory, fsync, rename, fsync of the
// directory. Temp names start with "%tmp-", which Path never produces.
func (d *Disk) writeAtomic(rel string, fill func(io.Writer) error) (err error) {
	dir := path.Dir(rel)
	if err := d.root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := path.Join(dir, "%tmp-"+hex.EncodeToString(rnd[:]))
	f, err := d.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", rel, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			d.root.Remove(tmp)
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
	if err = d.root.Rename(tmp, rel); err != nil {
		return fmt.Errorf("rename %s: %w", rel, err)
	}
	dh, err := d.root.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync dir of %s: %w", rel, err)
	}
	defer dh.Close()
	if err = dh.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return fmt.Errorf("fsync dir of %s: %w", rel, err)
	}
	return nil
}
