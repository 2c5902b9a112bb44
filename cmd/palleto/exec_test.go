package main

import (
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
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store/dir"
)

// execStack starts an embedded S3 + SQS without a DLQ, with one object, and returns it and the
// environment a palleto subprocess reaches it with.
func execStack(t *testing.T, key, body string) (*devstack.Stack, testenv.Env) {
	t.Helper()
	cfg := devstack.DefaultConfig()
	cfg.DLQ, cfg.SQSAddr, cfg.S3Addr = "", "127.0.0.1:0", "127.0.0.1:0"
	st, err := devstack.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	env := testenv.Env{S3Endpoint: st.S3Endpoint, SQSEndpoint: st.SQSEndpoint, AccessKey: "devstack", SecretKey: "devstack"}
	if _, err := env.S3().PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("uploads"), Key: aws.String(key), Body: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	return st, env
}

// TestExecOutputBombStaysUnder100MiB is the exec processor's case of the memory tests beside the
// decompression bombs (TestBombStoppedWithFlatMemoryMinIO): a program that prints 1 GB
// (`head -c 1000000000 /dev/zero`, which took the daemon to 3.2 GB) is killed at the 16 MiB
// cap, its object recorded as a permanent failure saying so, and the palleto process's peak RSS
// (a build without -race) stays under 100 MiB.
func TestExecOutputBombStaysUnder100MiB(t *testing.T) {
	bin, err := plainBin()
	if err != nil {
		t.Fatal(err)
	}
	st, env := execStack(t, "a.txt", "x\n")
	out := t.TempDir()
	rss := runForPeakRSS(t, env, bin, "run", "--queue-url", st.QueueURL, "--out", out, "--exit-when-idle", "1s", "--wait-time", "1s",
		"--processor", "exec", "--exec", "cat >/dev/null; head -c 1000000000 /dev/zero")
	t.Logf("a program printing 1 GB: peak RSS %.1f MiB", rss)
	if rss <= 0 || rss > 100 {
		t.Errorf("peak RSS %.1f MiB, want (0, 100]", rss)
	}
	data, err := os.ReadFile(filepath.Join(out, dir.FailedDir, dir.Path("uploads", "a.txt")))
	if err != nil || !strings.Contains(string(data), `"class": "permanent"`) || !strings.Contains(string(data), "printed more than 16777216 bytes") {
		t.Errorf("record of a.txt: %s %v", data, err)
	}
}

// TestKill9LeavesNoExecPrograms: palleto killed by SIGKILL (no chance to clean up) while its
// exec program runs: the program's shell, a pipeline member and a background job it started
// all die with it (the parent-death signal and the watcher that kills the group, Linux).
func TestKill9LeavesNoExecPrograms(t *testing.T) {
	st, env := execStack(t, "slow.txt", "x\n")
	dir := t.TempDir()
	pids := func(name string) string { return filepath.Join(dir, name) }
	command := "echo $$ > " + pids("shell") + "; sh -c 'echo $$ > " + pids("bg") + "; exec sleep 300' & " +
		"sh -c 'echo $$ > " + pids("pipe") + "; exec sleep 300' | cat"
	cmd := exec.Command(palletoBin, "run", "--queue-url", st.QueueURL, "--out", t.TempDir(), "--wait-time", "1s",
		"--processor", "exec", "--exec", command)
	cmd.Env = append(os.Environ(), env.AWSEnv()...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(time.Minute)
	var running []int
	for _, name := range []string{"bg", "pipe", "shell"} {
		for {
			data, _ := os.ReadFile(pids(name))
			if pid, _ := strconv.Atoi(strings.TrimSpace(string(data))); pid > 0 {
				running = append(running, pid)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the exec program never started (%s):\n%s", name, tail(stderr.String(), 2000))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	for _, pid := range running {
		for alive(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("exec program pid %d outlived palleto's kill -9", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
