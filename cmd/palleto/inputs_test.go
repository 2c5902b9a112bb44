package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/klauspost/compress/zstd"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store/dir"
)

// bzip2 of "hello\nworld\n", made with the bzip2 command (Go has no bzip2 writer).
var bzHello = []byte{0x42, 0x5a, 0x68, 0x39, 0x31, 0x41, 0x59, 0x26, 0x53, 0x59, 0x6b, 0x5f, 0xb1, 0xdd, 0x00, 0x00, 0x02, 0x41, 0x80, 0x00, 0x10, 0x06, 0x44, 0x90, 0x80, 0x20, 0x00, 0x31, 0x0c, 0x08, 0x21, 0xa3, 0x69, 0x08, 0x07, 0x23, 0xae, 0x87, 0x8b, 0xb9, 0x22, 0x9c, 0x28, 0x48, 0x35, 0xaf, 0xd8, 0xee, 0x80}

// inputObject is an object of the inputs test: what is stored, and the plain text it holds.
type inputObject struct {
	key, encoding string
	stored, plain []byte
}

func formatObjects(t *testing.T) []inputObject {
	logs := func(n int, tag string) []byte {
		var b bytes.Buffer
		for i := 0; i < n; i++ {
			level := "info"
			if i%7 == 0 {
				level = "error"
			}
			fmt.Fprintf(&b, `{"i":%d,"level":"%s","src":"%s"}`+"\n", i, level, tag)
		}
		return b.Bytes()
	}
	gzPlain := logs(3000, "gzip")
	var gz bytes.Buffer
	for _, part := range [][]byte{gzPlain[:len(gzPlain)/2], gzPlain[len(gzPlain)/2:]} { // two members
		w := gzip.NewWriter(&gz)
		w.Write(part)
		w.Close()
	}
	zsPlain := logs(2000, "zstd")
	enc, _ := zstd.NewWriter(nil)
	zs := enc.EncodeAll(zsPlain, nil)
	txt := logs(1000, "plain")
	return []inputObject{
		{"formats/app.log.gz", "gzip", gz.Bytes(), gzPlain},
		{"formats/app.log.zst", "zstd", zs, zsPlain},
		{"formats/hello.bz2", "bzip2", bzHello, []byte("hello\nworld\n")},
		{"formats/app.log", "plain", txt, txt},
		{"formats/misnamed.gz", "plain", txt[:bytes.IndexByte(txt[200:], '\n')+201], txt[:bytes.IndexByte(txt[200:], '\n')+201]}, // sniffed from the bytes, not the name
	}
}

func putObject(t *testing.T, s3c *s3.Client, bucket, key string, body []byte) string {
	t.Helper()
	out, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(body)})
	if err != nil {
		t.Fatalf("PutObject %q: %v", key, err)
	}
	return strings.Trim(aws.ToString(out.ETag), `"`)
}

func sendEvent(t *testing.T, sqsc *sqs.Client, queueURL, bucket, key, etag string, size int) {
	t.Helper()
	body := devstack.EventBody("ObjectCreated:Put", bucket, key, "", etag, int64(size))
	if _, err := sqsc.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: &queueURL, MessageBody: &body}); err != nil {
		t.Fatal(err)
	}
}

func readResult(t *testing.T, out, bucket, key string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(out, dir.Path(bucket, key)))
	if err != nil {
		t.Fatalf("no result for %q: %v", key, err)
	}
	var res map[string]any
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatalf("result of %q: %v", key, err)
	}
	return res
}

// TestFormatsAndProcessorsMinIO uploads one object of each compression format to MinIO (whose
// own notifications start the first run), then runs every processor over the same objects.
func TestFormatsAndProcessorsMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("formats")
	queueURL := env.NotifiedBucket(t, bucket)
	s3c, sqsc := env.S3(), env.SQS()
	objs := formatObjects(t)
	etags := map[string]string{}
	for _, o := range objs {
		etags[o.key] = putObject(t, s3c, bucket, o.key, o.stored)
	}
	testenv.WaitForMessages(t, sqsc, queueURL, len(objs), time.Minute)

	type check func(t *testing.T, out string, o inputObject, res map[string]any)
	lines := func(p []byte) float64 { return float64(bytes.Count(p, []byte{'\n'})) }
	for _, tt := range []struct {
		processor string
		args      []string
		check     check
	}{
		{"lines", nil, func(t *testing.T, _ string, o inputObject, res map[string]any) {}},
		{"sha256", nil, func(t *testing.T, _ string, o inputObject, res map[string]any) {
			sum := sha256.Sum256(o.plain)
			if res["sha256"] != hex.EncodeToString(sum[:]) {
				t.Errorf("%s: sha256 %v", o.key, res["sha256"])
			}
		}},
		{"grep", []string{"--grep", `"level":"error"`}, func(t *testing.T, _ string, o inputObject, res map[string]any) {
			if want := strings.Count(string(o.plain), `"level":"error"`); res["matches"] != float64(want) {
				t.Errorf("%s: %v matches, want %d", o.key, res["matches"], want)
			}
		}},
		{"copy", nil, func(t *testing.T, out string, o inputObject, res map[string]any) {
			got, err := os.ReadFile(filepath.Join(out, dir.CopyPath(bucket, o.key)))
			if err != nil || !bytes.Equal(got, o.plain) || res["copy"] != dir.CopyPath(bucket, o.key) {
				t.Errorf("%s: copy %v holds %d bytes (%v), want %d", o.key, res["copy"], len(got), err, len(o.plain))
			}
		}},
		{"exec", []string{"--exec", `printf '{"wc": %d, "key": "%s"}' $(wc -l) "$PALLETO_KEY"`}, func(t *testing.T, _ string, o inputObject, res map[string]any) {
			want := map[string]any{"wc": lines(o.plain), "key": o.key}
			if got, _ := res["output"].(map[string]any); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: output %v, want %v", o.key, res["output"], want)
			}
		}},
	} {
		t.Run(tt.processor, func(t *testing.T) {
			q := queueURL // the first run eats MinIO's own notifications; the others get the same events again
			if tt.processor != "lines" {
				q = testenv.NewQueue(t, sqsc, testenv.Name("formats-"+tt.processor), nil)
				for _, o := range objs {
					sendEvent(t, sqsc, q, bucket, o.key, etags[o.key], len(o.stored))
				}
			}
			out := t.TempDir()
			args := append([]string{"run", "--queue-url", q, "--out", out, "--exit-when-idle", "1s", "--wait-time", "1s", "--processor", tt.processor}, tt.args...)
			code, stdout, stderr := runPalleto(t, env.AWSEnv(), 2*time.Minute, args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s", code, tail(stderr, 3000))
			}
			for _, o := range objs {
				if _, err := os.Stat(filepath.Join(out, dir.Path(bucket, o.key))); err != nil {
					t.Fatalf("no result for %s\n%s\n%s", o.key, tail(stderr, 4000), tail(stdout, 4000))
				}
				res := readResult(t, out, bucket, o.key)
				if res["encoding"] != o.encoding || res["bytes"] != float64(len(o.plain)) || res["size"] != float64(len(o.stored)) ||
					res["lines"] != lines(o.plain) || res["processor"] != tt.processor || res["etag"] != etags[o.key] {
					t.Errorf("%s: result %v; want %s, %d bytes from %d, %v lines", o.key, res, o.encoding, len(o.plain), len(o.stored), lines(o.plain))
				}
				tt.check(t, out, o, res)
			}
			if v, f := testenv.QueueCounts(t, sqsc, q); v+f != 0 {
				t.Errorf("queue holds %d+%d messages after the run", v, f)
			}
		})
	}
}

// TestHostileKeysAndOverwrittenObjectMinIO: keys MinIO stores are processed; keys it refuses
// arrive as forged notifications and end as NoSuchKey records. Nothing lands outside --out. An
// object overwritten since its event is reported, not read as the new version.
func TestHostileKeysAndOverwrittenObjectMinIO(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	bucket := testenv.Name("hostile")
	s3c, sqsc := env.S3(), env.SQS()
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	queueURL := testenv.NewQueue(t, sqsc, bucket, nil)
	keys := []string{
		"../../etc/passwd", "/abs/path", "a\\b", "dot/./x", "x/../../../y", "nul\x00byte", "%2e%2e/%2F",
		"_failed/x", strings.Repeat("k", 1024), strings.Repeat("c", 300) + "/x", "bad\xffutf8", "ünï/日本語 +%.gz",
		"trailing/", "two//slashes", ".json/x.json",
	}
	stored := map[string]bool{}
	for _, key := range keys {
		body := []byte("line one\nline two\n")
		out, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(key), Body: bytes.NewReader(body)})
		etag := ""
		if err == nil {
			stored[key] = true
			etag = strings.Trim(aws.ToString(out.ETag), `"`)
		}
		sendEvent(t, sqsc, queueURL, bucket, key, etag, len(body))
	}
	t.Logf("MinIO stored %d of %d hostile keys", len(stored), len(keys))
	// Overwritten: the event names version 1, the object now holds version 2.
	etag1 := putObject(t, s3c, bucket, "overwritten.log", []byte("version 1\n"))
	putObject(t, s3c, bucket, "overwritten.log", []byte("version 2\nhas two lines\n"))
	sendEvent(t, sqsc, queueURL, bucket, "overwritten.log", etag1, 10)

	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	code, _, stderr := runPalleto(t, env.AWSEnv(), 2*time.Minute, "run", "--queue-url", queueURL, "--out", out,
		"--exit-when-idle", "1s", "--wait-time", "1s")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, tail(stderr, 3000))
	}
	for _, key := range keys {
		if stored[key] {
			if res := readResult(t, out, bucket, key); res["key"] != key || res["lines"] != 2.0 {
				t.Errorf("result of %q: %v", key, res)
			}
			continue
		}
		data, err := os.ReadFile(filepath.Join(out, dir.FailedDir, dir.Path(bucket, key)))
		if err != nil || !strings.Contains(string(data), `"class": "permanent"`) {
			t.Errorf("key %q that MinIO refused: record %s %v", key, data, err)
		}
	}
	failed, err := os.ReadFile(filepath.Join(out, dir.FailedDir, dir.Path(bucket, "overwritten.log")))
	if err != nil || !strings.Contains(string(failed), "overwritten since the event") {
		t.Errorf("overwritten object: record %s %v", failed, err)
	}
	if _, err := os.Stat(filepath.Join(out, dir.Path(bucket, "overwritten.log"))); err == nil {
		t.Error("the overwritten object was read as its new version")
	}
	// Nothing outside --out: the parent holds only it.
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Errorf("files written next to --out: %v", entries)
	}
	if v, f := testenv.QueueCounts(t, sqsc, queueURL); v+f != 0 {
		t.Errorf("queue holds %d+%d messages after the run", v, f)
	}
}

var plainBin = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(filepath.Dir(palletoBin), "palleto-norace")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// runForPeakRSS runs the binary to its end and returns the peak RSS its summary gives, in MiB:
// the process's own VmHWM (rusage would count the test process, whose memory the child shares
// until exec).
func runForPeakRSS(t *testing.T, env testenv.Env, bin string, args ...string) float64 {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env.AWSEnv()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("palleto %v: %v\n%s", args, err, tail(stderr.String(), 3000))
	}
	_, after, ok := strings.Cut(stderr.String(), "peak RSS ")
	var rss float64
	if !ok {
		t.Fatalf("no peak RSS in the summary:\n%s", tail(stderr.String(), 2000))
	}
	fmt.Sscan(after, &rss)
	return rss
}

// TestBombStoppedWithFlatMemoryMinIO: 10 GiB of zeros in 9.8 MB of gzip (160 members of 64 MiB
// each) is stopped by --max-decompressed-bytes and recorded; the process's peak RSS (a build
// without -race, which multiplies memory) stays under 100 MiB.
func TestBombStoppedWithFlatMemoryMinIO(t *testing.T) {
	env := testenv.Get(t)
	bin, err := plainBin()
	if err != nil {
		t.Fatal(err)
	}
	bucket := testenv.Name("bomb")
	queueURL := env.NotifiedBucket(t, bucket)
	var member bytes.Buffer
	w, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	w.Write(make([]byte, 64<<20))
	w.Close()
	bomb := bytes.Repeat(member.Bytes(), 160) // 10 GiB decompressed
	putObject(t, env.S3(), bucket, "bomb.gz", bomb)
	testenv.WaitForMessages(t, env.SQS(), queueURL, 1, time.Minute)

	out := t.TempDir()
	rss := runForPeakRSS(t, env, bin, "run", "--queue-url", queueURL, "--out", out, "--exit-when-idle", "1s", "--wait-time", "1s",
		"--max-decompressed-bytes", fmt.Sprint(1<<30))
	t.Logf("bomb of %d bytes (10 GiB decompressed) stopped at 1 GiB; peak RSS %.1f MiB", len(bomb), rss)
	if rss <= 0 || rss > 100 {
		t.Errorf("peak RSS %.1f MiB, want (0, 100]", rss)
	}
	data, err := os.ReadFile(filepath.Join(out, dir.FailedDir, dir.Path(bucket, "bomb.gz")))
	if err != nil || !strings.Contains(string(data), `"class": "permanent"`) || !strings.Contains(string(data), "max-decompressed-bytes") {
		t.Errorf("bomb record: %s %v", data, err)
	}
}
