package decode

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
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

// BenchmarkGzipSmall opens and reads one 1 KiB gzip object (about 5 KB of log lines, P2's
// objects) through Open, as Palleto does for each small object: the per-object cost of decode.
func BenchmarkGzipSmall(b *testing.B) {
	z := smallGzip()
	buf := make([]byte, 32<<10)
	b.ReportAllocs()
	for b.Loop() {
		r, err := Open(bytes.NewReader(z), Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{r}, buf); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

// BenchmarkGzipSmallLibrary is klauspost's gzip reader alone (reset, not made anew) over the same
// object: the limit BenchmarkGzipSmall is compared with.
func BenchmarkGzipSmallLibrary(b *testing.B) {
	z := smallGzip()
	buf := make([]byte, 32<<10)
	var zr gzip.Reader
	br := bytes.NewReader(z)
	b.ReportAllocs()
	for b.Loop() {
		br.Reset(z)
		if err := zr.Reset(br); err != nil {
			b.Fatal(err)
		}
		if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{&zr}, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// smallGzip is one of P2's objects (bench/scenarios.go logLines): 5,100 bytes of random JSON
// access-log lines, about 1 KiB of gzip.
func smallGzip() []byte {
	var plain bytes.Buffer
	r := rand.New(rand.NewPCG(2, 7))
	paths := []string{"/", "/api/v1/items", "/api/v1/items/42", "/static/app.js", "/login", "/healthz"}
	for i := 0; plain.Len() < 5100; i++ {
		fmt.Fprintf(&plain, `{"ts":%d,"ip":"10.%d.%d.%d","method":"GET","path":"%s","status":%d,"bytes":%d,"ms":%d}`+"\n",
			1469059200+i, r.IntN(256), r.IntN(256), r.IntN(256), paths[r.IntN(len(paths))], []int{200, 200, 200, 304, 404, 500}[r.IntN(6)], r.IntN(1e5), r.IntN(900))
	}
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	w.Write(plain.Bytes())
	w.Close()
	return z.Bytes()
}
