package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/internal/faultproxy"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store/dir"
)

// cpuSeconds is the user+system CPU time a process has used so far, from /proc.
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("cpu of %d: %v", pid, err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ
}

func failureRecords(out string) []string {
	var recs []string
	filepath.Walk(filepath.Join(out, dir.FailedDir), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			recs = append(recs, p)
		}
		return nil
	})
	return recs
}

// TestS3OutageDeletesNothingMinIO is issue #12's proof: 500 objects queued and S3 down for
// longer than every retry delay up to --max-receives adds up to (1+2+4+8+16 = 31s at
// --retry-backoff 1s): no message deleted, no failure record, receiving paused and the CPU near
// idle, one log line when S3 went down and one when it came back; then every result is there.
func TestS3OutageDeletesNothingMinIO(t *testing.T) {
	t.Parallel() // mostly waiting (an outage, a slow processor): it overlaps the tests that work
	env := testenv.Get(t)
	bucket := testenv.Name("outage")
	queueURL := env.NotifiedBucket(t, bucket)
	const n = 500
	objs := uploadMany(t, env.S3(), bucket, "o", n, 50, 12)
	testenv.WaitForMessages(t, env.SQS(), queueURL, n, 2*time.Minute)
	proxy, err := faultproxy.Start(faultproxy.Config{Target: strings.TrimPrefix(env.S3Endpoint, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.SetDown(true)
	out := t.TempDir()
	cmd, stderr := startPalleto(t, append(env.AWSEnv(), "AWS_ENDPOINT_URL_S3="+proxy.URL()), "run", "--queue-url", queueURL, "--out", out,
		"--wait-time", "1s", "--retry-backoff", "1s", "--max-receives", "5", "--exit-when-idle", "5s", "--log-format", "json")
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(stderr.String(), "S3 UNAVAILABLE") {
		if time.Now().After(deadline) {
			t.Fatalf("no word of S3 being down:\n%s", tail(stderr.String(), 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(15 * time.Second) // the outage goes on: this is the window measured, not a synchronisation
	cpu0, refused0 := cpuSeconds(t, cmd.Process.Pid), proxy.Stats().Refused
	time.Sleep(20 * time.Second)
	busy := (cpuSeconds(t, cmd.Process.Pid) - cpu0) / 20
	refused := proxy.Stats().Refused - refused0
	visible, inFlight := testenv.QueueCounts(t, env.SQS(), queueURL)
	t.Logf("S3 down for 35s+: CPU %.1f%% of a core and %d connections to S3 over the last 20s; queue %d visible + %d in flight; proxy %+v", 100*busy, refused, visible, inFlight, proxy.Stats())
	if visible+inFlight < n {
		t.Errorf("%d messages left the queue while S3 was down", n-visible-inFlight)
	}
	if c := countResults(out, bucket); c != 0 {
		t.Errorf("%d results with S3 down", c)
	}
	if recs := failureRecords(out); len(recs) != 0 {
		t.Errorf("failure records written for an outage: %v", recs[:min(5, len(recs))])
	}
	// Paused, only the breaker's probes reach S3 (at most one every 10s, each a GET the SDK may
	// try 3 times); receiving and fetching the 500 messages would take hundreds. Counting the
	// attempts, not the CPU, holds under -race and on a loaded machine.
	if refused > 12 {
		t.Errorf("%d connections to S3 in 20s while it is down: receiving is not paused", refused)
	}
	proxy.SetDown(false)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("palleto run: %v\n%s", err, tail(stderr.String(), 3000))
	}
	logs := stderr.String()
	if down, up := strings.Count(logs, "S3 UNAVAILABLE"), strings.Count(logs, "S3 available again"); down != 1 || up != 1 {
		t.Errorf("the log said S3 went down %d times and came back %d times; want once each", down, up)
	}
	if bad := checkResults(t, out, objs); bad > 0 {
		t.Errorf("%d of %d objects have no correct result after S3 came back", bad, n)
	}
	if recs := failureRecords(out); len(recs) != 0 {
		t.Errorf("failure records left: %v", recs[:min(5, len(recs))])
	}
	expectEmptyQueue(t, env.SQS(), queueURL)
}

// TestStalledS3BodyIsResumedMinIO: an S3 connection that goes silent mid-body (still open) is
// abandoned after --s3-read-timeout and the object resumed with a Range GET; the result is
// whole and the message is not pinned by the heartbeat.
func TestStalledS3BodyIsResumedMinIO(t *testing.T) {
	t.Parallel() // mostly waiting (an outage, a slow processor): it overlaps the tests that work
	env := testenv.Get(t)
	bucket := testenv.Name("stall")
	queueURL := env.NotifiedBucket(t, bucket)
	objs := uploadMany(t, env.S3(), bucket, "s", 1, 40000, 13)
	testenv.WaitForMessages(t, env.SQS(), queueURL, 1, time.Minute)
	proxy, err := faultproxy.Start(faultproxy.Config{Target: strings.TrimPrefix(env.S3Endpoint, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	proxy.StallNext(1, 100<<10)
	out := t.TempDir()
	code, _, stderr := runPalleto(t, append(env.AWSEnv(), "AWS_ENDPOINT_URL_S3="+proxy.URL()), 2*time.Minute, "run", "--queue-url", queueURL,
		"--out", out, "--wait-time", "1s", "--s3-read-timeout", "1s", "--exit-when-idle", "3s")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, tail(stderr, 3000))
	}
	if proxy.Stats().Stalls != 1 || !strings.Contains(stderr, "resuming with a Range request") {
		t.Errorf("proxy %+v; the log does not say the stalled body was resumed:\n%s", proxy.Stats(), tail(stderr, 2000))
	}
	if bad := checkResults(t, out, objs); bad > 0 {
		t.Errorf("the stalled object has no correct result")
	}
	expectEmptyQueue(t, env.SQS(), queueURL)
}

// TestZstdBombStaysUnder100MiBMinIO: 8 objects of a few KB, each a zstd frame asking for a
// 512 MiB window (zstd --long=29), handled by 8 workers at once: each fails permanently with a
// clear error, and the process's peak RSS stays under 100 MiB.
func TestZstdBombStaysUnder100MiBMinIO(t *testing.T) {
	env := testenv.Get(t)
	bin, err := plainBin()
	if err != nil {
		t.Fatal(err)
	}
	bucket := testenv.Name("zbomb")
	queueURL := env.NotifiedBucket(t, bucket)
	bomb := testenv.ZstdZeros(29, 2<<30) // as `head -c 2G /dev/zero | zstd --long=29`
	for i := range 8 {
		putObject(t, env.S3(), bucket, fmt.Sprintf("z/%d.zst", i), bomb)
	}
	testenv.WaitForMessages(t, env.SQS(), queueURL, 8, time.Minute)
	out := t.TempDir()
	rss := runForPeakRSS(t, env, bin, "run", "--queue-url", queueURL, "--out", out, "--exit-when-idle", "2s", "--wait-time", "1s", "--workers", "8")
	t.Logf("8 zstd frames of %d bytes asking for 512 MiB windows, 8 workers: peak RSS %.1f MiB", len(bomb), rss)
	if rss <= 0 || rss > 100 {
		t.Errorf("peak RSS %.1f MiB, want (0, 100]", rss)
	}
	for i := range 8 {
		data, err := os.ReadFile(filepath.Join(out, dir.FailedDir, dir.Path(bucket, fmt.Sprintf("z/%d.zst", i))))
		if err != nil || !strings.Contains(string(data), `"class": "permanent"`) || !strings.Contains(string(data), "zstd-max-window") {
			t.Errorf("record of z/%d.zst: %s %v", i, data, err)
		}
	}
	expectEmptyQueue(t, env.SQS(), queueURL)
}

// TestSecondSignalKillsExecChildren: a second SIGTERM exits at once, and the programs of
// --processor exec (in process groups of their own) do not outlive palleto.
func TestSecondSignalKillsExecChildren(t *testing.T) {
	cfg := devstack.DefaultConfig()
	cfg.DLQ, cfg.SQSAddr, cfg.S3Addr = "", "127.0.0.1:0", "127.0.0.1:0"
	st, err := devstack.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env := testenv.Env{S3Endpoint: st.S3Endpoint, SQSEndpoint: st.SQSEndpoint, AccessKey: "devstack", SecretKey: "devstack"}
	if _, err := env.S3().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String("slow.txt"), Body: strings.NewReader("x\n")}); err != nil {
		t.Fatal(err)
	}
	pidfile := filepath.Join(t.TempDir(), "pid")
	cmd := exec.Command(palletoBin, "run", "--queue-url", st.QueueURL, "--out", t.TempDir(), "--wait-time", "1s",
		"--processor", "exec", "--exec", "echo $$ > "+pidfile+"; exec sleep 300")
	cmd.Env = append(os.Environ(), append(st.Env(), "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pid int
	deadline := time.Now().Add(time.Minute)
	for pid == 0 {
		data, _ := os.ReadFile(pidfile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(data)))
		if time.Now().After(deadline) {
			t.Fatalf("the exec program never started:\n%s", tail(stderr.String(), 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for !strings.Contains(stderr.String(), "stopping") {
		if time.Now().After(deadline) {
			t.Fatalf("the first signal was not taken:\n%s", tail(stderr.String(), 2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("after a second signal: %v, want exit 1\n%s", err, tail(stderr.String(), 2000))
	}
	for alive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the exec program (pid %d) outlived palleto", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie, dead but not reaped, does not count).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(data)
	return !strings.HasPrefix(s[strings.LastIndexByte(s, ')')+2:], "Z")
}

// TestMissingDLQFailsAtStart: a --dlq-url that does not exist is an exit 1 at start naming it;
// otherwise every permanent failure would be kept and retried for ever.
func TestMissingDLQFailsAtStart(t *testing.T) {
	env := testenv.Get(t)
	queueURL := testenv.NewQueue(t, env.SQS(), testenv.Name("dlqcheck"), nil)
	missing := strings.TrimSuffix(queueURL, "/"+queueURL[strings.LastIndexByte(queueURL, '/')+1:]) + "/no-such-dlq-" + testenv.Name("x")
	code, _, stderr := runPalleto(t, env.AWSEnv(), time.Minute, "run", "--queue-url", queueURL, "--dlq-url", missing, "--out", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "dlq-url") {
		t.Fatalf("exit %d, want 1 with a message naming dlq-url:\n%s", code, tail(stderr, 2000))
	}
}
