package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto/internal/testenv"
	"golang.org/x/sync/errgroup"
)

// plainBucket creates a bucket with no notification: objects put there are announced by no one.
func plainBucket(t *testing.T, env testenv.Env, name string) {
	t.Helper()
	if _, err := env.S3().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name}); err != nil {
		t.Fatal(err)
	}
}

// putKeys puts a small object ("line\n" times i%5+1) under each key, 16 at a time.
func putKeys(t *testing.T, env testenv.Env, bucket string, keys []string) {
	t.Helper()
	g := errgroup.Group{}
	g.SetLimit(16)
	c := env.S3()
	for i, k := range keys {
		g.Go(func() error {
			_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(k), Body: strings.NewReader(strings.Repeat("line\n", i%5+1))})
			if err != nil {
				return fmt.Errorf("PutObject %q: %w", k, err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

type backfillJSON struct {
	Listed, Filtered, Sent, Bytes int64
	SkippedDone                   int64 `json:"skipped_done"`
	WouldSend                     int64 `json:"would_send"`
}

func runBackfill(t *testing.T, env testenv.Env, args ...string) (backfillJSON, string) {
	t.Helper()
	code, stdout, stderr := runPalleto(t, env.AWSEnv(), 3*time.Minute, append([]string{"backfill", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("backfill %v: exit %d\n%s\n%s", args, code, stdout, tail(stderr, 2000))
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	var got backfillJSON
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		t.Fatalf("the last line of stdout is not the JSON summary: %q: %v", lines[len(lines)-1], err)
	}
	return got, stdout
}

// TestBackfillAnnouncesWhatWasThereMinIO is issue #14's proof: 2,000 objects put with no
// notification, some under an excluded prefix, some older than --since, keys with spaces, '+',
// '%', unicode and 1,024 bytes. The dry run counts what the backfill then sends; palleto run then
// gives exactly the selected objects a result, with their keys decoded back exactly; a second
// backfill against those results sends nothing.
func TestBackfillAnnouncesWhatWasThereMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("backfill")
	plainBucket(t, env, bucket)
	queueURL := testenv.NewQueue(t, env.SQS(), testenv.Name("backfill-q"), nil)
	var old, skipped, selected []string
	for i := range 200 {
		old = append(old, fmt.Sprintf("old/%04d.log", i))
	}
	putKeys(t, env, bucket, old)
	time.Sleep(1100 * time.Millisecond) // the data: "old" objects a second older than the rest, not a synchronisation
	since := time.Now().UTC().Truncate(time.Second)
	for i := range 300 {
		skipped = append(skipped, fmt.Sprintf("skip/%04d.log", i))
	}
	long := strings.Repeat(strings.Repeat("k", 200)+"/", 6)[:1020] + ".log" // 1,024 bytes, in components a filesystem takes
	hostile := []string{"with space/a b.log", "plus+sign.log", "per%25cent%.log", "日本/ログ.log", "emoji 🚀.log", long}
	selected = append(selected, hostile...)
	for i := len(hostile); i < 1500; i++ {
		selected = append(selected, fmt.Sprintf("new/%02d/%04d.log", i%20, i))
	}
	putKeys(t, env, bucket, append(skipped, selected...))

	args := []string{"--bucket", bucket, "--since", since.Format(time.RFC3339), "--exclude", "skip/*", "--page-size", "300"}
	dry, dryOut := runBackfill(t, env, append(args, "--dry-run")...)
	if !strings.Contains(dryOut, "new/") || !strings.Contains(dryOut, "(top level)") {
		t.Errorf("the dry run does not count per top-level prefix:\n%s", dryOut)
	}
	got, _ := runBackfill(t, env, append(args, "--queue-url", queueURL)...)
	want := backfillJSON{Listed: 2000, Filtered: 500, Sent: 1500}
	if got.Listed != want.Listed || got.Filtered != want.Filtered || got.Sent != want.Sent || got.SkippedDone != 0 {
		t.Errorf("backfill: %+v, want %+v", got, want)
	}
	if dry.Sent != 0 || dry.WouldSend != got.Sent || dry.Bytes != got.Bytes {
		t.Errorf("the dry run sent %d and counted %d objects (%d bytes) to send, the backfill sent %d (%d bytes)", dry.Sent, dry.WouldSend, dry.Bytes, got.Sent, got.Bytes)
	}
	out := t.TempDir()
	code, _, stderr := runPalleto(t, env.AWSEnv(), 3*time.Minute, "run", "--queue-url", queueURL, "--out", out, "--wait-time", "1s", "--exit-when-idle", "3s")
	if code != 0 {
		t.Fatalf("run: exit %d\n%s", code, tail(stderr, 3000))
	}
	for i, k := range selected {
		res := readResult(t, out, bucket, k)
		if res["key"] != k || res["lines"] != float64(i%5+1) {
			t.Errorf("result of %q: key %q, lines %v", k, res["key"], res["lines"])
		}
	}
	if n := countResults(out, bucket); n != len(selected) {
		t.Errorf("%d results, want exactly the %d selected objects", n, len(selected))
	}
	expectEmptyQueue(t, env.SQS(), queueURL)

	again, _ := runBackfill(t, env, append(args, "--queue-url", queueURL, "--out", out)...)
	if again.Sent != 0 || again.SkippedDone != int64(len(selected)) {
		t.Errorf("backfill against the results: %+v, want 0 sent and %d already done", again, len(selected))
	}
	audit, _ := runBackfill(t, env, append(args, "--dry-run", "--out", out)...)
	if audit.Sent != 0 || audit.WouldSend != 0 {
		t.Errorf("the audit finds %d objects without a result (sent %d), want 0", audit.WouldSend, audit.Sent)
	}
}

// TestBackfillKilledResumesFromItsCheckpointMinIO: kill -9 during a backfill of 5,000 objects,
// start it again with the same checkpoint: every object is sent at least once, and at most one
// page (500) twice; palleto run then gives every object its result.
func TestBackfillKilledResumesFromItsCheckpointMinIO(t *testing.T) {
	t.Parallel() // long, and much of it waiting on other processes: it overlaps the other long tests
	env := testenv.Get(t)
	bucket := testenv.Name("bfkill")
	plainBucket(t, env, bucket)
	queueURL := testenv.NewQueue(t, env.SQS(), testenv.Name("bfkill-q"), nil)
	const n, page = 5000, 500
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k/%05d.log", i)
	}
	putKeys(t, env, bucket, keys)
	cp := filepath.Join(t.TempDir(), "backfill.json")
	args := []string{"backfill", "--bucket", bucket, "--queue-url", queueURL, "--checkpoint", cp, "--page-size", fmt.Sprint(page)}
	cmd, stderr := startPalleto(t, env.AWSEnv(), args...)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		data, _ := os.ReadFile(cp)
		var c struct{ Counts backfillJSON }
		if json.Unmarshal(data, &c) == nil && c.Counts.Sent >= 1000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of 1,000 sent:\n%s", tail(stderr.String(), 2000))
		}
		time.Sleep(5 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	visibleAtKill, _ := testenv.QueueCounts(t, env.SQS(), queueURL)
	got, _ := runBackfill(t, env, args[1:]...)
	total, _ := testenv.QueueCounts(t, env.SQS(), queueURL)
	t.Logf("killed with %d sent; the restart, resumed from the checkpoint, counts %d sent in all; %d messages for %d objects", visibleAtKill, got.Sent, total, n)
	if total < n || total > n+page {
		t.Errorf("%d messages for %d objects: want every object at least once and at most one page (%d) twice", total, n, page)
	}
	out := t.TempDir()
	code, _, errs := runPalleto(t, env.AWSEnv(), 4*time.Minute, "run", "--queue-url", queueURL, "--out", out, "--wait-time", "1s", "--exit-when-idle", "3s")
	if code != 0 {
		t.Fatalf("run: exit %d\n%s", code, tail(errs, 3000))
	}
	if c := countResults(out, bucket); c != n {
		t.Errorf("%d results, want %d", c, n)
	}
	expectEmptyQueue(t, env.SQS(), queueURL)
}

// TestBackfillBadInputsExitAtOnceMinIO: a bucket that does not exist, a queue that does not exist:
// exit 1 at once, saying which.
func TestBackfillBadInputsExitAtOnceMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("bfbad")
	plainBucket(t, env, bucket)
	queueURL := testenv.NewQueue(t, env.SQS(), testenv.Name("bfbad-q"), nil)
	var mu sync.Mutex
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--bucket", "no-such-bucket-" + testenv.Name("x"), "--queue-url", queueURL}, "bucket"},
		{[]string{"--bucket", "no-such-bucket-" + testenv.Name("x"), "--dry-run", "--json"}, "bucket"},
		{[]string{"--bucket", bucket, "--queue-url", queueURL + "-missing"}, "queue-url"},
	} {
		mu.Lock()
		code, stdout, stderr := runPalleto(t, env.AWSEnv(), time.Minute, append([]string{"backfill"}, tt.args...)...)
		mu.Unlock()
		if code != 1 || !strings.Contains(stderr, tt.want) {
			t.Errorf("backfill %v: exit %d, want 1 naming %s:\n%s", tt.args, code, tt.want, tail(stderr, 1000))
		}
		// Nothing was listed: no counts that read as the answer, only the error.
		if strings.Contains(stdout+stderr, " listed, ") || strings.TrimSpace(stdout) != "" {
			t.Errorf("backfill %v printed a summary before its error:\n%s\n%s", tt.args, stdout, tail(stderr, 1000))
		}
	}
}
