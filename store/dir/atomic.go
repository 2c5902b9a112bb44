package dir

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"

	"github.com/palleto/palleto/store"
)

// diskErr wraps err with store.ErrUnavailable unless it is about the name itself, which no
// amount of waiting fixes: too long or not a name the filesystem takes is the object's own
// (store.ErrBadData), an invalid argument is left unclassed (the object's, retryable).
func diskErr(op, rel string, err error) error {
	if errors.Is(err, syscall.ENAMETOOLONG) || errors.Is(err, syscall.EILSEQ) {
		return fmt.Errorf("%w: %s %s: %w", store.ErrBadData, op, rel, err)
	}
	if errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("%s %s: %w", op, rel, err)
	}
	return fmt.Errorf("%w: %s %s: %w", store.ErrUnavailable, op, rel, err)
}

// writeAtomic writes what fill writes to rel: a temp file in the same directory, fsync, rename,
// fsync of the directory. Temp names start with "%tmp-", which Path never produces.
func (d *Store) writeAtomic(rel string, fill func(io.Writer) error) (err error) {
	dir, base := path.Split(rel)
	dir = path.Clean(dir)
	h, release, err := d.dirHandle(dir)
	if err != nil {
		return diskErr("write", rel, err)
	}
	defer release()
	tmp := tempName()
	f, err := h.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if (errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrClosed)) && d.forget(dir, h) {
		// The directory was removed since it was opened (an operator cleaning up): open it again.
		release()
		if h, release, err = d.dirHandle(dir); err != nil {
			return diskErr("write", rel, err)
		}
		defer release()
		f, err = h.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	}
	if err != nil {
		return diskErr("write", rel, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			h.root.Remove(tmp)
		}
	}()
	if err = fill(f); err != nil {
		return diskErr("write", rel, err)
	}
	if err = f.Sync(); err != nil {
		return diskErr("fsync", rel, err)
	}
	if err = f.Close(); err != nil {
		return diskErr("close", rel, err)
	}
	if err = h.root.Rename(tmp, base); err != nil {
		return diskErr("rename", rel, err)
	}
	if err = h.dir.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return diskErr("fsync dir of", rel, err)
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
func (d *Store) forget(rel string, h *dirHandle) bool {
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

// dirHandle returns the handle of rel (created when missing, each new directory made durable
// in its parent) and the function to call when done with it. Handles of recently used
// directories stay open for the next write; results of one prefix land in few directories, so
// most writes skip the walk from the output directory down.
func (d *Store) dirHandle(rel string) (*dirHandle, func(), error) {
	root, release, err := d.current()
	if err != nil {
		return nil, nil, err
	}
	defer release()
	d.hmu.Lock()
	if h, ok := d.handles[rel]; ok {
		d.hmu.Unlock()
		return h, func() {}, nil
	}
	d.hmu.Unlock()
	if err := mkdirAllSync(root, rel); err != nil {
		return nil, nil, err
	}
	sub, err := root.OpenRoot(rel)
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

// mkdirAllSync makes rel and its missing parents under root, and fsyncs the parent of each
// directory it makes, so that a result's directory survives a power loss with the result.
func mkdirAllSync(root *os.Root, rel string) error {
	if rel == "." || rel == "" {
		return nil
	}
	if fi, err := root.Stat(rel); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: rel, Err: syscall.ENOTDIR}
		}
		return nil
	}
	parent := path.Dir(rel)
	if err := mkdirAllSync(root, parent); err != nil {
		return err
	}
	// Made by another writer meanwhile (fs.ErrExist): its parent is synced here too, since this
	// writer's result must not depend on that writer's fsync.
	if err := root.Mkdir(rel, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	pd, err := root.Open(parent)
	if err != nil {
		return err
	}
	defer pd.Close()
	if err := pd.Sync(); err != nil && !errors.Is(err, fs.ErrInvalid) {
		return err
	}
	return nil
}
