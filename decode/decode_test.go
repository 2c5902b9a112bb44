package decode

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
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
