package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store/dir"
)

// countGzipLines decompresses with the standard library and counts lines: an independent check
// of what palleto reports.
func countGzipLines(t *testing.T, gz []byte) (lines, size int) {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(plain, []byte{'\n'}), len(plain)
}

func TestDemoProcessesEveryObject(t *testing.T) {
	out := t.TempDir()
	code, stdout, stderr := runPalleto(t, nil, 3*time.Minute, "demo", "--objects", "50", "--out", out)
	if code != 0 {
		t.Fatalf("palleto demo exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout, tail(stderr, 3000))
	}
	for i := 0; i < 50; i++ {
		key, gz, _, _ := devstack.SampleObject(i)
		wantLines, wantBytes := countGzipLines(t, gz)
		data, err := os.ReadFile(filepath.Join(out, dir.Path("uploads", key)))
		if err != nil {
			t.Fatalf("no result for %s: %v", key, err)
		}
		var res struct {
			Key   string `json:"key"`
			Lines int    `json:"lines"`
			Bytes int    `json:"bytes"`
		}
		if err := json.Unmarshal(data, &res); err != nil || res.Key != key || res.Lines != wantLines || res.Bytes != wantBytes {
			t.Errorf("result of %s: %s; want %d lines, %d bytes", key, data, wantLines, wantBytes)
		}
	}
	files, _ := filepath.Glob(filepath.Join(out, "uploads", "packrat", "data", "*.json"))
	if len(files) != 50 {
		t.Errorf("%d result files, want 50", len(files))
	}
	if !strings.Contains(stdout, "50 processed") || !strings.Contains(stdout, out) {
		t.Errorf("summary does not say what happened:\n%s", stdout)
	}
	// The seed's idea, shown without --trace: what the workers asked for and the polls it made.
	if !strings.Contains(stdout, "How the demand flowed") || !strings.Contains(stdout, "asking for") || !strings.Contains(stdout, "received") {
		t.Errorf("the demo does not show the demand flow:\n%s", stdout)
	}
	// A second demo into its own output clears it and runs again.
	if code, stdout, stderr := runPalleto(t, nil, 3*time.Minute, "demo", "--objects", "5", "--out", out); code != 0 {
		t.Fatalf("a second demo into its own output exited %d\n%s\n%s", code, stdout, tail(stderr, 2000))
	}
	if files, _ := filepath.Glob(filepath.Join(out, "uploads", "packrat", "data", "*.json")); len(files) != 5 {
		t.Errorf("after a second demo of 5 objects: %d result files", len(files))
	}
}

// TestDemoNeverDeletesAUsersFiles: --out naming a directory that holds anything but a previous
// demo's output is refused (exit 2), and nothing in it is touched.
func TestDemoNeverDeletesAUsersFiles(t *testing.T) {
	out := t.TempDir()
	mine := filepath.Join(out, "thesis.tex")
	if err := os.WriteFile(mine, []byte("years of work"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runPalleto(t, nil, time.Minute, "demo", "--objects", "1", "--out", out)
	if code != 2 || !strings.Contains(stderr, "not empty") {
		t.Errorf("demo into a user's directory: exit %d, want 2 and a clear message:\n%s", code, tail(stderr, 1000))
	}
	if data, err := os.ReadFile(mine); err != nil || string(data) != "years of work" {
		t.Fatalf("the user's file is gone or changed: %q %v", data, err)
	}
}

// TestRunAgainstDevstack is what a developer does with `palleto devstack`: paste its exports,
// upload, and `palleto run` against it.
func TestRunAgainstDevstack(t *testing.T) {
	cmd := exec.Command(palletoBin, "devstack", "--s3-addr", "127.0.0.1:0", "--sqs-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	var env []string
	queueURL := ""
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			env = append(env, kv)
		}
		if rest, ok := strings.CutPrefix(line, "# then: palleto run --queue-url "); ok {
			queueURL = strings.Fields(rest)[0]
			break
		}
	}
	if queueURL == "" || len(env) < 5 {
		t.Fatalf("devstack printed no exports / queue URL: %v %q", env, queueURL)
	}
	get := func(name string) string {
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				return v
			}
		}
		return ""
	}
	s3c := testenv.Env{S3Endpoint: get("AWS_ENDPOINT_URL_S3"), AccessKey: "devstack", SecretKey: "devstack"}.S3()
	keys := []string{"a b.gz", "x+y/z%.gz", "日本/データ.gz"}
	want := map[string]int{}
	for i, k := range keys {
		_, gz, _, _ := devstack.SampleObject(i)
		want[k], _ = countGzipLines(t, gz)
		if _, err := s3c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String(k), Body: bytes.NewReader(gz)}); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	code, _, stderr := runPalleto(t, append(env, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"), 2*time.Minute,
		"run", "--queue-url", queueURL, "--out", out, "--exit-when-idle", "1s", "--wait-time", "1s")
	if code != 0 {
		t.Fatalf("palleto run exited %d: %s", code, tail(stderr, 3000))
	}
	for k, lines := range want {
		data, err := os.ReadFile(filepath.Join(out, dir.Path("uploads", k)))
		var res struct{ Lines int }
		if err != nil || json.Unmarshal(data, &res) != nil || res.Lines != lines {
			t.Errorf("result of %q: %s %v; want %d lines", k, data, err, lines)
		}
	}
}

// TestSIGTERMExitsZeroAndLeavesNothingStuck: a signal mid-run; every object either has its
// result (and its message is gone) or its message is visible again at once.
func TestSIGTERMExitsZeroAndLeavesNothingStuck(t *testing.T) {
	cfg := devstack.DefaultConfig()
	cfg.DLQ = ""
	st, err := devstack.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env := testenv.Env{S3Endpoint: st.S3Endpoint, SQSEndpoint: st.SQSEndpoint, AccessKey: "devstack", SecretKey: "devstack"}
	s3c, sqsc := env.S3(), env.SQS()
	const n = 300
	for i := 0; i < n; i++ {
		_, gz, _, _ := devstack.SampleObject(i % 20)
		key := fmt.Sprintf("obj/%03d.gz", i)
		if _, err := s3c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: &key, Body: bytes.NewReader(gz)}); err != nil {
			t.Fatal(err)
		}
	}
	out := t.TempDir()
	cmd := exec.Command(palletoBin, "run", "--queue-url", st.QueueURL, "--out", out, "--wait-time", "1s", "--workers", "2", "--shutdown-timeout", "20s")
	cmd.Env = append(os.Environ(), append(st.Env(), "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")...)
	var stderr syncBuffer // read while the process writes to it
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until some results exist, then signal.
	deadline := time.Now().Add(time.Minute)
	for {
		done, _ := filepath.Glob(filepath.Join(out, "uploads", "obj", "*.json"))
		if len(done) >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress: %s", tail(stderr.String(), 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := waitStopped(t, cmd, &stderr); err != nil {
		t.Fatalf("palleto run after SIGTERM: %v\n%s", err, tail(stderr.String(), 3000))
	}
	done, _ := filepath.Glob(filepath.Join(out, "uploads", "obj", "*.json"))
	visible, inFlight := testenv.QueueCounts(t, sqsc, st.QueueURL)
	if inFlight != 0 || len(done)+visible != n {
		t.Fatalf("after SIGTERM: %d results + %d visible messages (want %d in all), %d stuck in flight\n%s", len(done), visible, n, inFlight, tail(stderr.String(), 3000))
	}
	if !strings.Contains(stderr.String(), "objects processed") {
		t.Errorf("no summary at exit: %s", tail(stderr.String(), 1000))
	}
}

// TestExitWhenIdleDoesNotWaitOutLongPolls: with the default 20s --wait-time, a batch run's
// --exit-when-idle 3s does not wait out long polls started before the queue emptied: no
// ReceiveMessage that asked for a long wait is answered empty to it. The summary's rates are
// over the busy time.
func TestExitWhenIdleDoesNotWaitOutLongPolls(t *testing.T) {
	cfg := devstack.DefaultConfig()
	cfg.DLQ = ""
	st, err := devstack.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env := testenv.Env{S3Endpoint: st.S3Endpoint, SQSEndpoint: st.SQSEndpoint, AccessKey: "devstack", SecretKey: "devstack"}
	for i := range 3 {
		_, gz, _, _ := devstack.SampleObject(i)
		if _, err := env.S3().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String(fmt.Sprintf("i/%d.gz", i)), Body: bytes.NewReader(gz)}); err != nil {
			t.Fatal(err)
		}
	}
	rec := newReceiveRecorder(t, st.SQSEndpoint)
	code, _, stderr := runPalleto(t, append(st.Env(), "AWS_ENDPOINT_URL_SQS="+rec.srv.URL, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"), time.Minute,
		"run", "--queue-url", st.QueueURL, "--out", t.TempDir(), "--exit-when-idle", "3s")
	if code != 0 || !strings.Contains(stderr, "3 objects processed") {
		t.Fatalf("exit %d\n%s", code, tail(stderr, 2000))
	}
	if receives, held := rec.counts(); receives == 0 || held != 0 {
		t.Errorf("%d receives, %d of them long polls waited out to an empty answer (want 0):\n%s", receives, held, tail(stderr, 2000))
	}
	if !strings.Contains(stderr, "busy)") {
		t.Errorf("the summary does not give the busy time its rates are over:\n%s", tail(stderr, 500))
	}
}

// TestDevstackWithDebianAWSCLI: the AWS CLI Debian ships (2.9, which speaks SQS's Query protocol
// and ignores AWS_ENDPOINT_URL_*) works against `palleto devstack` with what it prints: the
// region and the --endpoint-url form.
func TestDevstackWithDebianAWSCLI(t *testing.T) {
	awsBin := "/usr/bin/aws" // Debian's, whatever else is on the PATH (a pip-installed CLI speaks another protocol)
	if _, err := os.Stat(awsBin); err != nil {
		if os.Getenv("PALLETO_REQUIRE_SERVERS") == "1" {
			t.Fatal("the aws command (Debian's awscli) is required: run `make test`")
		}
		t.Skip("no aws command (Debian package awscli)")
	}
	cmd := exec.Command(palletoBin, "devstack", "--s3-addr", "127.0.0.1:0", "--sqs-addr", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	env := []string{"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER="}
	var s3Endpoint, sqsEndpoint, queueURL string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			env = append(env, kv)
		}
		if rest, ok := strings.CutPrefix(line, "#   aws --endpoint-url "); ok {
			f := strings.Fields(rest)
			if f[1] == "s3" {
				s3Endpoint = f[0]
			} else {
				sqsEndpoint, queueURL = f[0], f[len(f)-1]
				break
			}
		}
	}
	if s3Endpoint == "" || sqsEndpoint == "" || !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "AWS_DEFAULT_REGION=") }) {
		t.Fatalf("devstack did not print the region and the --endpoint-url forms: %v %q %q", env, s3Endpoint, sqsEndpoint)
	}
	go io.Copy(io.Discard, stdout)
	run := func(args ...string) string {
		t.Helper()
		c := exec.Command(awsBin, args...)
		c.Env = append(os.Environ(), env...)
		out, err := c.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	file := filepath.Join(t.TempDir(), "hello.txt")
	os.WriteFile(file, []byte("one\ntwo\n"), 0o644)
	run("--endpoint-url", s3Endpoint, "s3", "cp", file, "s3://uploads/cli/hello.txt")
	if ls := run("--endpoint-url", s3Endpoint, "s3", "ls", "s3://uploads/cli/"); !strings.Contains(ls, "hello.txt") {
		t.Errorf("aws s3 ls: %s", ls)
	}
	if attrs := run("--endpoint-url", sqsEndpoint, "sqs", "get-queue-attributes", "--queue-url", queueURL, "--attribute-names", "All"); !strings.Contains(attrs, "ApproximateNumberOfMessages") {
		t.Errorf("aws sqs get-queue-attributes: %s", attrs)
	}
	msg := run("--endpoint-url", sqsEndpoint, "sqs", "receive-message", "--queue-url", queueURL, "--wait-time-seconds", "2", "--attribute-names", "All")
	if !strings.Contains(msg, "ReceiptHandle") || !strings.Contains(msg, `cli/hello.txt`) {
		t.Errorf("aws sqs receive-message did not get the notification of the object it copied: %s", msg)
	}
}

// TestQueueURLNamesTheEndpoint: with no SQS endpoint configured, a queue URL on a host that is
// not AWS's is where the queue is (the SDK alone would post to sqs.us-east-1.amazonaws.com);
// with one configured that names another host, the log warns.
func TestQueueURLNamesTheEndpoint(t *testing.T) {
	cfg := devstack.DefaultConfig()
	cfg.DLQ = ""
	st, err := devstack.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env := []string{"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true"}
	for _, kv := range st.Env() {
		if !strings.HasPrefix(kv, "AWS_ENDPOINT_URL_SQS=") {
			env = append(env, kv)
		}
	}
	code, _, stderr := runPalleto(t, append(env, "AWS_ENDPOINT_URL_SQS="), time.Minute, "run", "--queue-url", st.QueueURL, "--out", t.TempDir(),
		"--wait-time", "1s", "--exit-when-idle", "1s")
	if code != 0 {
		t.Fatalf("with the endpoint only in the queue URL: exit %d\n%s", code, tail(stderr, 2000))
	}
	code, _, stderr = runPalleto(t, append(env, "AWS_ENDPOINT_URL_SQS=http://127.0.0.1:1"), time.Minute, "run", "--queue-url", st.QueueURL, "--out", t.TempDir(),
		"--wait-time", "1s", "--exit-when-idle", "1s", "--sqs-timeout", "2s")
	if code != 1 || !strings.Contains(stderr, "differ") || !strings.Contains(stderr, "queue-url") {
		t.Errorf("an SQS endpoint that disagrees with the queue URL and does not answer: exit %d, want a warning and exit 1 naming queue-url:\n%s", code, tail(stderr, 2000))
	}
	// A real queue URL with a devstack's endpoint still exported: said once, at start, which
	// one the calls go to.
	code, _, stderr = runPalleto(t, append(env, "AWS_ENDPOINT_URL_SQS="+st.SQSEndpoint), time.Minute, "run", "--queue-url", "https://sqs.eu-west-1.amazonaws.com/123456789012/uploads",
		"--out", t.TempDir(), "--wait-time", "1s", "--exit-when-idle", "1s", "--log-format", "text")
	if n := strings.Count(stderr, "differ"); n != 1 || !strings.Contains(stderr, "calls go to "+st.SQSEndpoint) {
		t.Errorf("an AWS queue URL with AWS_ENDPOINT_URL_SQS set: %d warnings (want 1 naming the endpoint used), exit %d:\n%s", n, code, tail(stderr, 2000))
	}
}
