package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// liarS3 serves one object as S3 does (rangeS3), and lets lie change the n-th answer (from 0):
// a server, or a proxy, that answers something else than what was asked.
type liarS3 struct {
	*rangeS3
	mu  sync.Mutex
	n   int
	lie func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error)
}

func (l *liarS3) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	out, err := l.rangeS3.GetObject(ctx, in, opts...)
	l.mu.Lock() // one answer at a time: lie needs no lock of its own
	defer l.mu.Unlock()
	n := l.n
	l.n++
	if err != nil || l.lie == nil {
		return out, err
	}
	return l.lie(n, in, out)
}

// askedOf is the range a GET asks for: [start, end), end -1 for the object's end; whole when it
// asks for no range.
func askedOf(in *s3.GetObjectInput) (start, end int64, whole bool) {
	if in.Range == nil {
		return 0, -1, true
	}
	var a, b int64
	if k, _ := fmt.Sscanf(*in.Range, "bytes=%d-%d", &a, &b); k == 2 {
		return a, b + 1, false
	}
	fmt.Sscanf(*in.Range, "bytes=%d-", &a)
	return a, -1, false
}

// answer makes out the answer of bytes [start, end) of data, said to be of an object of total
// bytes: a range honestly labelled with other offsets than asked, when they differ.
func answer(out *s3.GetObjectOutput, data []byte, start, end, total int64) *s3.GetObjectOutput {
	end = min(end, int64(len(data)))
	out.ContentRange = aws.String(fmt.Sprintf("bytes %d-%d/%d", start, end-1, total))
	out.ContentLength = aws.Int64(end - start)
	out.Body = io.NopCloser(bytes.NewReader(data[start:end]))
	return out
}

// readAll opens the object and reads it all: the bytes handed out, and the error of Open or
// of the reads.
func readAll(f *Fetcher, r Request) ([]byte, error) {
	obj, err := f.Open(context.Background(), r)
	if err != nil {
		return nil, err
	}
	defer obj.Body.Close()
	return io.ReadAll(obj.Body)
}

// wantWorldsFailure fails unless err is a failure of the world (never the object's: not
// ErrPermanent) and got is a prefix of data (no byte handed out that is not the object's).
func wantWorldsFailure(t *testing.T, got, data []byte, err error) {
	t.Helper()
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPermanent) {
		t.Errorf("after %d bytes: err = %v, want a failure of the world (ErrUnavailable)", len(got), err)
	}
	if !bytes.HasPrefix(data, got) {
		t.Errorf("bytes that are not the object's were handed out (%d bytes read)", len(got))
	}
}

// lying returns a fetcher of the object data (eTag e1) through a server whose answers lie
// changes; with budget, ranges are read ahead (prefetch), else streamed (opened early).
func lying(data []byte, budget int64, lie func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error)) (*Fetcher, *liarS3) {
	api := &liarS3{rangeS3: &rangeS3{data: data, etag: "e1"}, lie: lie}
	f := ranged(api, budget)
	if budget == 0 {
		f.AheadWhenWaiting = DefaultAheadWhenWaiting
	}
	f.Resumes = 3
	return f, api
}

// TestRangeOfOtherOffsetsIsRetried: the case: a range answered for other offsets than
// asked (bytes 1047576-... for bytes=1048576-...), honestly labelled. Once, it is retried and the
// object's bytes are exact; every time, the read fails as the world's failure, and no byte of
// the wrong offsets is handed out. With ranges read ahead and streamed.
func TestRangeOfOtherOffsetsIsRetried(t *testing.T) {
	data := randomData(1 << 20)
	for _, budget := range []int64{0, 512 << 10} {
		for _, always := range []bool{false, true} {
			t.Run(fmt.Sprintf("budget %d, every time %v", budget, always), func(t *testing.T) {
				lied := 0
				f, _ := lying(data, budget, func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error) {
					start, end, _ := askedOf(in)
					if start == 0 || end < 0 || (lied > 0 && !always) {
						return out, nil
					}
					lied++
					return answer(out, data, start-1000, end-1000, int64(len(data))), nil
				})
				got, err := readAll(f, Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
				if lied == 0 {
					t.Fatal("no range was answered with other offsets")
				}
				if always {
					wantWorldsFailure(t, got, data, err)
				} else if err != nil || !bytes.Equal(got, data) {
					t.Errorf("read %d bytes (%v), want the %d bytes of the object", len(got), err, len(data))
				}
			})
		}
	}
}

// TestResumeOfOtherOffsetsIsRetried: a whole GET cut at byte 5000, resumed with a range answered
// from byte 4000: retried, and the object's bytes are exact.
func TestResumeOfOtherOffsetsIsRetried(t *testing.T) {
	data := randomData(100 << 10)
	api := &liarS3{rangeS3: &rangeS3{data: data, etag: "e1", cut: map[int]int{0: 5000}}}
	api.lie = func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error) {
		if start, _, whole := askedOf(in); n == 1 && !whole {
			return answer(out, data, start-1000, int64(len(data)), int64(len(data))), nil
		}
		return out, nil
	}
	f := New(api)
	f.ResumeBackoff = time.Millisecond
	got, err := readAll(f, Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the %d bytes of the object", len(got), err, len(data))
	}
	if api.n != 3 {
		t.Errorf("%d GETs, want 3: the whole, the resume from other offsets, its retry", api.n)
	}
}

// TestFirstAnswerWithHalfTheTotal: the first range says the object is half the size the event
// says: retried when it happens once; every time, the world's failure, never half the object.
func TestFirstAnswerWithHalfTheTotal(t *testing.T) {
	data := randomData(1 << 20)
	for _, always := range []bool{false, true} {
		t.Run(fmt.Sprint("every time ", always), func(t *testing.T) {
			f, _ := lying(data, 512<<10, func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error) {
				if start, end, _ := askedOf(in); start == 0 && (always || n == 0) {
					return answer(out, data, 0, end, int64(len(data)/2)), nil
				}
				return out, nil
			})
			got, err := readAll(f, Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
			if always {
				wantWorldsFailure(t, got, data, err)
			} else if err != nil || !bytes.Equal(got, data) {
				t.Errorf("read %d bytes (%v), want the %d bytes of the object", len(got), err, len(data))
			}
		})
	}
}

// TestServerIgnoringIfMatch: the object is overwritten after its first range, and the server
// ignores If-Match: it serves the new bytes with the new eTag. Never a mix of the two versions;
// the world's failure.
func TestServerIgnoringIfMatch(t *testing.T) {
	data, other := randomData(1<<20), bytes.Repeat([]byte("x"), 1<<20)
	for _, budget := range []int64{0, 512 << 10} {
		t.Run(fmt.Sprint("budget ", budget), func(t *testing.T) {
			f, _ := lying(data, budget, func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error) {
				if start, end, _ := askedOf(in); start > 0 {
					out.ETag = aws.String(`"e2"`)
					return answer(out, other, start, end, int64(len(other))), nil
				}
				return out, nil
			})
			got, err := readAll(f, Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
			wantWorldsFailure(t, got, data, err)
		})
	}
}

// TestWholeAnswerDisagreeingWithTheEvent: a whole GET whose Content-Length is half the event's
// size (its body as long), or whose eTag is not the event's: the world's failure, never a result.
func TestWholeAnswerDisagreeingWithTheEvent(t *testing.T) {
	data := randomData(10000)
	for name, lie := range map[string]func(out *s3.GetObjectOutput){
		"half the size": func(out *s3.GetObjectOutput) {
			out.ContentLength = aws.Int64(5000)
			out.Body = io.NopCloser(bytes.NewReader(data[:5000]))
		},
		"another eTag": func(out *s3.GetObjectOutput) { out.ETag = aws.String(`"e2"`) },
	} {
		t.Run(name, func(t *testing.T) {
			api := &liarS3{rangeS3: &rangeS3{data: data, etag: "e1"}}
			api.lie = func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error) {
				lie(out)
				return out, nil
			}
			f := New(api)
			f.Resumes, f.ResumeBackoff = 2, time.Millisecond
			got, err := readAll(f, Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
			wantWorldsFailure(t, got, data, err)
		})
	}
}

// TestBodyLongerThanItsRange: a range whose Content-Range is the one asked but whose body goes
// on past its end: the bytes past it are never handed out; retried, the object is exact.
func TestBodyLongerThanItsRange(t *testing.T) {
	data := randomData(1 << 20)
	lied := false
	f, _ := lying(data, 0, func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error) {
		if start, end, _ := askedOf(in); start > 0 && end > 0 && !lied {
			lied = true
			out.Body = io.NopCloser(bytes.NewReader(data[start:]))
		}
		return out, nil
	})
	got, err := readAll(f, Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
	if !lied || err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes (%v), want the %d bytes of the object", len(got), err, len(data))
	}
}

// TestVersionOtherThanPinned: an event naming a version, answered with another version's id:
// the world's failure.
func TestVersionOtherThanPinned(t *testing.T) {
	data := randomData(10000)
	api := &liarS3{rangeS3: &rangeS3{data: data, etag: "e1"}}
	api.lie = func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error) {
		out.VersionId = aws.String("v2")
		return out, nil
	}
	f := New(api)
	f.Resumes, f.ResumeBackoff = 1, time.Millisecond
	got, err := readAll(f, Request{Bucket: "b", Key: "k", VersionID: "v1", Size: int64(len(data))})
	wantWorldsFailure(t, got, data, err)
}

// TestRangeRefusedIsNoOutage: a 416 on a later range is the server's answer about this object:
// the object's failure (not the world's, which would stop every object), and not its permanent
// one either.
func TestRangeRefusedIsNoOutage(t *testing.T) {
	data := randomData(1 << 20)
	for _, budget := range []int64{0, 512 << 10} {
		t.Run(fmt.Sprint("budget ", budget), func(t *testing.T) {
			f, _ := lying(data, budget, func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error) {
				if start, _, _ := askedOf(in); start > 0 {
					return nil, codedRespErr(http.StatusRequestedRangeNotSatisfiable, "InvalidRange")
				}
				return out, nil
			})
			got, err := readAll(f, Request{Bucket: "b", Key: "k", ETag: "e1", Size: int64(len(data))})
			if err == nil || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrPermanent) || !bytes.HasPrefix(data, got) {
				t.Errorf("after %d bytes: err = %v, want the object's retryable failure", len(got), err)
			}
		})
	}
}

// TestEventWithoutSize: with no size in the event, an object is opened with a ranged GET of its
// first part, and read in ranges when it is larger (its total from the first Content-Range);
// smaller, answered whole (200) or with a 206 covering it all, or empty (416), it is one GET
// (two for the empty one).
func TestEventWithoutSize(t *testing.T) {
	for _, c := range []struct {
		name   string
		size   int
		whole  bool // the server answers the first GET whole (200), as one ignoring Range does
		ranges int  // ranged GETs told to OnRange
	}{
		{"empty", 0, false, 0},
		{"small", 1000, false, 1},
		{"small answered whole", 1000, true, 0},
		{"exactly one part", 64 << 10, false, 1},
		{"big", 1<<20 + 17, false, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			data := randomData(c.size)
			f, api := lying(data, 0, func(n int, in *s3.GetObjectInput, out *s3.GetObjectOutput) (*s3.GetObjectOutput, error) {
				if c.whole {
					out.ContentRange = nil
					out.ContentLength = aws.Int64(int64(len(data)))
					out.Body = io.NopCloser(bytes.NewReader(data))
				}
				return out, nil
			})
			var ranges []RangeInfo
			f.OnRange = func(ri RangeInfo) { ranges = append(ranges, ri) }
			got, err := readAll(f, Request{Bucket: "b", Key: "k", ETag: "e1"})
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes (%v), want the %d bytes of the object", len(got), err, len(data))
			}
			if first := api.ranges[0]; first != fmt.Sprintf("bytes=0-%d", f.PartSize-1) {
				t.Errorf("first GET asked for %q, want the first part", first)
			}
			if len(ranges) < c.ranges || (c.ranges <= 1 && len(ranges) != c.ranges) {
				t.Errorf("%d ranged GETs (%v), want %d", len(ranges), api.ranges, c.ranges)
			}
		})
	}
}

// TestEventsPinningAndSize: an event's eTag quoted as S3 sends it in headers pins as well; the
// size of an event that pins nothing is not held against the answers (the object may have
// changed since, and is read as it is now).
func TestEventsPinningAndSize(t *testing.T) {
	data := randomData(200 << 10)
	for name, r := range map[string]Request{
		"quoted eTag":             {Bucket: "b", Key: "k", ETag: `"e1"`, Size: int64(len(data))},
		"nothing pinned, resized": {Bucket: "b", Key: "k", Size: int64(len(data)) + 100},
	} {
		t.Run(name, func(t *testing.T) {
			f, _ := lying(data, 0, nil)
			got, err := readAll(f, r)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read %d bytes (%v), want the %d bytes of the object", len(got), err, len(data))
			}
		})
	}
}
