//go:build !isal || !cgo

package decode

import (
	"bufio"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
)

// Inflater names the gzip inflater this build uses: "go" (klauspost/compress) or "isal"
// (Intel ISA-L through cgo, `go build -tags isal`).
const Inflater = "go"

var gzipPool sync.Pool // its inflater state is some 40 KiB: pooled, for small objects

// openGzip reads every member of the gzip stream in br with klauspost/compress.
func openGzip(br *bufio.Reader, cs *watchedSource) (io.ReadCloser, error) {
	zr, _ := gzipPool.Get().(*gzip.Reader)
	if zr == nil {
		zr = new(gzip.Reader)
	}
	if err := zr.Reset(br); err != nil {
		gzipPool.Put(zr)
		return nil, cs.classify(fmt.Errorf("gzip header: %w", err))
	}
	zr.Multistream(false) // members are followed here, to allow zero padding after the last
	return &gzipMembers{zr: zr, br: br}, nil
}

// gzipMembers reads every member of a gzip file, one after the other, and ends at the end of
// the input or at zero bytes that run to it (padding left by tape and block writers, which GNU
// gzip and Python also accept). Anything else after a member must be another member.
type gzipMembers struct {
	zr   *gzip.Reader
	br   *bufio.Reader
	done bool
}

func (g *gzipMembers) Close() error {
	g.zr.Close()
	gzipPool.Put(g.zr)
	return nil
}

func (g *gzipMembers) Read(p []byte) (int, error) {
	for !g.done {
		n, err := g.zr.Read(p)
		if err != io.EOF {
			return n, err
		}
		more, err := g.next()
		if err != nil {
			return n, err
		}
		g.done = !more
		if n > 0 {
			return n, nil
		}
	}
	return 0, io.EOF
}

// next skips zero padding and opens the next member; false at the end of the input.
func (g *gzipMembers) next() (bool, error) {
	if more, err := skipZeros(g.br); !more || err != nil {
		return false, err
	}
	if err := g.zr.Reset(g.br); err != nil {
		return false, fmt.Errorf("after a gzip member, data that is neither another member nor zero padding: %w", err)
	}
	g.zr.Multistream(false)
	return true, nil
}
