package decode

import (
	"bytes"
	"fmt"
	"io"
	"testing"

	"github.com/klauspost/compress/gzip"
)

// BenchmarkGzip decompresses 32 MiB of JSON lines: the decoder's throughput, in MB/s of output.
func BenchmarkGzip(b *testing.B) {
	benchInflate(b, func(r io.Reader) (io.Reader, error) { return NewReader(r) })
}

// BenchmarkGzipLibrary is klauspost's gzip reader alone over the same bytes: the limit that
// BenchmarkGzip is compared with.
func BenchmarkGzipLibrary(b *testing.B) {
	benchInflate(b, func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) })
}

// benchInflate reads benchGzip's bytes through the reader open makes, 256 KiB at a time.
func benchInflate(b *testing.B, open func(io.Reader) (io.Reader, error)) {
	z, n := benchGzip()
	b.SetBytes(n)
	buf := make([]byte, 256<<10)
	for b.Loop() {
		r, err := open(bytes.NewReader(z))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func benchGzip() ([]byte, int64) {
	var plain bytes.Buffer
	for i := 0; plain.Len() < 32<<20; i++ {
		fmt.Fprintf(&plain, `{"ts":%d,"path":"/api/v1/items/%d","status":%d,"bytes":%d}`+"\n", 1469059200+i, i%977, 200+i%3, i*7%100000)
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(plain.Bytes())
	w.Close()
	return z.Bytes(), int64(plain.Len())
}
