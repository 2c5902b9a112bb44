// Package process holds what Palleto does with an object's decompressed bytes. A Processor reads
// the stream to its end and returns the fields stored in the object's result.
package process

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
)

// Object describes the object being processed.
type Object struct {
	Bucket, Key, VersionID, ETag string
	Encoding                     string // as sniffed: plain, gzip, zstd, bzip2
}

// Fields are the processor's part of a result, merged into the result JSON. Keys must not clash
// with the result's own fields (bucket, key, size, bytes, ...); "lines" is the lines processor's.
type Fields map[string]any

// Processor processes one object's decompressed content.
//
// Process must read r until io.EOF or an error and return that error (wrapped) if it is not
// io.EOF; it must not retain r. It is called from many goroutines at once, each with its own
// object. An error wrapping ErrPermanent says retrying the object cannot help.
type Processor interface {
	Name() string
	Process(ctx context.Context, obj Object, r io.Reader) (Fields, error)
}

// ErrPermanent marks a processor error that retrying cannot fix (for example, input the
// processor cannot accept).
var ErrPermanent = errors.New("permanent processor error")

// Lines counts lines: every '\n', plus a last line that has no '\n'. It is the default.
type Lines struct{}

func (Lines) Name() string { return "lines" }

var bufPool = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// Process counts the lines of r.
func (Lines) Process(ctx context.Context, _ Object, r io.Reader) (Fields, error) {
	n, err := CountLines(ctx, r)
	if err != nil {
		return nil, err
	}
	return Fields{"lines": n}, nil
}

// CountLines returns how many lines r holds: its '\n' bytes, plus one if the data does not end
// with '\n'. It checks ctx between reads.
func CountLines(ctx context.Context, r io.Reader) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var lc LineCounter
	for {
		n, err := r.Read(buf)
		lc.Write(buf[:n])
		if err == io.EOF {
			return lc.Lines(), nil
		}
		if err != nil {
			return 0, err
		}
		if err := ctx.Err(); err != nil {
			return 0, err
		}
	}
}

var (
	regMu    sync.RWMutex
	registry = map[string]func(Options) (Processor, error){
		"lines":  func(Options) (Processor, error) { return Lines{}, nil },
		"sha256": func(Options) (Processor, error) { return SHA256{}, nil },
		"grep":   func(o Options) (Processor, error) { return NewGrep(o.Grep) },
		"copy":   func(o Options) (Processor, error) { return Copy{Store: o.Store, CopyPath: o.CopyPath}, nil },
		"exec":   func(o Options) (Processor, error) { return NewExec(o.Exec, o.ExecTimeout) },
	}
)

// Register makes a processor available by name to New (and so to `palleto run --processor`).
func Register(name string, factory func(Options) (Processor, error)) {
	regMu.Lock()
	defer regMu.Unlock()
	registry[name] = factory
}

// Names lists the registered processors.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// New returns the registered processor called name, built with opts.
func New(name string, opts Options) (Processor, error) {
	regMu.RLock()
	f, ok := registry[name]
	regMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("processor: %q is not one of %v", name, Names())
	}
	return f(opts)
}
