package decode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
)

// The decoder conformance tests: `make test` runs this package twice, with the Go inflater and
// with `-tags isal`; every fixture must give the same bytes and the same error class in both.

func TestInflaterIsNamed(t *testing.T) {
	t.Logf("inflater: %s", Inflater)
	if Inflater != "go" && Inflater != "isal" {
		t.Fatalf("Inflater = %q", Inflater)
	}
}

func decodeAll(in []byte) ([]byte, string, error) {
	r, err := NewReader(bytes.NewReader(in))
	if err != nil {
		return nil, "", err
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	return out, r.Encoding, err
}

func TestGzipChecksAndLengthsOfEveryMember(t *testing.T) {
	good := gz("first member\n", strings.Repeat("second member\n", 5000))
	badCRC := bytes.Clone(good)
	end := len(good)
	badCRC[end-8] ^= 0xff // the last member's CRC
	badLen := bytes.Clone(good)
	binary.LittleEndian.PutUint32(badLen[end-4:], binary.LittleEndian.Uint32(badLen[end-4:])+1)
	firstCRC := gz("first member\n")
	firstBad := append(bytes.Clone(firstCRC), gz("x\n")...)
	firstBad[len(firstCRC)-8] ^= 0xff // the first member's CRC
	for name, in := range map[string][]byte{"CRC of the last member": badCRC, "length of the last member": badLen, "CRC of the first member": firstBad} {
		t.Run(name, func(t *testing.T) {
			if _, _, err := decodeAll(in); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
	out, enc, err := decodeAll(good)
	if err != nil || enc != Gzip || string(out) != "first member\n"+strings.Repeat("second member\n", 5000) {
		t.Fatalf("the good stream: %s, %d bytes, %v", enc, len(out), err)
	}
}

// TestBigMultiMemberMatchesTheReference: many members of real-looking data give exactly what
// klauspost's multistream reader gives.
func TestBigMultiMemberMatchesTheReference(t *testing.T) {
	var parts []string
	for i := range 40 {
		parts = append(parts, strings.Repeat(`{"ts":1469059200,"path":"/api/v1/items","status":200}`+"\n", 500*(i+1)))
	}
	in := gz(parts...)
	want, err := func() ([]byte, error) {
		zr, err := kgzip.NewReader(bytes.NewReader(in))
		if err != nil {
			return nil, err
		}
		return io.ReadAll(zr)
	}()
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := decodeAll(in)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%d bytes (%v), want the reference's %d", len(got), err, len(want))
	}
}

// FuzzDecode: no input panics or hangs the decoder; when klauspost's reader decodes a gzip
// input, this build decodes it to the same bytes. `make test` runs it with both inflaters.
func FuzzDecode(f *testing.F) {
	f.Add(gz("a\nb\n"))
	f.Add(gz("one\n", "two\n"))
	f.Add(append(gz("pad\n"), 0, 0, 0))
	f.Add([]byte("plain text\n"))
	f.Add(zst("z\n"))
	f.Add(bz)
	f.Fuzz(func(t *testing.T, in []byte) {
		got, _, err := decodeAll(in)
		zr, rerr := kgzip.NewReader(bytes.NewReader(in))
		if rerr != nil {
			return
		}
		want, rerr := io.ReadAll(zr)
		if rerr == nil && (err != nil || !bytes.Equal(got, want)) {
			t.Fatalf("the reference decodes %d bytes; this build: %d bytes, %v", len(want), len(got), err)
		}
	})
}
