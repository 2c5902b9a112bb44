package main

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/faultproxy"
	"github.com/palleto/palleto/internal/testenv"
)

// randomText is n bytes of random lines (a-z, a newline every 60 bytes on average, the last
// byte one).
func randomText(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		if v := r.Uint32(); v%60 == 0 {
			b[i] = '\n'
		} else {
			b[i] = 'a' + byte(v>>8%26)
		}
	}
	b[n-1] = '\n'
	return b
}

// TestWrongRangeIsNoResultMinIO is issue 24's first case end to end: a proxy in front of MinIO
// answers one range of a plain and of a gzip object for offsets 1,000 bytes before the ones
// asked (bytes 1047576-3144727 for bytes=1048576-3145727), honestly labelled. The daemon asks
// again, and stores the lines of each object exactly (not 3 lines more; the gzip one not failed
// as corrupt). A 40 MiB gzip object whose event gives no size (issue 25) is read in ranges from
// a first ranged GET of one part, and its lines are exact too.
func TestWrongRangeIsNoResultMinIO(t *testing.T) {
	t.Parallel()
	env := testenv.Get(t)
	bucket := testenv.Name("answers")
	plainBucket(t, env, bucket)
	r := rand.New(rand.NewPCG(24, 1))
	plain, gzPlain, bigPlain := randomText(r, 5<<20+12345), randomText(r, 9<<20), randomText(r, 40<<20)
	gz := func(b []byte, level int) []byte {
		var out bytes.Buffer
		w, _ := gzip.NewWriterLevel(&out, level)
		w.Write(b)
		w.Close()
		return out.Bytes()
	}
	objs := map[string][]byte{"plain.log": plain, "data.log.gz": gz(gzPlain, gzip.BestSpeed), "big.log.gz": gz(bigPlain, gzip.NoCompression)}
	want := map[string]int{"plain.log": bytes.Count(plain, []byte("\n")), "data.log.gz": bytes.Count(gzPlain, []byte("\n")),
		"big.log.gz": bytes.Count(bigPlain, []byte("\n"))}
	var mu sync.Mutex
	shifted := map[string]string{}
	proxy, err := faultproxy.Start(faultproxy.Config{Target: strings.TrimPrefix(env.S3Endpoint, "http://"),
		Exchange: func(req *http.Request, resp *http.Response) *http.Response {
			key := req.URL.Path[strings.LastIndex(req.URL.Path, "/")+1:]
			start, end, total, ok := faultproxy.ContentRange(resp)
			mu.Lock()
			defer mu.Unlock()
			if !ok || start == 0 || key == "big.log.gz" || shifted[key] != "" {
				return resp
			}
			shifted[key] = req.Header.Get("Range")
			faultproxy.SetContentRange(resp, start-1000, end-1000, total)
			faultproxy.Body(resp, objs[key][start-1000:end-1000+1])
			return resp
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	queueURL := testenv.NewQueue(t, env.SQS(), testenv.Name("answers-q"), nil)
	for k, v := range objs {
		etag := putObject(t, env.S3(), bucket, k, v)
		size := len(v)
		if k == "big.log.gz" {
			size = 0 // an event from a transport that does not give the size
		}
		sendEvent(t, env.SQS(), queueURL, bucket, k, etag, size)
	}
	out := t.TempDir()
	code, trace, stderr := runPalleto(t, append(env.AWSEnv(), "AWS_ENDPOINT_URL_S3="+proxy.URL()), 3*time.Minute, "run", "--queue-url", queueURL,
		"--out", out, "--part-size", "4MiB", "--processor", "lines", "--wait-time", "1s", "--exit-when-idle", "3s", "--trace")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, tail(stderr, 3000))
	}
	t.Logf("shifted: %v", shifted)
	if len(shifted) != 2 {
		t.Errorf("ranges answered with other offsets: %v, want one of plain.log and one of data.log.gz", shifted)
	}
	for k, n := range want {
		if got := fmt.Sprint(readResult(t, out, bucket, k)["lines"]); got != fmt.Sprint(n) {
			t.Errorf("%s: %s lines stored, want %d", k, got, n)
		}
	}
	if recs := failureRecords(out); len(recs) != 0 {
		t.Errorf("failure records: %v", recs)
	}
	bigRange := "s3://" + bucket + "/big.log.gz range "
	if !strings.Contains(trace, bigRange+"0-4194303 ") || strings.Count(trace, bigRange) < 5 {
		t.Errorf("big.log.gz (40 MiB, no size in its event) was not read in ranges from its first part:\n%s", tail(trace, 3000))
	}
	if v, f := testenv.QueueCounts(t, env.SQS(), queueURL); v+f != 0 {
		t.Errorf("queue holds %d+%d messages after the run", v, f)
	}
}
