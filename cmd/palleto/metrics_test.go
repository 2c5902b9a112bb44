package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/testenv"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape returns the samples of /metrics by name and label string, e.g.
// `palleto_objects_processed_total{outcome="ok"}`.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, fam := range families {
		for _, m := range fam.Metric {
			labels := model.LabelSet{}
			for _, l := range m.Label {
				labels[model.LabelName(l.GetName())] = model.LabelValue(l.GetValue())
			}
			key := name
			if len(labels) > 0 {
				key += labels.String()
			}
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				out[key+"_count"] = float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func status(addr, path string) int {
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestMetricsMatchWhatHappenedMinIO runs palleto with --metrics-addr over objects MinIO
// notifies, one of them corrupt, and checks /metrics against what the test uploaded, /healthz,
// and /readyz both ready and, with the output directory deleted, not ready.
func TestMetricsMatchWhatHappenedMinIO(t *testing.T) {
	env := testenv.Get(t)
	bucket := testenv.Name("metrics")
	queueURL := env.NotifiedBucket(t, bucket)
	s3c := env.S3()
	r := rand.New(rand.NewPCG(3, 4))
	const n = 30
	var stored, plain int
	for i := 0; i < n; i++ {
		gz, p := gzipLines(r, 1+r.IntN(300), 1)
		putObject(t, s3c, bucket, fmt.Sprintf("m/%02d.gz", i), gz)
		stored += len(gz)
		plain += len(p)
	}
	putObject(t, s3c, bucket, "m/corrupt.gz", append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, bytes.Repeat([]byte{0xff}, 100)...))
	testenv.WaitForMessages(t, env.SQS(), queueURL, n+1, time.Minute)

	addr := freeAddr(t)
	out := t.TempDir()
	cmd := exec.Command(palletoBin, "run", "--queue-url", queueURL, "--out", out, "--wait-time", "1s", "--metrics-addr", addr, "--progress", "always")
	cmd.Env = append(os.Environ(), env.AWSEnv()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var m map[string]float64
	deadline := time.Now().Add(90 * time.Second)
	for {
		m = scrape(t, addr)
		if m[`palleto_sqs_messages_deleted_total`] >= n+1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range []struct {
		name string
		want float64
	}{
		{`palleto_sqs_messages_received_total`, n + 1},
		{`palleto_sqs_messages_deleted_total`, n + 1},
		{`palleto_objects_processed_total{outcome="ok"}`, n},
		{`palleto_objects_processed_total{outcome="permanent"}`, 1},
		{`palleto_objects_processed_total{outcome="retryable"}`, 0},
		{`palleto_sqs_messages_returned_total{reason="retry"}`, 0},
		{`palleto_sqs_messages_dead_lettered_total`, 0},
		{`palleto_s3_bytes_total`, float64(stored + 110)}, // the corrupt object is fetched too
		{`palleto_object_duration_seconds_count`, n + 1},
		{`palleto_notification_lag_seconds_count`, n + 1},
		{`palleto_messages_in_flight`, 0},
		{`palleto_objects_in_flight`, 0},
	} {
		if m[c.name] != c.want {
			t.Errorf("%s = %v, want %v", c.name, m[c.name], c.want)
		}
	}
	// What the corrupt object decompressed before failing is counted too: at least the good bytes.
	if got := m[`palleto_decompressed_bytes_total`]; got < float64(plain) {
		t.Errorf("palleto_decompressed_bytes_total = %v, want >= %d", got, plain)
	}
	if _, ok := m[`palleto_demand_outstanding`]; !ok {
		t.Error("no palleto_demand_outstanding")
	}
	if got := status(addr, "/healthz"); got != 200 {
		t.Errorf("/healthz: %d", got)
	}
	if got := status(addr, "/readyz"); got != 200 {
		t.Errorf("/readyz: %d", got)
	}
	// The counters were checked above. An output directory removed under the daemon is made
	// again (ready); one replaced by a file cannot be: the daemon must say it is not ready.
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if got := status(addr, "/readyz"); got != 200 {
		t.Errorf("/readyz with the output directory removed (and made again): %d, want 200", got)
	}
	if err := os.RemoveAll(out); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := status(addr, "/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz with a file where the output directory was: %d, want 503", got)
	}
	os.Remove(out)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("palleto run after SIGTERM: %v\n%s", err, tail(stderr.String(), 3000))
	}
	logs := stderr.String()
	if !strings.Contains(logs, "metrics and health endpoints listening") {
		t.Errorf("the log does not say where metrics are served:\n%s", tail(logs, 2000))
	}
	// --progress always: the live line, rewritten in place, with rates, in-flight and queue depth.
	if !strings.Contains(logs, "\r\033[Kpalleto: ") || !strings.Contains(logs, "objects/s") || !strings.Contains(logs, "| queue: ") {
		t.Errorf("no progress line:\n%q", tail(logs, 1000))
	}
	// One line per object outcome, and never a secret.
	if got := strings.Count(logs, `"msg":"object processed"`); got != n {
		t.Errorf("%d 'object processed' lines, want one per object: %d", got, n)
	}
	if secret := env.SecretKey; strings.Contains(logs, secret) {
		t.Errorf("the log contains the secret access key")
	}
}

// A queue URL naming no queue stops palleto run at once, with exit 1 and the reason, instead of
// a daemon retrying forever.
func TestMissingQueueFailsAtStart(t *testing.T) {
	env := testenv.Get(t)
	url := strings.TrimRight(env.SQSEndpoint, "/") + "/123456789012/" + testenv.Name("no-such-queue")
	code, _, stderr := runPalleto(t, env.AWSEnv(), time.Minute, "run", "--queue-url", url, "--out", t.TempDir(), "--wait-time", "1s")
	if code != 1 || !strings.Contains(stderr, "queue-url:") || !strings.Contains(stderr, "exist") {
		t.Errorf("exit %d, stderr:\n%s", code, tail(stderr, 2000))
	}
}
