package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/internal/testenv"
)

// jsonLines parses every line of a log as JSON, failing the test on a line that is not.
func jsonLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("with --log-format json, a line is not JSON: %q", line)
			continue
		}
		out = append(out, m)
	}
	return out
}

func msgWith(lines []map[string]any, prefix string) map[string]any {
	for _, m := range lines {
		if s, _ := m["msg"].(string); strings.HasPrefix(s, prefix) {
			return m
		}
	}
	return nil
}

// TestJSONLogsEveryLineAndTheStopLine: with --log-format json every line palleto writes is
// JSON, the exit summary too; a SIGINT's stop line says which signal, what the stop waits for
// and how long at most.
func TestJSONLogsEveryLineAndTheStopLine(t *testing.T) {
	cfg := devstack.DefaultConfig()
	cfg.DLQ = ""
	st, err := devstack.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env := testenv.Env{S3Endpoint: st.S3Endpoint, SQSEndpoint: st.SQSEndpoint, AccessKey: "devstack", SecretKey: "devstack"}
	_, gz, _, _ := devstack.SampleObject(0)
	if _, err := env.S3().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String("one.gz"), Body: bytes.NewReader(gz)}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(palletoBin, "run", "--queue-url", st.QueueURL, "--out", t.TempDir(), "--wait-time", "1s", "--log-format", "json")
	cmd.Env = append(cmd.Environ(), append(st.Env(), "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(stderr.String(), `"object processed"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the object was never processed:\n%s", tail(stderr.String(), 3000))
		}
		time.Sleep(20 * time.Millisecond) // polling the log for the event, not a synchronisation of palleto
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := waitStopped(t, cmd, &stderr); err != nil {
		t.Fatalf("after SIGINT: %v\n%s", err, tail(stderr.String(), 3000))
	}
	lines := jsonLines(t, stderr.String())
	stop := msgWith(lines, "stopping")
	if stop == nil || stop["cause"] != "interrupt signal received" || stop["waits_at_most"] == nil ||
		!strings.Contains(stop["msg"].(string), "interrupt") || !strings.Contains(stop["msg"].(string), "at most") {
		t.Errorf("the stop line does not say the signal and how long the stop waits at most: %v", stop)
	}
	sum := msgWith(lines, "palleto: 1 object processed")
	if sum == nil || sum["objects"] != 1.0 {
		t.Errorf("no JSON exit summary with its counts:\n%s", tail(stderr.String(), 2000))
	}
}

// TestJSONLogsTheSDKsWarningsAndTheExitError: the SDK's own warning ("falling back to IMDSv1",
// on a machine whose instance metadata service answers 404 to the token) and the error palleto
// exits with are JSON lines too.
func TestJSONLogsTheSDKsWarningsAndTheExitError(t *testing.T) {
	imds := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }))
	defer imds.Close()
	st, err := devstack.Start(devstack.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	code, _, stderr := runPalleto(t, []string{"AWS_REGION=us-east-1", "AWS_ENDPOINT_URL_SQS=" + st.SQSEndpoint, "AWS_ENDPOINT_URL_S3=" + st.S3Endpoint,
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN=", "AWS_PROFILE=", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null",
		"AWS_WEB_IDENTITY_TOKEN_FILE=", "AWS_CONTAINER_CREDENTIALS_FULL_URI=", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI=", "AWS_EC2_METADATA_DISABLED=",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT=" + imds.URL},
		time.Minute, "run", "--queue-url", st.QueueURL, "--out", t.TempDir(), "--log-format", "json")
	if code != 1 {
		t.Fatalf("with no credentials: exit %d, want 1\n%s", code, stderr)
	}
	lines := jsonLines(t, stderr)
	if msgWith(lines, "aws sdk: falling back to IMDSv1") == nil {
		t.Errorf("the SDK's IMDSv1 warning is not a JSON line of palleto's:\n%s", stderr)
	}
	if last := msgWith(lines, "palleto run: "); last == nil || last["level"] != "ERROR" {
		t.Errorf("the exit error is not a JSON line:\n%s", stderr)
	}
}

// TestProgressLineIsClearedBeforeALogLine: on a terminal, a log line never shares a line with
// the live progress line.
func TestProgressLineIsClearedBeforeALogLine(t *testing.T) {
	var b bytes.Buffer
	p := &progressOut{w: &b}
	p.Write([]byte("first log line\n"))
	p.show("palleto: 1.0 objects/s")
	p.Write([]byte("a log line\n"))
	p.show("palleto: 2.0 objects/s")
	p.clear()
	want := "first log line\n\r\033[Kpalleto: 1.0 objects/s\r\033[Ka log line\n\r\033[Kpalleto: 2.0 objects/s\r\033[K"
	if b.String() != want {
		t.Errorf("terminal got %q, want %q", b.String(), want)
	}
}

// The exit summary is written whatever --log-level says: with warn, a JSON run still ends with
// the summary line a script reads.
func TestSummaryWrittenWhateverTheLogLevel(t *testing.T) {
	var buf bytes.Buffer
	l, err := newLogger(&buf, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	jsonLogger.Store(l)
	defer jsonLogger.Store(nil)
	say(&buf, slog.LevelInfo, "palleto: 3 objects processed (0 already done, 0 failed)", "objects", 3)
	if !strings.Contains(buf.String(), `"msg":"palleto: 3 objects processed (0 already done, 0 failed)"`) || !strings.Contains(buf.String(), `"objects":3`) {
		t.Fatalf("with --log-level warn the summary is %q", buf.String())
	}
}
