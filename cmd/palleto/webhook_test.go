package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/testenv"
	notifypkg "github.com/palleto/palleto/notify"
	"github.com/palleto/palleto/webhook"
)

// TestWebhookFlagsFromEnv: the webhook source's settings come from flags or PALLETO_* variables
// into the options the source is opened with.
func TestWebhookFlagsFromEnv(t *testing.T) {
	cfg, err := parseRun(t, "--queue-url", "http://q/q")
	if err != nil {
		t.Fatal(err)
	}
	if o := cfg.SourceOptions; o.Spool != "palleto-spool.db" || o.SpoolMaxMessages != 1_000_000 || o.Token != "" {
		t.Errorf("defaults: %+v", o)
	}
	t.Setenv("PALLETO_SPOOL", "/var/lib/palleto/spool.db")
	t.Setenv("PALLETO_SPOOL_MAX_MESSAGES", "5000")
	t.Setenv("PALLETO_TLS_CERT", "/etc/palleto/cert.pem")
	t.Setenv("PALLETO_TLS_KEY", "/etc/palleto/key.pem")
	t.Setenv("PALLETO_WEBHOOK_TOKEN", "from-env")
	cfg, err = parseRun(t, "--queue-url", "http://q/q", "--webhook-token", "from-flag")
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.SourceOptions
	if o.Spool != "/var/lib/palleto/spool.db" || o.SpoolMaxMessages != 5000 || o.TLSCert != "/etc/palleto/cert.pem" || o.TLSKey != "/etc/palleto/key.pem" || o.Token != "from-flag" {
		t.Errorf("from the environment (the token from the flag): %+v", o)
	}
}

// TestWebhookSourceMinIO: `palleto run --source http://127.0.0.1:PORT/minio` takes MinIO's own
// webhook events; a kill -9 mid-run, and uploads while it is down (MinIO queues them), lose
// nothing: every object gets its result (lines, bytes, etag), and the spool ends empty.
// Needs the source seam (--source in palleto run); skipped, saying so, without it.
func TestWebhookSourceMinIO(t *testing.T) {
	env := testenv.Get(t)
	addr := env.Webhook(t)
	if code, _, stderr := runPalleto(t, nil, time.Minute, "run", "--help"); code != 0 || !strings.Contains(stderr, "env PALLETO_SOURCE\n") {
		t.Skip("palleto run has no --source yet (the source seam)")
	}
	bucket := testenv.Name("hookbin")
	env.WebhookBucket(t, bucket)
	dir := t.TempDir()
	spool, out := filepath.Join(dir, "spool.db"), filepath.Join(dir, "out")
	args := []string{"run", "--source", "http://" + addr + "/minio", "--spool", spool, "--out", out, "--bucket", bucket, "--wait-time", "1s"}
	s3c := env.S3()
	etags := map[string]string{}
	upload := func(from, to int) {
		for i := from; i < to; i++ {
			key := fmt.Sprintf("k/%03d.log", i)
			etags[key] = putObject(t, s3c, bucket, key, []byte(strings.Repeat("line\n", i%7+1)))
		}
	}
	first, stderr := startPalleto(t, env.AWSEnv(), args...)
	upload(0, 40)
	for deadline := time.Now().Add(time.Minute); countResults(out, bucket) < 10; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d results after a minute:\n%s", countResults(out, bucket), tail(stderr.String(), 3000))
		}
	}
	first.Process.Kill() // kill -9, mid-run
	first.Wait()
	upload(40, 60) // while nothing listens: MinIO queues them
	second, stderr := startPalleto(t, env.AWSEnv(), append(args, "--exit-when-idle", "10s")...)
	if err := second.Wait(); err != nil {
		t.Fatalf("palleto run after the kill: %v\n%s", err, tail(stderr.String(), 3000))
	}
	for i := range 60 {
		key := fmt.Sprintf("k/%03d.log", i)
		res := readResult(t, out, bucket, key)
		if res["lines"] != float64(i%7+1) || res["bytes"] != float64(5*(i%7+1)) || strings.Trim(fmt.Sprint(res["etag"]), `"`) != etags[key] {
			t.Errorf("%s: %v", key, res)
		}
	}
	db, err := sql.Open("sqlite", spool)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var left int
	if err := db.QueryRow(`SELECT COUNT(*) FROM messages`).Scan(&left); err != nil || left != 0 {
		t.Errorf("the spool holds %d messages at the end (%v), want none", left, err)
	}
}

// TestBackfillToWebhookMinIO: `palleto backfill --to http://.../path?token=T` posts one
// notification per object to a webhook, with the token as a bearer token.
func TestBackfillToWebhookMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("backfill-hook")
	plainBucket(t, env, bucket)
	var keys []string
	for i := range 25 {
		keys = append(keys, fmt.Sprintf("old/%02d.log", i))
	}
	keys = append(keys, "with space/a+b%.log")
	putKeys(t, env, bucket, keys)
	src, err := webhook.New(context.Background(), webhook.Config{Addr: "127.0.0.1:0", Path: "/minio", Token: "t0k",
		Spool: filepath.Join(t.TempDir(), "spool.db"), WaitTime: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got, _ := runBackfill(t, env, "--bucket", bucket, "--to", src.URL()+"?token=t0k", "--page-size", "10")
	if got.Sent != int64(len(keys)) {
		t.Errorf("backfill sent %d, want %d", got.Sent, len(keys))
	}
	var received []string
	for deadline := time.Now().Add(time.Minute); len(received) < len(keys) && time.Now().Before(deadline); {
		msgs, err := src.Receive(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			n, err := notifypkg.Parse(m.Body)
			if err != nil || len(n.Records) != 1 || n.Records[0].Bucket != bucket {
				t.Fatalf("a posted notification: %s (%v)", m.Body, err)
			}
			received = append(received, n.Records[0].Key)
			src.Delete(m)
		}
	}
	slices.Sort(received)
	slices.Sort(keys)
	if !slices.Equal(received, keys) {
		t.Errorf("the webhook received %v\nwant %v", received, keys)
	}
	code, _, stderr := runPalleto(t, env.AWSEnv(), time.Minute, "backfill", "--bucket", bucket, "--to", src.URL()+"?token=wrong")
	if code != 1 || !strings.Contains(stderr, "401") {
		t.Errorf("a wrong token: exit %d, %s; want 1 with the 401", code, tail(stderr, 500))
	}
}
