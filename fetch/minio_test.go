package fetch_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto/decode"
	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/internal/faultproxy"
	"github.com/palleto/palleto/internal/testenv"
)

// Answers of MinIO changed on their way by a proxy (faultproxy's Exchange), as a broken server
// or middlebox would: each must be caught before a byte of it is handed out, retried, and after
// the retries be the world's failure, never a result and never the object's fault.

// proxied returns a client of MinIO through a proxy whose answers ex changes.
func proxied(t *testing.T, env testenv.Env, ex faultproxy.Exchange) *s3.Client {
	t.Helper()
	p, err := faultproxy.Start(faultproxy.Config{Target: strings.TrimPrefix(env.S3Endpoint, "http://"), Exchange: ex})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections) // before the proxy's Close, which waits for its connections
	cfg := aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, "")}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint, o.UsePathStyle = aws.String(p.URL()), true
		o.HTTPClient = &http.Client{Transport: tr}
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
}

// bucketWith creates a bucket holding objs, and returns it and the objects' eTags.
func bucketWith(t *testing.T, env testenv.Env, objs map[string][]byte) (string, map[string]string) {
	t.Helper()
	bucket := testenv.Name("fetch")
	c := env.S3()
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	etags := map[string]string{}
	for k, v := range objs {
		etags[k] = put(t, c, bucket, k, v)
	}
	return bucket, etags
}

func put(t *testing.T, c *s3.Client, bucket, key string, body []byte) string {
	t.Helper()
	out, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)})
	if err != nil {
		t.Fatalf("PutObject %s: %v", key, err)
	}
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

// text is n bytes of random lines (a-z, a newline every 60 bytes on average, the last byte one).
func text(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		if v := r.Uint32(); v%60 == 0 {
			b[i] = '\n'
		} else {
			b[i] = 'a' + byte(v>>8%26)
		}
	}
	if n > 0 {
		b[n-1] = '\n'
	}
	return b
}

func gzipped(t *testing.T, b []byte, level int) []byte {
	t.Helper()
	var out bytes.Buffer
	w, _ := gzip.NewWriterLevel(&out, level)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// fetcher reads objects of more than 1 MiB in ranges, as the daemon does; a bad answer is tried
// three more times.
func fetcher(c *s3.Client) *fetch.Fetcher {
	f := fetch.New(c)
	f.PartSize, f.PartsInFlight, f.ReadAhead = 1<<20, 4, fetch.NewReadAhead(8<<20)
	f.Resumes, f.ResumeBackoff = 3, 10*time.Millisecond
	return f
}

// lines opens the object, decodes it and counts its lines: what the lines processor stores.
func lines(f *fetch.Fetcher, r fetch.Request) (int, error) {
	obj, err := f.Open(context.Background(), r)
	if err != nil {
		return 0, err
	}
	defer obj.Body.Close()
	dr, err := decode.NewReader(obj.Body)
	if err != nil {
		return 0, err
	}
	defer dr.Close()
	n, buf := 0, make([]byte, 256<<10)
	for {
		k, err := dr.Read(buf)
		n += bytes.Count(buf[:k], []byte("\n"))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// wantWorlds fails unless err is the world's failure after bad answers: ErrUnavailable and
// ErrBadAnswer, never ErrPermanent nor decode.ErrCorrupt (the object's).
func wantWorlds(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, fetch.ErrUnavailable) || !errors.Is(err, fetch.ErrBadAnswer) || errors.Is(err, fetch.ErrPermanent) || errors.Is(err, decode.ErrCorrupt) {
		t.Errorf("err = %v, want the world's failure (fetch.ErrUnavailable, fetch.ErrBadAnswer)", err)
	}
}

// TestRangeOfOtherOffsetsMinIO: the case: ranges answered for offsets 1,000 bytes before
// the ones asked (bytes 1047576-3144727 for bytes=1048576-3145727), honestly labelled, for a
// plain and a gzip object. Once, the range is asked again and the line counts are exact; every
// time, the world's failure (the gzip one not charged to the object as corrupt).
func TestRangeOfOtherOffsetsMinIO(t *testing.T) {
	env := testenv.Get(t)
	plain := text(1, 5<<20+12345)
	objs := map[string][]byte{"plain.log": plain, "data.log.gz": gzipped(t, text(2, 9<<20), gzip.BestSpeed)}
	want := map[string]int{"plain.log": bytes.Count(plain, []byte("\n")), "data.log.gz": bytes.Count(text(2, 9<<20), []byte("\n"))}
	bucket, etags := bucketWith(t, env, objs)
	for _, always := range []bool{false, true} {
		for key, data := range objs {
			t.Run(fmt.Sprintf("%s every time %v", key, always), func(t *testing.T) {
				var mu sync.Mutex
				var shifted []string
				c := proxied(t, env, func(req *http.Request, resp *http.Response) *http.Response {
					start, end, total, ok := faultproxy.ContentRange(resp)
					mu.Lock()
					defer mu.Unlock()
					if !ok || start == 0 || (!always && len(shifted) > 0) {
						return resp
					}
					shifted = append(shifted, req.Header.Get("Range"))
					faultproxy.SetContentRange(resp, start-1000, end-1000, total)
					faultproxy.Body(resp, data[start-1000:end-1000+1])
					return resp
				})
				f := fetcher(c)
				f.PartSize = 4 << 20 // ranges of 1, 2 and 2 MiB: the second is the bytes=1048576-3145727
				n, err := lines(f, fetch.Request{Bucket: bucket, Key: key, ETag: etags[key], Size: int64(len(data))})
				if len(shifted) == 0 {
					t.Fatal("no range answered with other offsets: the object was not read in ranges")
				}
				t.Logf("shifted the answers to %v", shifted)
				if always {
					wantWorlds(t, err)
				} else if err != nil || n != want[key] {
					t.Errorf("%d lines (%v), want %d", n, err, want[key])
				}
			})
		}
	}
}

// TestFirstAnswerWithHalfTheTotalMinIO: the first range's Content-Range says the object is half
// its size (the event's): once, asked again and read whole; every time, the world's failure,
// never half the object as a result.
func TestFirstAnswerWithHalfTheTotalMinIO(t *testing.T) {
	env := testenv.Get(t)
	data := text(3, 3<<20)
	bucket, etags := bucketWith(t, env, map[string][]byte{"o.log": data})
	for _, always := range []bool{false, true} {
		t.Run(fmt.Sprint("every time ", always), func(t *testing.T) {
			var mu sync.Mutex
			halved := 0
			c := proxied(t, env, func(req *http.Request, resp *http.Response) *http.Response {
				start, end, total, ok := faultproxy.ContentRange(resp)
				mu.Lock()
				defer mu.Unlock()
				if ok && start == 0 && (always || halved == 0) {
					halved++
					faultproxy.SetContentRange(resp, start, end, total/2)
				}
				return resp
			})
			n, err := lines(fetcher(c), fetch.Request{Bucket: bucket, Key: "o.log", ETag: etags["o.log"], Size: int64(len(data))})
			if halved == 0 {
				t.Fatal("no first range was answered")
			}
			if always {
				wantWorlds(t, err)
			} else if want := bytes.Count(data, []byte("\n")); err != nil || n != want {
				t.Errorf("%d lines (%v), want %d", n, err, want)
			}
		})
	}
}

// TestServerIgnoringIfMatchMinIO: the object is overwritten on MinIO once its first range is
// answered, and the proxy answers each later range as a server ignoring If-Match would: the new
// version's bytes, with its eTag. The read fails as the world's failure, never a mix of the two
// versions, never the object's permanent failure.
func TestServerIgnoringIfMatchMinIO(t *testing.T) {
	env := testenv.Get(t)
	v1, v2 := text(4, 3<<20), bytes.Repeat([]byte("version two\n"), 3<<20/12)
	bucket, etags := bucketWith(t, env, map[string][]byte{"moving.log": v1})
	direct := env.S3()
	var mu sync.Mutex
	var etag2 string
	c := proxied(t, env, func(req *http.Request, resp *http.Response) *http.Response {
		mu.Lock()
		defer mu.Unlock()
		if start, _, _, ok := faultproxy.ContentRange(resp); ok && start == 0 && etag2 == "" {
			b, _ := io.ReadAll(resp.Body) // the first range whole, before its version is replaced
			faultproxy.Body(resp, b)
			etag2 = put(t, direct, bucket, "moving.log", v2)
			return resp
		}
		if resp.StatusCode != http.StatusPreconditionFailed {
			return resp
		}
		var a, b int64
		fmt.Sscanf(req.Header.Get("Range"), "bytes=%d-%d", &a, &b)
		return faultproxy.Partial(req, v2[a:min(b+1, int64(len(v2)))], a, int64(len(v2)), etag2)
	})
	obj, err := fetcher(c).Open(context.Background(), fetch.Request{Bucket: bucket, Key: "moving.log", ETag: etags["moving.log"], Size: int64(len(v1))})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj.Body)
	obj.Body.Close()
	if etag2 == "" {
		t.Fatal("the object was not overwritten")
	}
	wantWorlds(t, err)
	if !bytes.HasPrefix(v1, got) {
		t.Errorf("%d bytes handed out are not all the first version's", len(got))
	}
}

// TestWholeAnswerDisagreeingWithTheEventMinIO: one stream (--part-size 0), the answer's body
// and Content-Length half the event's size, or its eTag another: the world's failure.
func TestWholeAnswerDisagreeingWithTheEventMinIO(t *testing.T) {
	env := testenv.Get(t)
	data := text(5, 1<<20)
	bucket, etags := bucketWith(t, env, map[string][]byte{"o.log": data})
	for name, lie := range map[string]func(resp *http.Response){
		"half the size": func(resp *http.Response) { faultproxy.Body(resp, data[:len(data)/2]) },
		"another eTag":  func(resp *http.Response) { resp.Header.Set("ETag", `"0123456789abcdef0123456789abcdef"`) },
	} {
		t.Run(name, func(t *testing.T) {
			c := proxied(t, env, func(req *http.Request, resp *http.Response) *http.Response {
				if resp.StatusCode == http.StatusOK {
					lie(resp)
				}
				return resp
			})
			f := fetcher(c)
			f.PartSize = 0
			_, err := lines(f, fetch.Request{Bucket: bucket, Key: "o.log", ETag: etags["o.log"], Size: int64(len(data))})
			wantWorlds(t, err)
		})
	}
}

// TestRangeRefusedIsTheObjectsMinIO: a later range answered 416 (InvalidRange), as a server does
// for an object that became shorter: the object's failure, to be tried again and counted by the
// poison guard; not an outage of S3 (which would pause every object), not permanent.
func TestRangeRefusedIsTheObjectsMinIO(t *testing.T) {
	env := testenv.Get(t)
	data := text(6, 3<<20)
	bucket, etags := bucketWith(t, env, map[string][]byte{"o.log": data})
	c := proxied(t, env, func(req *http.Request, resp *http.Response) *http.Response {
		if start, _, total, ok := faultproxy.ContentRange(resp); ok && start > 0 {
			out := &http.Response{StatusCode: http.StatusRequestedRangeNotSatisfiable, ProtoMajor: 1, ProtoMinor: 1, Request: req,
				Header: http.Header{"Content-Type": {"application/xml"}, "Content-Range": {fmt.Sprintf("bytes */%d", total/2)}}}
			faultproxy.Body(out, []byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRange</Code><Message>The requested range is not satisfiable</Message></Error>`))
			return out
		}
		return resp
	})
	_, err := lines(fetcher(c), fetch.Request{Bucket: bucket, Key: "o.log", ETag: etags["o.log"], Size: int64(len(data))})
	if !errors.Is(err, fetch.ErrRangeRefused) || errors.Is(err, fetch.ErrUnavailable) || errors.Is(err, fetch.ErrPermanent) {
		t.Errorf("err = %v, want the object's retryable failure (fetch.ErrRangeRefused), not an outage", err)
	}
}

// TestEventWithoutSizeMinIO: events without the object's size (other transports). A 40 MiB gzip
// object is opened with a ranged GET of its first part (8 MiB, the daemon's default), learns its
// size from the answer and is read in ranges; a small object is one GET; an empty one (416 to
// its range) is a valid object of no lines. Every line count is exact.
func TestEventWithoutSizeMinIO(t *testing.T) {
	env := testenv.Get(t)
	big := text(7, 40<<20)
	small := text(8, 1000)
	objs := map[string][]byte{"big.log.gz": gzipped(t, big, gzip.NoCompression), "small.log": small, "empty.log": {}}
	want := map[string]int{"big.log.gz": bytes.Count(big, []byte("\n")), "small.log": bytes.Count(small, []byte("\n")), "empty.log": 0}
	bucket, etags := bucketWith(t, env, objs)
	for key := range objs {
		t.Run(key, func(t *testing.T) {
			var mu sync.Mutex
			var asked []string // the Range of each GET on the wire
			c := proxied(t, env, func(req *http.Request, resp *http.Response) *http.Response {
				mu.Lock()
				defer mu.Unlock()
				asked = append(asked, req.Header.Get("Range"))
				return resp
			})
			f := fetch.New(c)
			f.PartSize, f.PartsInFlight, f.ReadAhead = 8<<20, 8, fetch.NewReadAhead(64<<20)
			var ranges []fetch.RangeInfo
			f.OnRange = func(ri fetch.RangeInfo) { mu.Lock(); ranges = append(ranges, ri); mu.Unlock() }
			n, err := lines(f, fetch.Request{Bucket: bucket, Key: key, ETag: etags[key]})
			if err != nil || n != want[key] {
				t.Fatalf("%d lines (%v), want %d", n, err, want[key])
			}
			if len(asked) == 0 || asked[0] != "bytes=0-8388607" {
				t.Errorf("GETs asked for %q: want the first part first", asked)
			}
			switch key {
			case "big.log.gz":
				if len(ranges) < 5 || ranges[0].Start != 0 || ranges[0].End != 8<<20 || len(asked) != len(ranges) {
					t.Errorf("ranged GETs %+v (on the wire %q): want 5 at least, the first part first, and no GET of the whole", ranges, asked)
				}
			case "small.log":
				if len(asked) != 1 {
					t.Errorf("GETs %q, want one", asked)
				}
			}
		})
	}
}
