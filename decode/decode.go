// Package decode sniffs a stream's compression from its first bytes (never from a name) and
// returns a reader of the decompressed content. Gzip (every member of a multi-member file, and
// the zero padding some writers leave after the last) and zstd use klauspost/compress, faster
// than the standard library; bzip2 uses compress/bzip2. Memory does not follow the input: gzip
// and bzip2 need well under 1 MiB, and a zstd frame whose window is over Options.MaxWindow fails
// with ErrTooMuchMemory before anything is allocated for it.
package decode

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// ErrCorrupt is wrapped by errors that mean the compressed data is bad: retrying will not help.
var ErrCorrupt = errors.New("corrupt compressed data")

// ErrTooMuchMemory is wrapped by the error of compressed data that needs more memory to decode
// than allowed (a zstd frame with a window over Options.MaxWindow): retrying will not help.
var ErrTooMuchMemory = errors.New("compressed data needs more memory than allowed")

// DefaultMaxWindow is the largest zstd window decoded by default: 8 MiB, what the zstd format
// recommends every decoder to support, and what zstd writes up to level 19 without --long.
const DefaultMaxWindow = 8 << 20

// Options bound a decoder.
type Options struct {
	// MaxWindow is the largest zstd window (the decoder's history buffer) allowed; 0 means
	// DefaultMaxWindow.
	MaxWindow int64
}

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
	// A bzip2 stream goes on with a block (the digits of pi) or, when empty, its end (of
	// sqrt(pi)): text that merely starts with "BZh1" is not taken for bzip2.
	bzip2Block = []byte{0x31, 0x41, 0x59, 0x26, 0x53, 0x59}
	bzip2End   = []byte{0x17, 0x72, 0x45, 0x38, 0x50, 0x90}
)

// SniffLen is how many first bytes Sniff needs to tell every encoding apart.
const SniffLen = 10

// Sniff names the encoding of data that starts with head (its first SniffLen bytes, or all of
// it when shorter).
func Sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return Gzip
	case bytes.HasPrefix(head, zstdMagic):
		return Zstd
	case len(head) >= 10 && bytes.HasPrefix(head, bzip2Magic) && head[3] >= '1' && head[3] <= '9' &&
		(bytes.Equal(head[4:10], bzip2Block) || bytes.Equal(head[4:10], bzip2End)):
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

var bufPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 64<<10) }}

// NewReader is Open with the default Options.
func NewReader(src io.Reader) (*Reader, error) { return Open(src, Options{}) }

// Open sniffs src and returns a reader of its decompressed bytes. Read errors caused by bad
// compressed data wrap ErrCorrupt (or ErrTooMuchMemory); errors of src are passed through
// unchanged so that the caller can tell a broken connection from a broken file.
func Open(src io.Reader, opts Options) (*Reader, error) {
	if opts.MaxWindow <= 0 {
		opts.MaxWindow = DefaultMaxWindow
	}
	// The source is watched below the buffer, and the decoders get the *bufio.Reader itself:
	// klauspost's inflater has a fast path for it (no second buffer, no per-byte interface call).
	cs := &watchedSource{r: src}
	br := bufPool.Get().(*bufio.Reader) // pooled: a small object would otherwise pay for 64 KiB
	br.Reset(cs)
	freeBuf := func() { br.Reset(nil); bufPool.Put(br) }
	head, err := br.Peek(SniffLen)
	if err != nil && err != io.EOF && !errors.Is(err, bufio.ErrBufferFull) {
		freeBuf()
		return nil, err
	}
	switch enc := Sniff(head); enc {
	case Gzip:
		r, err := openGzip(br, cs)
		if err != nil {
			freeBuf()
			return nil, err
		}
		return &Reader{Reader: &classifying{r: r, src: cs}, Encoding: enc, close: func() { r.Close(); freeBuf() }}, nil
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(uint64(max(opts.MaxWindow, zstd.MinWindowSize))))
		if err != nil {
			return nil, cs.classify(fmt.Errorf("zstd header: %w", err))
		}
		return &Reader{Reader: &classifying{r: zr, src: cs, window: opts.MaxWindow}, Encoding: enc, close: func() { zr.Close(); freeBuf() }}, nil
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
	r      io.Reader
	src    *watchedSource
	window int64 // zstd's MaxWindow, for the message
}

func (c *classifying) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		if errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return n, fmt.Errorf("%w: a zstd frame asks for a window over the limit of %d bytes (--zstd-max-window; zstd --long writes such frames): %v", ErrTooMuchMemory, c.window, err)
		}
		err = c.src.classify(err)
	}
	return n, err
}
