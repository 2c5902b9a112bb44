package webhook

// End to end with MinIO's own webhook target (issue 25 items 4 and 5): MinIO posts its events
// to a Palleto whose source is this package, run as a child process of the test (this test
// binary, re-run as TestDaemonProcess) so that it can be killed with SIGKILL. The daemon is
// built in-process with palleto.Deps{Source: ...}; cmd/palleto's TestWebhookSourceMinIO runs
// the same with the binary's --source.

import (
	"bytes"
	"compress/gzip"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/store"
)

// TestDaemonProcess is the child: a Palleto on the webhook source the environment names. It
// prints its summary as JSON on stdout when it stops (SIGTERM, or idle).
func TestDaemonProcess(t *testing.T) {
	if os.Getenv("PALLETO_WEBHOOK_CHILD") != "1" {
		t.Skip("run by the MinIO tests as their daemon")
	}
	env := testenv.Get(t)
	if os.Getenv("PALLETO_WEBHOOK_CHILD_CRASH") == "1" {
		testHookSpooled = func(http.ResponseWriter, int64) { syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := quiet
	src, err := queue.Open(ctx, os.Getenv("PALLETO_WEBHOOK_CHILD_URL"), queue.Options{Logger: log,
		Spool: os.Getenv("PALLETO_WEBHOOK_CHILD_SPOOL"), AckTimeout: 30 * time.Second, WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := palleto.DefaultConfig()
	cfg.SQS.QueueURL = "https://sqs.us-east-1.amazonaws.com/000000000000/unused" // until Validate knows other sources
	cfg.OutDir = os.Getenv("PALLETO_WEBHOOK_CHILD_OUT")
	cfg.Buckets = []string{os.Getenv("PALLETO_WEBHOOK_CHILD_BUCKET")}
	cfg.Engine.Workers = 4
	cfg.RetryBackoff = time.Second
	if idle := os.Getenv("PALLETO_WEBHOOK_CHILD_IDLE"); idle != "" {
		cfg.Engine.ExitWhenIdle, _ = time.ParseDuration(idle)
	}
	d, err := palleto.New(cfg, palleto.Deps{Source: src, S3: env.S3(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	sum, err := d.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(os.Stdout).Encode(sum)
}

// child is a running daemon process.
type child struct {
	cmd    *exec.Cmd
	stdout bytes.Buffer
	stderr bytes.Buffer
	done   chan error
}

func startChild(t *testing.T, vars ...string) *child {
	t.Helper()
	c := &child{cmd: exec.Command(os.Args[0], "-test.run=^TestDaemonProcess$", "-test.v"), done: make(chan error, 1)}
	c.cmd.Env = append(append(os.Environ(), "PALLETO_WEBHOOK_CHILD=1"), vars...)
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() { c.cmd.Process.Kill(); <-c.done; c.done <- nil })
	return c
}

// summary waits for the child to exit and returns the summary it printed.
func (c *child) summary(t *testing.T) palleto.Summary {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			t.Fatalf("daemon: %v\n%s\n%s", err, c.stdout.String(), c.stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("the daemon did not stop\n%s", c.stderr.String())
	}
	for _, line := range strings.Split(c.stdout.String(), "\n") {
		var s palleto.Summary
		if strings.HasPrefix(line, "{") && json.Unmarshal([]byte(line), &s) == nil {
			return s
		}
	}
	t.Fatalf("no summary in the daemon's output:\n%s", c.stdout.String())
	return palleto.Summary{}
}

// object is an upload and what its result must say.
type object struct {
	key         string
	data        []byte
	lines, size int64
	etag        string
}

// put uploads objects (every third one gzipped) named prefix%03d and returns them with their
// ETags as MinIO gives them.
func put(t *testing.T, env testenv.Env, bucket, prefix string, from, to int) []object {
	t.Helper()
	var out []object
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, to-from)
	for i := from; i < to; i++ {
		plain := []byte(strings.Repeat(fmt.Sprintf("line %d of object %d\n", i, i), i%9+1))
		o := object{key: fmt.Sprintf("%s%03d.log", prefix, i), data: plain, lines: int64(i%9 + 1), size: int64(len(plain))}
		if i%3 == 0 {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			zw.Write(plain)
			zw.Close()
			o.key, o.data = o.key+".gz", b.Bytes()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := env.S3().PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(o.key), Body: bytes.NewReader(o.data)})
			if err != nil {
				errs <- fmt.Errorf("PutObject %s: %w", o.key, err)
				return
			}
			o.etag = strings.Trim(aws.ToString(res.ETag), `"`)
			mu.Lock()
			out = append(out, o)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return out
}

// results counts the results of objs in out, and checks each against its upload.
func results(t *testing.T, out string, bucket string, objs []object, check bool) int {
	t.Helper()
	st, err := palleto.OpenStore(context.Background(), out, store.GroupConfig{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n := 0
	for _, o := range objs {
		r, err := st.Result(context.Background(), bucket, o.key, "lines")
		if err != nil || r == nil {
			if check {
				t.Errorf("%s: no result (%v)", o.key, err)
			}
			continue
		}
		n++
		if check && (fmt.Sprint(r.Fields["lines"]) != fmt.Sprint(o.lines) || r.Bytes != o.size || strings.Trim(r.ETag, `"`) != o.etag) {
			t.Errorf("%s: result lines %v bytes %d etag %s, want %d, %d, %s", o.key, r.Fields["lines"], r.Bytes, r.ETag, o.lines, o.size, o.etag)
		}
	}
	return n
}

// waitResults waits until n of objs have their result.
func waitResults(t *testing.T, out, bucket string, objs []object, n int, c *child) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for results(t, out, bucket, objs, false) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d results after 2 minutes\n%s", results(t, out, bucket, objs, false), n, c.stderr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// spoolRows counts the rows of the spool's messages and failures (the spool must be closed).
func spoolRows(t *testing.T, path string) (messages, failures int) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.QueryRow(`SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM failures)`).Scan(&messages, &failures); err != nil {
		t.Fatal(err)
	}
	return messages, failures
}

// TestMinIOWebhookEndToEnd: MinIO posts its events to Palleto's webhook; a kill -9 after part of
// the work, and uploads while Palleto is down (MinIO queues them), lose nothing: every object
// gets its result (lines, bytes, etag of the upload), and the spool ends empty.
func TestMinIOWebhookEndToEnd(t *testing.T) {
	env := testenv.Get(t)
	addr := env.Webhook(t)
	bucket := testenv.Name("hook")
	env.WebhookBucket(t, bucket)
	dir := t.TempDir()
	spool, out := filepath.Join(dir, "spool.db"), filepath.Join(dir, "out")
	vars := []string{"PALLETO_WEBHOOK_CHILD_URL=http://" + addr + "/minio", "PALLETO_WEBHOOK_CHILD_SPOOL=" + spool,
		"PALLETO_WEBHOOK_CHILD_OUT=" + out, "PALLETO_WEBHOOK_CHILD_BUCKET=" + bucket}
	first := startChild(t, vars...)
	objs := put(t, env, bucket, "a/", 0, 60)
	waitResults(t, out, bucket, objs, 20, first)
	first.cmd.Process.Kill() // kill -9, mid-run
	<-first.done
	first.done <- nil
	objs = append(objs, put(t, env, bucket, "b/", 60, 90)...) // while nothing listens: MinIO queues them
	second := startChild(t, vars...)
	waitResults(t, out, bucket, objs, len(objs), second)
	second.cmd.Process.Signal(syscall.SIGTERM)
	sum := second.summary(t)
	if results(t, out, bucket, objs, true) != len(objs) {
		t.Fatalf("not every object has its result")
	}
	if sum.Failed != 0 {
		t.Errorf("%d failures after the restart", sum.Failed)
	}
	if m, f := spoolRows(t, spool); m != 0 || f != 0 {
		t.Errorf("the spool holds %d messages and %d failures at the end, want none", m, f)
	}
	t.Logf("after the kill -9: %d objects processed, %d found done", sum.Objects, sum.AlreadyDone)
}

// TestMinIOWebhookCrashBetweenSpoolAndAnswer: the daemon dies (SIGKILL) after an event is
// committed to its spool and before MinIO is answered; MinIO sends it again once a daemon
// listens. The object is processed once, and its second event found done.
func TestMinIOWebhookCrashBetweenSpoolAndAnswer(t *testing.T) {
	env := testenv.Get(t)
	addr := env.Webhook(t)
	bucket := testenv.Name("hookcrash")
	env.WebhookBucket(t, bucket)
	dir := t.TempDir()
	spool, out := filepath.Join(dir, "spool.db"), filepath.Join(dir, "out")
	vars := []string{"PALLETO_WEBHOOK_CHILD_URL=http://" + addr + "/minio", "PALLETO_WEBHOOK_CHILD_SPOOL=" + spool,
		"PALLETO_WEBHOOK_CHILD_OUT=" + out, "PALLETO_WEBHOOK_CHILD_BUCKET=" + bucket}
	crashing := startChild(t, append(vars, "PALLETO_WEBHOOK_CHILD_CRASH=1")...)
	objs := put(t, env, bucket, "once/", 1, 2)
	select {
	case err := <-crashing.done:
		crashing.done <- err
		if ws, ok := crashing.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("the daemon was to die by SIGKILL at the event: %v\n%s", err, crashing.stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("MinIO's event never reached the daemon")
	}
	if m, _ := spoolRows(t, spool); m != 1 {
		t.Fatalf("the event answered by no one: %d messages in the spool, want 1", m)
	}
	// The next daemon takes the spooled event and MinIO's second try (within its 3s retry),
	// then exits once idle.
	again := startChild(t, append(vars, "PALLETO_WEBHOOK_CHILD_IDLE=15s")...)
	sum := again.summary(t)
	if sum.Objects != 1 || sum.AlreadyDone != 1 || sum.Failed != 0 {
		t.Errorf("after the crash: %d processed, %d found done, %d failed; want 1, 1, 0", sum.Objects, sum.AlreadyDone, sum.Failed)
	}
	results(t, out, bucket, objs, true)
	if m, f := spoolRows(t, spool); m != 0 || f != 0 {
		t.Errorf("the spool holds %d messages and %d failures at the end, want none", m, f)
	}
}
