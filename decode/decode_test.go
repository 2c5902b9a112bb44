package decode

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

func gz(parts ...string) []byte {
	var b bytes.Buffer
	for _, p := range parts { // one gzip member per part: a multi-member file
		w := gzip.NewWriter(&b)
		w.Write([]byte(p))
		w.Close()
	}
	return b.Bytes()
}

func zst(s string) []byte {
	var b bytes.Buffer
	w, _ := zstd.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

// bzip2 of "hello\nworld\n", made with the bzip2 command (the standard library only reads it).
var bz = []byte{0x42, 0x5a, 0x68, 0x39, 0x31, 0x41, 0x59, 0x26, 0x53, 0x59, 0x6b, 0x5f, 0xb1, 0xdd, 0x00, 0x00, 0x02, 0x41, 0x80, 0x00, 0x10, 0x06, 0x44, 0x90, 0x80, 0x20, 0x00, 0x31, 0x0c, 0x08, 0x21, 0xa3, 0x69, 0x08, 0x07, 0x23, 0xae, 0x87, 0x8b, 0xb9, 0x22, 0x9c, 0x28, 0x48, 0x35, 0xaf, 0xd8, 0xee, 0x80}

func TestNewReaderDecodes(t *testing.T) {
	tests := []struct {
		name, enc, want string
		in              []byte
	}{
		{"plain", Plain, "a\nb\n", []byte("a\nb\n")},
		{"empty", Plain, "", nil},
		{"gzip", Gzip, "one\ntwo\n", gz("one\ntwo\n")},
		{"gzip multi-member", Gzip, "one\ntwo\nthree\n", gz("one\n", "two\n", "three\n")},
		{"zstd", Zstd, "z\nz\n", zst("z\nz\n")},
		{"bzip2", Bzip2, "hello\nworld\n", bz},
		{"BZh-looking plain text", Plain, "BZhello", []byte("BZhello")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if r.Encoding != tt.enc || string(got) != tt.want {
				t.Fatalf("got %s %q, want %s %q", r.Encoding, got, tt.enc, tt.want)
			}
		})
	}
}

func TestCorruptDataIsPermanent(t *testing.T) {
	good := gz(strings.Repeat("line of text\n", 1000))
	bad := bytes.Clone(good)
	for i := 20; i < 60; i++ {
		bad[i] ^= 0xff
	}
	for name, in := range map[string][]byte{
		"flipped bytes": bad,
		"truncated":     good[:len(good)/2],
		"bad header":    {0x1f, 0x8b, 0xff, 0xff, 0x00},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(in))
			if err == nil {
				_, err = io.Copy(io.Discard, r)
			}
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

type brokenReader struct{ r io.Reader }

var errReset = errors.New("connection reset by peer")

func (b *brokenReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		return n, errReset
	}
	return n, err
}

func TestTransportErrorIsNotCorrupt(t *testing.T) {
	good := gz(strings.Repeat("line of text\n", 10000))
	r, err := NewReader(&brokenReader{bytes.NewReader(good[:len(good)/2])})
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, r)
	if !errors.Is(err, errReset) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want the transport error, not ErrCorrupt", err)
	}
}

// TestInputsOtherToolsRead: what GNU gzip and Python read, Palleto reads.
func TestInputsOtherToolsRead(t *testing.T) {
	padded := append(gz("one\ntwo\n"), make([]byte, 100000)...) // a tape or block writer's zero padding
	between := append(append(gz("one\n"), make([]byte, 10)...), gz("two\n")...)
	for _, tt := range []struct {
		name, enc, want string
		in              []byte
	}{
		{"gzip with zero padding", Gzip, "one\ntwo\n", padded},
		{"gzip members with zeros between", Gzip, "one\ntwo\n", between},
		{"text starting BZh1", Plain, "BZh1 is a part number\n", []byte("BZh1 is a part number\n")},
		{"text starting BZh9 then 6 bytes", Plain, "BZh91AY&SX\n", []byte("BZh91AY&SX\n")},
		{"empty bzip2 stream", Bzip2, "", []byte{0x42, 0x5a, 0x68, 0x39, 0x17, 0x72, 0x45, 0x38, 0x50, 0x90, 0, 0, 0, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(bytes.NewReader(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			got, err := io.ReadAll(r)
			if err != nil || r.Encoding != tt.enc || string(got) != tt.want {
				t.Fatalf("got %s %q, %v; want %s %q", r.Encoding, got, err, tt.enc, tt.want)
			}
		})
	}
}

func TestGarbageAfterGzipIsCorrupt(t *testing.T) {
	in := append(gz("one\n"), []byte("trailing garbage")...)
	r, err := NewReader(bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrCorrupt", err)
	}
}

// zstdWindow is a frame of n zero bytes asking for a window of 2^windowLog (testenv.ZstdZeros;
// here, so that the decode package's tests need no test servers' package).
func zstdWindow(windowLog int, n int64) []byte {
	out := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte((windowLog - 10) << 3)}
	for left := n; left > 0; left -= 128 << 10 {
		h := uint32(128<<10)<<3 | 1<<1
		if left <= 128<<10 {
			h |= 1
		}
		out = append(out, byte(h), byte(h>>8), byte(h>>16), 0)
	}
	return out
}

// TestZstdWindowIsCapped: a frame asking for a 512 MiB window (zstd --long=29) fails with
// ErrTooMuchMemory instead of allocating it; a larger cap lets a moderate window through.
func TestZstdWindowIsCapped(t *testing.T) {
	bomb := zstdWindow(29, 2<<30) // 64 KB: `head -c 2G /dev/zero | zstd --long=29`
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	r, err := NewReader(bytes.NewReader(bomb))
	if err == nil {
		_, err = io.Copy(io.Discard, r)
		r.Close()
	}
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooMuchMemory) || errors.Is(err, ErrCorrupt) {
		t.Fatalf("err = %v, want ErrTooMuchMemory", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Fatalf("refusing the frame allocated %d MiB", grew>>20)
	}
	mid := zstdWindow(24, 20<<20)
	r, err = Open(bytes.NewReader(mid), Options{MaxWindow: 32 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if n, err := io.Copy(io.Discard, r); err != nil || n != 20<<20 {
		t.Fatalf("a 16 MiB window under a 32 MiB cap: %d bytes, %v", n, err)
	}
}
