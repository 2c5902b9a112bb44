package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/zstd"
	"github.com/palleto/palleto/internal/faultproxy"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store/dir"
)

// storedGzip is a gzip member of plain at level 0, whose compressed size is exactly size (plain
// is cut or padded with newlines to get it): members that end exactly on a range's edge.
func storedGzip(t *testing.T, r *rand.Rand, size int) []byte {
	t.Helper()
	n := size - 100
	for range 200 {
		plain := bytes.Repeat([]byte("x"), n)
		for i := 0; i < n; i += 1 + r.IntN(80) {
			plain[i] = '\n'
		}
		var b bytes.Buffer
		w, _ := gzip.NewWriterLevel(&b, gzip.NoCompression)
		w.Write(plain)
		w.Close()
		if b.Len() == size {
			return b.Bytes()
		}
		n += size - b.Len()
	}
	t.Fatalf("no stored gzip member of exactly %d bytes", size)
	return nil
}

// TestRangedReadsMatchOneStreamMinIO: objects of 0 and 1 byte, exactly one part, one part and
// a byte, a gzip whose members end on range edges, zstd, and 29 MiB of gzip (257 MiB of text),
// read through a fault proxy that cuts bodies, with --part-size 1MiB: every result (lines,
// bytes, sha256) equals the single-stream path's (--part-size 0).
func TestRangedReadsMatchOneStreamMinIO(t *testing.T) {
	t.Parallel() // long, and much of it waiting on other processes: it overlaps the other long tests
	env := testenv.Get(t)
	bucket := testenv.Name("ranges")
	plainBucket(t, env, bucket)
	r := rand.New(rand.NewPCG(31, 1))
	const part = 1 << 20
	edges := append(append(storedGzip(t, r, part), storedGzip(t, r, part)...), storedGzip(t, r, part/2)...) // members end at 1 MiB, 2 MiB
	var zb bytes.Buffer
	zw, _ := zstd.NewWriter(&zb)
	zplain, _ := gzipLines(r, 200000, 1)
	zw.Write(zplain)
	zw.Close()
	big, _ := gzipLines(r, 3_000_000, 3) // about 257 MiB decompressed
	objs := map[string][]byte{
		"empty":      {},
		"one-byte":   {'\n'},
		"one-part":   bytes.Repeat([]byte("line\n"), part/5+1)[:part],
		"one-part+1": bytes.Repeat([]byte("line\n"), part/5+1)[:part+1],
		"edges.gz":   edges,
		"data.zst":   zb.Bytes(),
		"big.log.gz": big,
	}
	for k, v := range objs {
		putObject(t, env.S3(), bucket, k, v)
	}
	t.Logf("big.log.gz: %d MiB of gzip", len(big)>>20)
	proxy, err := faultproxy.Start(faultproxy.Config{Target: strings.TrimPrefix(env.S3Endpoint, "http://"), MeanBytes: 24 << 20, Seed: 3,
		CutAt:     []int64{3 << 20, 11 << 20, 19 << 20}, // big.log.gz alone is more than 19 MiB: three cuts at least
		Bandwidth: 2e6})                                 // slower than the reader: ranges are read ahead, as on AWS
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	results := map[string]map[string]map[string]any{}
	for _, mode := range []string{"0", "1MiB"} {
		queueURL := testenv.NewQueue(t, env.SQS(), testenv.Name("ranges-q"), nil)
		for k, v := range objs {
			sendEvent(t, env.SQS(), queueURL, bucket, k, etagOf(t, env, bucket, k), len(v))
		}
		out := t.TempDir()
		s3 := env.S3Endpoint
		if mode != "0" {
			s3 = proxy.URL() // ranges through the cuts: each must resume within its range
		}
		code, trace, stderr := runPalleto(t, append(env.AWSEnv(), "AWS_ENDPOINT_URL_S3="+s3), 5*time.Minute, "run", "--queue-url", queueURL,
			"--out", out, "--part-size", mode, "--processor", "sha256", "--wait-time", "1s", "--exit-when-idle", "3s", "--trace")
		if code != 0 {
			t.Fatalf("--part-size %s: exit %d\n%s", mode, code, tail(stderr, 3000))
		}
		if n := strings.Count(trace, "read ahead)"); mode != "0" && n < 20 {
			t.Errorf("%d ranges read ahead with --part-size 1MiB: the big objects were not read in ranges", n)
		}
		results[mode] = map[string]map[string]any{}
		for k := range objs {
			results[mode][k] = readResult(t, out, bucket, k)
		}
	}
	t.Logf("proxy: %+v", proxy.Stats())
	for k, v := range objs {
		one, ranged := results["0"][k], results["1MiB"][k]
		for _, f := range []string{"lines", "bytes", "sha256", "encoding", "size"} {
			if fmt.Sprint(one[f]) != fmt.Sprint(ranged[f]) {
				t.Errorf("%s: %s is %v in one stream, %v in ranges", k, f, one[f], ranged[f])
			}
		}
		if k == "one-part" && ranged["sha256"] != hexSHA(v) {
			t.Errorf("%s: sha256 %v, want %s", k, ranged["sha256"], hexSHA(v))
		}
	}
	if proxy.Stats().Cuts == 0 {
		t.Error("no range was cut: the resume within a range was not exercised")
	}
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func etagOf(t *testing.T, env testenv.Env, bucket, key string) string {
	t.Helper()
	h, err := env.S3().HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Trim(aws.ToString(h.ETag), `"`)
}

// TestOverwrittenBetweenRangesMinIO: an object read in ranges is overwritten on MinIO after its
// first range was answered and before its second is asked for (a proxy holds the second request
// until the overwrite is done: the interleaving is forced, not timed). The object fails
// permanently as "overwritten since the event", no result mixes the two versions, and the
// message leaves the queue.
func TestOverwrittenBetweenRangesMinIO(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	bucket := testenv.Name("overwrite")
	plainBucket(t, env, bucket)
	const key = "moving.log"
	v1 := bytes.Repeat([]byte("version one\n"), 3<<20/12) // 3 MiB: three ranges of 1 MiB
	v2 := bytes.Repeat([]byte("version two, longer lines\n"), 3<<20/26)
	etag1 := putObject(t, env.S3(), bucket, key, v1)
	var overwrites atomic.Int32
	target, _ := url.Parse(env.S3Endpoint)
	rp := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rg := r.Header.Get("Range"); r.Method == http.MethodGet && strings.Contains(r.URL.Path, key) &&
			rg != "" && !strings.HasPrefix(rg, "bytes=0-") && overwrites.Add(1) == 1 {
			putObject(t, env.S3(), bucket, key, v2) // before the second range goes on to MinIO
		}
		rp.ServeHTTP(w, r)
	}))
	defer front.Close()
	queueURL := testenv.NewQueue(t, env.SQS(), testenv.Name("overwrite-q"), nil)
	sendEvent(t, env.SQS(), queueURL, bucket, key, etag1, len(v1))
	out := t.TempDir()
	code, trace, stderr := runPalleto(t, append(env.AWSEnv(), "AWS_ENDPOINT_URL_S3="+front.URL), 2*time.Minute, "run",
		"--queue-url", queueURL, "--out", out, "--part-size", "1MiB", "--wait-time", "1s", "--exit-when-idle", "2s", "--trace")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, tail(stderr, 3000))
	}
	if overwrites.Load() == 0 {
		t.Fatalf("no second range was asked for: the object was not read in ranges\n%s", tail(trace, 2000))
	}
	failed, err := os.ReadFile(filepath.Join(out, dir.FailedDir, dir.Path(bucket, key)))
	if err != nil || !strings.Contains(string(failed), "overwritten since the event") || !strings.Contains(string(failed), `"class": "permanent"`) {
		t.Errorf("failure record: %s %v", failed, err)
	}
	if res, err := os.ReadFile(filepath.Join(out, dir.Path(bucket, key))); err == nil {
		t.Errorf("a result was stored for an object that changed mid-read: %s", res)
	}
	if v, f := testenv.QueueCounts(t, env.SQS(), queueURL); v+f != 0 {
		t.Errorf("queue holds %d+%d messages after the run", v, f)
	}
}

// TestNextObjectOpenedEarlyMinIO: with one worker, three big gzip objects (20 MiB each, stored:
// big enough that the worker takes its next message near the end of each) and a small one, on
// MinIO. The trace shows the next object opened before its turn, and every result (lines,
// sha256 of the decompressed bytes) is the object's own.
func TestNextObjectOpenedEarlyMinIO(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	bucket := testenv.Name("early")
	plainBucket(t, env, bucket)
	r := rand.New(rand.NewPCG(7, 7))
	want := map[string][2]string{} // key: lines, sha256 of the decompressed bytes
	queueURL := testenv.NewQueue(t, env.SQS(), testenv.Name("early-q"), nil)
	for i, n := range []int{20 << 20, 20 << 20, 20 << 20, 1000} {
		plain := make([]byte, n)
		for j := range plain {
			plain[j] = 'a' + byte(r.IntN(26))
			if r.IntN(60) == 0 {
				plain[j] = '\n'
			}
		}
		plain[n-1] = '\n'
		var gz bytes.Buffer
		w, _ := gzip.NewWriterLevel(&gz, gzip.NoCompression)
		w.Write(plain)
		w.Close()
		key := fmt.Sprintf("big-%d.gz", i)
		etag := putObject(t, env.S3(), bucket, key, gz.Bytes())
		want[key] = [2]string{fmt.Sprint(bytes.Count(plain, []byte("\n"))), hexSHA(plain)}
		sendEvent(t, env.SQS(), queueURL, bucket, key, etag, gz.Len())
	}
	for _, proc := range []string{"lines", "sha256"} {
		if proc == "sha256" { // the same messages again, for the other processor
			for key := range want {
				sendEvent(t, env.SQS(), queueURL, bucket, key, etagOf(t, env, bucket, key), 0)
			}
		}
		out := t.TempDir()
		code, trace, stderr := runPalleto(t, env.AWSEnv(), 3*time.Minute, "run", "--queue-url", queueURL, "--out", out, "--workers", "1",
			"--processor", proc, "--wait-time", "1s", "--exit-when-idle", "2s", "--trace")
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, tail(stderr, 3000))
		}
		if n := strings.Count(trace, "early; opening s3://"); n < 2 {
			t.Errorf("--processor %s: %d objects opened early, want 2 at least (after each big one but the last)\n%s", proc, n, tail(trace, 3000))
		}
		for key, w := range want {
			res := readResult(t, out, bucket, key)
			got := fmt.Sprint(res["lines"])
			if proc == "sha256" {
				got = fmt.Sprint(res["sha256"])
			}
			if exp := map[string]string{"lines": w[0], "sha256": w[1]}[proc]; got != exp {
				t.Errorf("%s: %s is %s, want %s", key, proc, got, exp)
			}
		}
	}
}
