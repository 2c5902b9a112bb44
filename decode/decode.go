// Package decode sniffs a stream's compression from its first bytes (never from a name) and
// returns a reader of the decompressed content. Gzip (every member of a multi-member file) and
// zstd use klauspost/compress, faster than the standard library; bzip2 uses compress/bzip2.
package decode

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// ErrCorrupt is wrapped by errors that mean the compressed data is bad: retrying will not help.
var ErrCorrupt = errors.New("corrupt compressed data")

// Encodings, as recorded in results.
const (
	Plain = "plain"
	Gzip  = "gzip"
	Zstd  = "zstd"
	Bzip2 = "bzip2"
)

var (
	gzipMagic  = []byte{0x1f, 0x8b}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	bzip2Magic = []byte("BZh")
)

// Sniff names the encoding of data that starts with head.
func Sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip
	case bytes.HasPrefix(head, zstdMagic):
		return Zstd
	case len(head) >= 4 && bytes.HasPrefix(head, bzip2Magic) && head[3] >= '1' && head[3] <= '9':
		return Bzip2
	}
	return Plain
}

// Reader is a decompressing reader. Close releases the decoder, not the underlying reader.
type Reader struct {
	io.Reader
	Encoding string
	close    func()
}

// Close releases decoder resources (to pools: the Reader must not be used after). It does not
// close the source. A second Close does nothing.
func (r *Reader) Close() error {
	if r.close != nil {
		r.close()
		r.close = nil
	}
	return nil
}

var (
	bufPool  = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}
	gzipPool sync.Pool
)

// NewReader sniffs src and returns a reader of its decompressed bytes. Read errors caused by bad
// compressed data wrap ErrCorrupt; errors of src are passed through unchanged so that the caller
// can tell a broken connection from a broken file.
func NewReader(src io.Reader) (*Reader, error) {
	// The source is watched below the buffer, and the decoders get the *bufio.Reader itself:
	// klauspost's inflater has a fast path for it (no second buffer, no per-byte interface call).
	cs := &watchedSource{r: src}
	br := bufPool.Get().(*bufio.Reader) // pooled: a small object would otherwise pay for 64 KiB
	br.Reset(cs)
	freeBuf := func() { br.Reset(nil); bufPool.Put(br) }
	head, err := br.Peek(4)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		freeBuf()
		return nil, err
	}
	switch enc := Sniff(head); enc {
	case Gzip:
		zr, _ := gzipPool.Get().(*gzip.Reader) // pooled too: its inflater state is some 40 KiB
		if zr == nil {
			zr = new(gzip.Reader)
		}
		if err := zr.Reset(br); err != nil {
			gzipPool.Put(zr)
			freeBuf()
			return nil, cs.classify(fmt.Errorf("gzip header: %w", err))
		}
		zr.Multistream(true)
		return &Reader{Reader: &classifying{r: zr, src: cs}, Encoding: enc, close: func() {
			zr.Close()
			gzipPool.Put(zr)
			freeBuf()
		}}, nil
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, cs.classify(fmt.Errorf("zstd header: %w", err))
		}
		return &Reader{Reader: &classifying{r: zr, src: cs}, Encoding: enc, close: func() { zr.Close(); freeBuf() }}, nil
	case Bzip2:
		return &Reader{Reader: &classifying{r: bzip2.NewReader(br), src: cs}, Encoding: enc, close: freeBuf}, nil
	default:
		return &Reader{Reader: br, Encoding: Plain, close: freeBuf}, nil
	}
}

// watchedSource remembers the last error the underlying reader returned, so that a decoder error
// can be told apart from a transport error it merely passed on.
type watchedSource struct {
	r   io.Reader
	err error
}

func (c *watchedSource) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func (c *watchedSource) classify(err error) error {
	if c.err != nil {
		return c.err // the source failed: keep its error (retryable or not) as is
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
		return fmt.Errorf("%w: truncated: %v", ErrCorrupt, err)
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

type classifying struct {
	r   io.Reader
	src *watchedSource
}

func (c *classifying) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = c.src.classify(err)
	}
	return n, err
}
