package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store/dir"
)

var palletoBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "palleto-bin")
	if err != nil {
		panic(err)
	}
	palletoBin = filepath.Join(dir, "palleto")
	build := exec.Command("go", "build", "-race", "-o", palletoBin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		panic("building palleto: " + err.Error())
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runPalleto runs the binary and returns its exit code, stdout and stderr.
func runPalleto(t *testing.T, env []string, timeout time.Duration, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, palletoBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("palleto %v: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("palleto %v did not finish in %s\nstderr:\n%s", args, timeout, tail(stderr.String(), 3000))
	}
	return code, stdout.String(), stderr.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// gzipLines returns n random lines gzip-compressed in `members` gzip members, and the plain text.
func gzipLines(r *rand.Rand, n, members int) ([]byte, []byte) {
	var plain bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&plain, `{"ts":%d,"level":"info","msg":"request %d served","bytes":%d}`+"\n", 1469059200+i, r.IntN(1e6), r.IntN(1e5))
	}
	var out bytes.Buffer
	data := plain.Bytes()
	for m := 0; m < members; m++ {
		part := data[m*len(data)/members : (m+1)*len(data)/members]
		w := gzip.NewWriter(&out)
		w.Write(part)
		w.Close()
	}
	return out.Bytes(), plain.Bytes()
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"run"},
		{"run", "--queue-url", "http://q/1/q", "--workers", "0"},
		{"run", "--queue-url", "http://q/1/q", "--wait-time", "30s"},
		{"run", "--queue-url", "http://q/1/q", "--processor", "nope"},
		{"run", "--no-such-flag"},
		{"run", "--queue-url", "http://q/1/q", "--include", "["},
		{"run", "--queue-url", "http://q/1/q", "--processor", "grep"},
		{"run", "--queue-url", "not-a-url"},
		{"run", "--queue-url", "http://q/1/q", "--dlq-url", "sqs.us-east-1.amazonaws.com/1/dlq"},
		{"run", "--source", "https://sqs.us-east-1.amazonaws.com/123456789012/a", "--queue-url", "http://q/1/q"},
		{"backfill", "--bucket", "b", "--to", "nats://127.0.0.1:1/S/C", "--queue-url", "http://q/1/q"},
		{"version", "--bogus"},
		{"frobnicate"},
	} {
		code, _, stderr := runPalleto(t, nil, time.Minute, args...)
		if code != 2 || !strings.Contains(stderr, "palleto") {
			t.Errorf("palleto %v: exit %d, stderr %q; want 2 and a message", args, code, tail(stderr, 300))
		}
	}
	code, out, _ := runPalleto(t, nil, time.Minute, "help")
	if code != 0 || !strings.Contains(out, "palleto run") {
		t.Errorf("help: exit %d %q", code, out)
	}
}

// TestImpossibleConfigsExit2: settings that cannot work together, from flags or the
// environment, stop palleto at start with exit 2 and one line naming the flags.
func TestImpossibleConfigsExit2(t *testing.T) {
	q := []string{"run", "--queue-url", "http://q/1/q"}
	for _, tt := range []struct {
		env   []string
		args  []string
		flags []string
	}{
		{nil, append(q, "--dlq-url", "http://q/1/q"), []string{"dlq-url", "queue-url"}},
		{[]string{"PALLETO_DLQ_URL=http://q/1/q/"}, q, []string{"dlq-url", "queue-url"}},
		{nil, append(q, "--grep", "ERROR"), []string{"--grep", "--processor grep"}},
		{[]string{"PALLETO_PROCESSOR=sha256"}, append(q, "--exec", "wc -l"), []string{"--exec", "--processor exec"}},
		{nil, append(q, "--sqs-timeout", "0s"), []string{"sqs-timeout"}},
	} {
		code, _, stderr := runPalleto(t, tt.env, time.Minute, tt.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		named := true
		for _, f := range tt.flags {
			named = named && strings.Contains(stderr, f)
		}
		if code != 2 || len(lines) != 1 || !named {
			t.Errorf("palleto %v (env %v): exit %d, stderr %q; want 2 and one line naming %v", tt.args, tt.env, code, tail(stderr, 500), tt.flags)
		}
	}
}

// TestEndToEndMinIO is the whole job on real servers: objects uploaded to MinIO, notifications
// sent by MinIO itself (through the webhook bridge) to local-aws-sqs, palleto run to the end.
func TestEndToEndMinIO(t *testing.T) {
	env := testenv.Get(t)
	ctx := context.Background()
	name := testenv.Name("e2e")
	queueURL := env.NotifiedBucket(t, name)
	s3c, sqsc := env.S3(), env.SQS()

	r := rand.New(rand.NewPCG(1, 2))
	keyParts := []string{"plain", "with space", "plus+sign", "per%cent", "ünïcödé", "日本語", "a+b c%2F"}
	want := map[string]int{} // key -> lines
	wantBytes := map[string]int{}
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("packrat/%s/%03d.gz", keyParts[i%len(keyParts)], i)
		lines := 1 + r.IntN(400)
		members := 1
		if i%5 == 0 {
			members = 3 // multi-member gzip, as `cat a.gz b.gz` makes
		}
		gz, plain := gzipLines(r, lines, members)
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &name, Key: &key, Body: bytes.NewReader(gz)}); err != nil {
			t.Fatalf("PutObject %s: %v", key, err)
		}
		want[key] = lines
		wantBytes[key] = len(plain)
	}
	// An object that cannot be decoded: gzip magic, then garbage.
	badKey := "packrat/corrupt.gz"
	if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &name, Key: &badKey, Body: bytes.NewReader(append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, bytes.Repeat([]byte{0xff}, 500)...))}); err != nil {
		t.Fatal(err)
	}
	// A message that is not a notification at all.
	if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &queueURL, MessageBody: aws.String(`{"hello": "not an S3 event"`)}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitForMessages(t, sqsc, queueURL, 202, 60*time.Second)

	out := t.TempDir()
	code, stdout, stderr := runPalleto(t, env.AWSEnv(), 5*time.Minute, "run", "--queue-url", queueURL, "--out", out,
		"--exit-when-idle", "2s", "--wait-time", "1s", "--workers", "8", "--pollers", "2", "--log-format", "json", "--trace")
	if code != 0 {
		t.Fatalf("palleto run exited %d\nstderr:\n%s", code, tail(stderr, 5000))
	}
	for key, lines := range want {
		data, err := os.ReadFile(filepath.Join(out, dir.Path(name, key)))
		if err != nil {
			t.Errorf("no result for %q: %v", key, err)
			continue
		}
		var res map[string]any
		if err := json.Unmarshal(data, &res); err != nil {
			t.Fatalf("result of %q: %v", key, err)
		}
		if res["key"] != key || res["bucket"] != name || res["lines"] != float64(lines) || res["bytes"] != float64(wantBytes[key]) || res["encoding"] != "gzip" {
			t.Errorf("result of %q: %s; want %d lines, %d bytes", key, data, lines, wantBytes[key])
		}
		for _, f := range []string{"version_id", "etag", "size", "processor", "message_id", "started_at", "finished_at"} {
			if _, ok := res[f]; !ok {
				t.Errorf("result of %q has no %q", key, f)
			}
		}
	}
	// The corrupt object and the malformed message are recorded, not lost, and did not stop anything.
	failed, err := os.ReadFile(filepath.Join(out, dir.FailedDir, dir.Path(name, badKey)))
	if err != nil || !strings.Contains(string(failed), `"class": "permanent"`) || !strings.Contains(string(failed), "corrupt") {
		t.Errorf("failure record of the corrupt object: %s %v", failed, err)
	}
	msgs, _ := filepath.Glob(filepath.Join(out, dir.FailedDir, "_messages", "*.json"))
	if len(msgs) != 1 {
		t.Errorf("want 1 failure record for the malformed message, got %v", msgs)
	} else if data, _ := os.ReadFile(msgs[0]); !strings.Contains(string(data), "malformed notification") {
		t.Errorf("malformed message record: %s", data)
	}
	if !strings.Contains(stderr, "malformed notification") || !strings.Contains(stderr, "corrupt") {
		t.Errorf("the log does not name the failures:\n%s", tail(stderr, 3000))
	}
	if !strings.Contains(stdout, "asking for") || !strings.Contains(stdout, "pipeline") || !strings.Contains(stdout, "deleted") {
		t.Errorf("--trace output lacks the flow:\n%s", tail(stdout, 2000))
	}
	if v, f := testenv.QueueCounts(t, sqsc, queueURL); v+f != 0 {
		t.Errorf("queue not empty after the run: %d visible, %d in flight", v, f)
	}
}
