package palleto_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/palleto/palleto"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/process"
	"github.com/palleto/palleto/store/dir"
)

// stack starts the embedded S3 + SQS and returns clients for them.
func stack(t *testing.T) (*devstack.Stack, *s3.Client, *awssqs.Client) {
	t.Helper()
	cfg := devstack.DefaultConfig()
	cfg.DLQ = ""
	st, err := devstack.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	env := testenv.Env{S3Endpoint: st.S3Endpoint, SQSEndpoint: st.SQSEndpoint, AccessKey: "devstack", SecretKey: "devstack"}
	return st, env.S3(), env.SQS()
}

func config(st *devstack.Stack, out string) palleto.Config {
	cfg := palleto.DefaultConfig()
	cfg.SQS.QueueURL = st.QueueURL
	cfg.SQS.WaitTime = time.Second
	cfg.OutDir = out
	cfg.Engine.Workers = 4
	cfg.Engine.ExitWhenIdle = 1500 * time.Millisecond
	cfg.RetryBackoff = time.Second
	return cfg
}

func run(t *testing.T, cfg palleto.Config, s3c *s3.Client, sqsc *awssqs.Client, p process.Processor) (palleto.Summary, string) {
	t.Helper()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))
	d, err := palleto.New(cfg, palleto.Deps{SQS: sqsc, S3: s3c, Processor: p, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := d.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return s, logs.String()
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func put(t *testing.T, c *s3.Client, bucket, key, body string) {
	t.Helper()
	if _, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

func readJSON(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestHostileKeysStayInsideTheOutputDirectory(t *testing.T) {
	st, s3c, sqsc := stack(t)
	parent := t.TempDir()
	out := filepath.Join(parent, "out")
	keys := []string{"../../etc/passwd", "/abs/path", "a/../../b", "dot/./x", strings.Repeat("long", 250), "back\\slash", "x.json/y"}
	for _, k := range keys {
		put(t, s3c, st.Bucket, k, "one\ntwo\n")
	}
	s, logs := run(t, config(st, out), s3c, sqsc, nil)
	if s.Objects != int64(len(keys)) {
		t.Fatalf("%d objects processed, want %d\n%s", s.Objects, len(keys), logs)
	}
	for _, k := range keys {
		if res := readJSON(t, filepath.Join(out, dir.Path(st.Bucket, k))); res["key"] != k || res["lines"] != 2.0 {
			t.Errorf("result of %q: %v", k, res)
		}
	}
	entries, _ := os.ReadDir(parent)
	if len(entries) != 1 {
		t.Fatalf("something was written beside the output directory: %v", entries)
	}
}

func TestMissingObjectIsRecordedAndDeleted(t *testing.T) {
	st, s3c, sqsc := stack(t)
	out := t.TempDir()
	// A notification for an object that does not exist (deleted since the event).
	body := `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":"gone.gz","size":10,"eTag":"abc"}}}]}`
	if _, err := sqsc.SendMessage(context.Background(), &awssqs.SendMessageInput{QueueUrl: &st.QueueURL, MessageBody: &body}); err != nil {
		t.Fatal(err)
	}
	put(t, s3c, st.Bucket, "ok.txt", "fine\n")
	s, logs := run(t, config(st, out), s3c, sqsc, nil)
	if s.Objects != 1 || s.Failed != 1 || s.Deleted != 2 {
		t.Fatalf("summary %+v\n%s", s, logs)
	}
	rec := readJSON(t, filepath.Join(out, dir.FailedDir, dir.Path("uploads", "gone.gz")))
	if rec["class"] != "permanent" || !strings.Contains(rec["error"].(string), "NoSuchKey") || rec["action"] != "deleted" {
		t.Fatalf("failure record %v", rec)
	}
	if !strings.Contains(logs, "object failed") || !strings.Contains(logs, "gone.gz") {
		t.Fatalf("log does not say what happened:\n%s", logs)
	}
}

// flaky fails each object the first time it sees it, then counts its lines.
type flaky struct {
	mu   sync.Mutex
	seen map[string]int
}

func (f *flaky) Name() string { return "flaky" }
func (f *flaky) Process(ctx context.Context, o process.Object, r io.Reader) (process.Fields, error) {
	f.mu.Lock()
	f.seen[o.Key]++
	n := f.seen[o.Key]
	f.mu.Unlock()
	if n == 1 {
		return nil, errors.New("disk on fire (retryable)")
	}
	return process.Lines{}.Process(ctx, o, r)
}

func TestRetryableFailureComesBackAndSucceeds(t *testing.T) {
	st, s3c, sqsc := stack(t)
	out := t.TempDir()
	put(t, s3c, st.Bucket, "a.txt", "1\n2\n3\n")
	cfg := config(st, out)
	cfg.Engine.ExitWhenIdle = 3 * time.Second // longer than the 1s retry backoff
	p := &flaky{seen: map[string]int{}}
	s, logs := run(t, cfg, s3c, sqsc, p)
	if s.Objects != 1 || p.seen["a.txt"] != 2 {
		t.Fatalf("summary %+v, attempts %d\n%s", s, p.seen["a.txt"], logs)
	}
	if res := readJSON(t, filepath.Join(out, dir.Path("uploads", "a.txt"))); res["lines"] != 3.0 || res["receive_count"] != 2.0 {
		t.Fatalf("result %v", res)
	}
	if _, err := os.Stat(filepath.Join(out, dir.FailedDir, dir.Path("uploads", "a.txt"))); !os.IsNotExist(err) {
		t.Fatalf("the failure record of the first attempt is still there after success: %v", err)
	}
}

type panicky struct{ calls atomic.Int64 }

func (p *panicky) Name() string { return "panicky" }
func (p *panicky) Process(context.Context, process.Object, io.Reader) (process.Fields, error) {
	p.calls.Add(1)
	panic("processor bug")
}

func TestPanickingProcessorIsRetriedThenPoisonGuarded(t *testing.T) {
	st, s3c, sqsc := stack(t)
	out := t.TempDir()
	put(t, s3c, st.Bucket, "bad.txt", "x\n")
	cfg := config(st, out)
	cfg.MaxReceives = 2
	cfg.Engine.ExitWhenIdle = 3 * time.Second
	p := &panicky{}
	s, logs := run(t, cfg, s3c, sqsc, p)
	if p.calls.Load() != 2 || s.Deleted != 1 {
		t.Fatalf("%d attempts, summary %+v\n%s", p.calls.Load(), s, logs)
	}
	recs, _ := filepath.Glob(filepath.Join(out, dir.FailedDir, "_messages", "*.json"))
	if len(recs) != 1 {
		t.Fatalf("failure records %v", recs)
	}
	rec := readJSON(t, recs[0])
	if rec["class"] != "permanent" || rec["attempts"] != 2.0 || !strings.Contains(rec["error"].(string), "failed 2 times") || !strings.Contains(rec["error"].(string), "panicked") {
		t.Fatalf("failure record %v", rec)
	}
	if !strings.Contains(logs, "processor bug") || !strings.Contains(logs, "goroutine") {
		t.Fatalf("the panic and its stack are not logged:\n%s", logs)
	}
}

func TestRedeliveredObjectIsNotProcessedAgain(t *testing.T) {
	st, s3c, sqsc := stack(t)
	out := t.TempDir()
	put(t, s3c, st.Bucket, "once.txt", "a\nb\n")
	var calls atomic.Int64
	counting := processorFunc(func(ctx context.Context, o process.Object, r io.Reader) (process.Fields, error) {
		calls.Add(1)
		return process.Lines{}.Process(ctx, o, r)
	})
	run(t, config(st, out), s3c, sqsc, counting)
	// The same notification again, as SQS may deliver it twice.
	head, err := s3c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &st.Bucket, Key: aws.String("once.txt")})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"uploads"},"object":{"key":"once.txt","size":4,"eTag":` + `"` + strings.Trim(aws.ToString(head.ETag), `"`) + `"}}}]}`
	sqsc.SendMessage(context.Background(), &awssqs.SendMessageInput{QueueUrl: &st.QueueURL, MessageBody: &body})
	s, logs := run(t, config(st, out), s3c, sqsc, counting)
	if calls.Load() != 1 || s.AlreadyDone != 1 || s.Deleted != 1 {
		t.Fatalf("processed %d times; second run %+v\n%s", calls.Load(), s, logs)
	}
}

type processorFunc func(context.Context, process.Object, io.Reader) (process.Fields, error)

func (f processorFunc) Name() string { return "func" }
func (f processorFunc) Process(ctx context.Context, o process.Object, r io.Reader) (process.Fields, error) {
	return f(ctx, o, r)
}

func TestShutdownFinishesInFlightAndHandsBackTheRest(t *testing.T) {
	st, s3c, sqsc := stack(t)
	out := t.TempDir()
	for i := 0; i < 30; i++ {
		put(t, s3c, st.Bucket, "k"+strings.Repeat("x", i), "line\n")
	}
	started := make(chan struct{}, 100)
	slow := processorFunc(func(ctx context.Context, o process.Object, r io.Reader) (process.Fields, error) {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		return process.Lines{}.Process(ctx, o, r)
	})
	cfg := config(st, out)
	cfg.Engine.ExitWhenIdle = 0
	cfg.Engine.Workers = 2
	d, err := palleto.New(cfg, palleto.Deps{SQS: sqsc, S3: s3c, Processor: slow, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; <-started; cancel() }()
	s, err := d.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Objects < 2 || s.Deleted != s.Objects {
		t.Fatalf("in-flight objects not finished and deleted: %+v", s)
	}
	visible, inFlight := testenv.QueueCounts(t, sqsc, st.QueueURL)
	if visible != 30-int(s.Objects) || inFlight != 0 {
		t.Fatalf("after shutdown: %d visible, %d in flight; want %d visible at once", visible, inFlight, 30-s.Objects)
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestFiltersLimitsAndProcessors(t *testing.T) {
	st, s3c, sqsc := stack(t)
	out := t.TempDir()
	// A decompression bomb: 200 MB of zeros in about 200 KB of gzip.
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zero := make([]byte, 1<<20)
	for i := 0; i < 200; i++ {
		zw.Write(zero)
	}
	zw.Close()
	if _, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &st.Bucket, Key: aws.String("logs/bomb.gz"), Body: bytes.NewReader(bomb.Bytes())}); err != nil {
		t.Fatal(err)
	}
	put(t, s3c, st.Bucket, "logs/app.log", "GET / 200\nGET /x 500\nPOST /y 500\n")
	put(t, s3c, st.Bucket, "logs/skip.tmp", "ignored\n")
	put(t, s3c, st.Bucket, "other/x.log", "not included\n")
	// A forged notification naming a bucket outside the allowlist.
	forged := `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"secrets"},"object":{"key":"logs/keys.log","size":1,"eTag":"x"}}}]}`
	sqsc.SendMessage(context.Background(), &awssqs.SendMessageInput{QueueUrl: &st.QueueURL, MessageBody: &forged})

	cfg := config(st, out)
	cfg.Buckets = []string{"uploads"}
	cfg.Include = []string{"logs/*"}
	cfg.Exclude = []string{"*/*.tmp"}
	cfg.MaxDecompressedBytes = 10 << 20
	cfg.Processor = "grep"
	cfg.ProcessorOptions.Grep = ` 500$`
	s, logs := run(t, cfg, s3c, sqsc, nil)
	if s.Objects != 1 || s.Failed != 2 || s.Skipped != 2 || s.Deleted != 5 {
		t.Fatalf("summary %+v\n%s", s, logs)
	}
	res := readJSON(t, filepath.Join(out, dir.Path("uploads", "logs/app.log")))
	if res["matches"] != 2.0 || res["lines"] != 3.0 || res["processor"] != "grep" {
		t.Fatalf("grep result %v", res)
	}
	bombRec := readJSON(t, filepath.Join(out, dir.FailedDir, dir.Path("uploads", "logs/bomb.gz")))
	if bombRec["class"] != "permanent" || !strings.Contains(bombRec["error"].(string), "max-decompressed-bytes") {
		t.Fatalf("bomb record %v", bombRec)
	}
	forgedRec := readJSON(t, filepath.Join(out, dir.FailedDir, dir.Path("secrets", "logs/keys.log")))
	if forgedRec["class"] != "permanent" || !strings.Contains(forgedRec["error"].(string), "allowlist") {
		t.Fatalf("forged record %v", forgedRec)
	}
	for _, k := range []string{"logs/skip.tmp", "other/x.log"} {
		if _, err := os.Stat(filepath.Join(out, dir.Path("uploads", k))); !os.IsNotExist(err) {
			t.Errorf("filtered key %s has a result", k)
		}
	}
}

// TestShutdownCommitsPendingResultsBeforeLeaving: with a grouped store whose group would wait
// 30s, a stop commits the pending group and deletes its messages before palleto leaves.
func TestShutdownCommitsPendingResultsBeforeLeaving(t *testing.T) {
	st, s3c, sqsc := stack(t)
	for i := range 5 {
		put(t, s3c, st.Bucket, fmt.Sprintf("g/%d.txt", i), "a\nb\n")
	}
	db := filepath.Join(t.TempDir(), "r.db")
	cfg := config(st, "sqlite:"+db)
	cfg.Engine.ExitWhenIdle = 0
	cfg.Commit.Size, cfg.Commit.Timeout = 1000, 30*time.Second
	d, err := palleto.New(cfg, palleto.Deps{SQS: sqsc, S3: s3c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan palleto.Summary)
	go func() { s, _ := d.Run(ctx); done <- s }()
	deadline := time.Now().Add(time.Minute)
	for d.Stats().Objects < 5 {
		if time.Now().After(deadline) {
			t.Fatal("the 5 objects were not processed in a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	s := <-done
	if s.Deleted != 5 {
		t.Errorf("%d messages deleted at the stop, want the 5 whose results the stop committed", s.Deleted)
	}
	if v, f := testenv.QueueCounts(t, sqsc, st.QueueURL); v+f != 0 {
		t.Errorf("the queue holds %d+%d messages after the stop", v, f)
	}
	store, err := palleto.OpenStore(context.Background(), "sqlite:"+db, cfg.Commit, s3c)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for i := range 5 {
		if r, err := store.Result(context.Background(), st.Bucket, fmt.Sprintf("g/%d.txt", i), "lines"); r == nil || err != nil {
			t.Errorf("g/%d.txt has no result after the stop: %v", i, err)
		}
	}
}
