package process

import (
	"bytes"
	"context"
	"fmt"
	"io"
)

// Store writes a file atomically under the output directory. The daemon hands its sink to the
// copy processor through Options.Store.
type Store interface {
	// WriteFrom stores all of r at rel (relative to the output directory) or nothing.
	WriteFrom(rel string, r io.Reader) (int64, error)
}

// Copy writes each object's decompressed content under the output directory, at the path
// CopyPath returns (the daemon's: _copy/<bucket>/<key>.data).
type Copy struct {
	Store    Store
	CopyPath func(bucket, key string) string
}

func (Copy) Name() string { return "copy" }

// Process returns {"copy": the path written, relative to the output directory, "lines": count}.
func (c Copy) Process(ctx context.Context, o Object, r io.Reader) (Fields, error) {
	if c.Store == nil || c.CopyPath == nil {
		return nil, fmt.Errorf("copy: %w: no output store configured", ErrPermanent)
	}
	rel := c.CopyPath(o.Bucket, o.Key)
	var lc LineCounter
	if _, err := c.Store.WriteFrom(rel, io.TeeReader(ctxReader{ctx, r}, &lc)); err != nil {
		return nil, fmt.Errorf("copy to %s: %w", rel, err)
	}
	return Fields{"copy": rel, "lines": lc.Lines()}, nil
}

// LineCounter is an io.Writer that counts the lines written through it, as CountLines does.
type LineCounter struct {
	n    int64
	last byte
	any  bool
}

func (c *LineCounter) Write(p []byte) (int, error) {
	if len(p) > 0 {
		c.n += int64(bytes.Count(p, []byte{'\n'}))
		c.last = p[len(p)-1]
		c.any = true
	}
	return len(p), nil
}

// Lines is the number of lines written so far, a last line without '\n' included.
func (c *LineCounter) Lines() int64 {
	if c.any && c.last != '\n' {
		return c.n + 1
	}
	return c.n
}

// ctxReader fails reads once ctx is done, so a long copy stops at a hard shutdown.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
