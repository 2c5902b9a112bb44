package main

import (
	"bytes"
	"compress/gzip"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/palleto/palleto/internal/faultproxy"
	"github.com/palleto/palleto/internal/testenv"
	statuspage "github.com/palleto/palleto/status"
	"github.com/palleto/palleto/store/dir"
)

// browser starts Debian's Chromium headless with a fresh profile (as the env skill says: no
// network of its own, no first run, no sync) and returns a tab's context, and what the page
// wrote to its console (calls, exceptions, the browser's log) so far.
func browser(t *testing.T, path string) (context.Context, func() []chromedp.ConsoleMessage) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 1100))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1")); err != nil { // starts the browser
		t.Fatalf("starting %s: %v", path, err)
	}
	var mu sync.Mutex
	var msgs []chromedp.ConsoleMessage
	console := chromedp.Console(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range console {
			if err != nil {
				return
			}
			mu.Lock()
			msgs = append(msgs, m)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-done; cancelAlloc() })
	return ctx, func() []chromedp.ConsoleMessage {
		mu.Lock()
		defer mu.Unlock()
		return append([]chromedp.ConsoleMessage(nil), msgs...)
	}
}

// incompressibleGzip is a gzip member of n random bytes: it stays about n bytes on the wire.
func incompressibleGzip(n int) []byte {
	raw := make([]byte, n)
	crand.Read(raw)
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.NoCompression)
	w.Write(raw)
	w.Close()
	return b.Bytes()
}

// TestStatusPageInChromiumMinIO is issue #27's proof, in a real browser against a daemon on
// the real servers, S3 slowed by the fault proxy so that an object stays in flight: the page
// loads with no console error, shows the object being read with its progress bar moving, a
// corrupt object in the failures with its reason, S3 down with its reason within seconds of the
// breaker opening and back after, and at the end the counts of the daemon's summary.
func TestStatusPageInChromiumMinIO(t *testing.T) {
	env := testenv.Get(t)
	chromium := testenv.Chromium(t)
	artifacts := os.Getenv("PALLETO_TEST_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	bucket := testenv.Name("page")
	queueURL := env.NotifiedBucket(t, bucket)
	s3c := env.S3()
	r := rand.New(rand.NewPCG(27, 1))
	const small = 8
	bigGz := incompressibleGzip(3 << 20)
	putObject(t, s3c, bucket, "p/big.gz", bigGz)
	for i := range small {
		gz, _ := gzipLines(r, 50+r.IntN(200), 1)
		putObject(t, s3c, bucket, fmt.Sprintf("p/small-%d.gz", i), gz)
	}
	putObject(t, s3c, bucket, "p/corrupt.gz", append([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, bytes.Repeat([]byte{0xff}, 100)...))
	testenv.WaitForMessages(t, env.SQS(), queueURL, small+2, time.Minute)
	// Every GET stream at 256 KiB/s: the 3 MiB object takes about 12 s to read.
	proxy, err := faultproxy.Start(faultproxy.Config{Target: strings.TrimPrefix(env.S3Endpoint, "http://"), Bandwidth: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	addr := freeAddr(t)
	out := t.TempDir()
	cmd, stderr := startPalleto(t, append(env.AWSEnv(), "AWS_ENDPOINT_URL_S3="+proxy.URL()), "run", "--queue-url", queueURL, "--out", out,
		"--workers", "2", "--wait-time", "1s", "--retry-backoff", "1s", "--metrics-addr", addr, "--log-format", "json")
	page := "http://" + addr + "/"
	for deadline := time.Now().Add(30 * time.Second); status(addr, "/healthz") != 200; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon does not serve %s:\n%s", addr, tail(stderr.String(), 3000))
		}
	}

	ctx, console := browser(t, chromium)
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			shot(t, ctx, artifacts, "failed")
			t.Fatalf("%s: %v\ndaemon log:\n%s", what, err, tail(stderr.String(), 3000))
		}
	}
	// poll waits for a JavaScript predicate on the page, re-rendered every 2 s, to hold.
	poll := func(what, predicate string) {
		t.Helper()
		step(what, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(90*time.Second))(ctx, tg)
			return err
		}))
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	step("load the page", chromedp.Navigate(page), chromedp.WaitVisible(chromedp.CSS("#counts")))

	// The object in flight, its bar moving.
	big := `document.querySelector('#in-flight tr[data-key="p/big.gz"]')`
	poll("the big object in flight, being read", big+` && +`+big+`.dataset.bytesRead > 0`)
	read1, pct1 := eval(big+`.dataset.bytesRead`), eval(`String(`+big+`.querySelector("progress").value)`)
	if size := eval(big + `.dataset.size`); size != strconv.Itoa(len(bigGz)) {
		t.Errorf("p/big.gz shown of size %s, want %d", size, len(bigGz))
	}
	poll("the big object's progress moving", big+` && +`+big+`.dataset.bytesRead > `+read1+` && `+big+`.querySelector("progress").value > `+pct1)
	read2, pct2 := eval(big+`.dataset.bytesRead`), eval(`String(`+big+`.querySelector("progress").value)`)
	t.Logf("p/big.gz in flight: %s bytes read (%s%%), then %s (%s%%)", read1, pct1, read2, pct2)

	// The corrupt object in the failures, with the error its failure record holds.
	corrupt := `document.querySelector('#failures tr[data-key="p/corrupt.gz"]')`
	poll("the corrupt object in the failures", corrupt)
	shot(t, ctx, artifacts, "status-in-flight")
	rec, err := os.ReadFile(filepath.Join(out, dir.FailedDir, dir.Path(bucket, "p/corrupt.gz")))
	if err != nil {
		t.Fatalf("no failure record of p/corrupt.gz: %v", err)
	}
	var failure struct{ Error, Class string }
	json.Unmarshal(rec, &failure)
	shown := eval(corrupt + `.innerText`)
	if !strings.Contains(shown, failure.Error) || !strings.Contains(shown, "object: permanent") || !strings.Contains(shown, "corrupt compressed data") {
		t.Errorf("the failures list shows %q; the record says %q (%s)", shown, failure.Error, failure.Class)
	}
	poll("every good object done", `document.querySelector('#counts [data-count="done"] b').textContent === "`+strconv.Itoa(small+1)+`"`)

	// S3 down: shown with its reason within seconds of the breaker opening; then back.
	proxy.SetDown(true)
	for i := range 4 {
		gz, _ := gzipLines(r, 100, 1)
		putObject(t, s3c, bucket, fmt.Sprintf("p/during-outage-%d.gz", i), gz)
	}
	// The breaker keys S3 by bucket: the row is "S3 (<bucket>)", so one bucket that is down is
	// told apart from the others.
	s3Name := "S3 (" + bucket + ")"
	s3Row := `document.querySelector('#dependencies tr[data-name="` + s3Name + `"]')`
	poll("S3 shown down", s3Row+` && `+s3Row+`.dataset.up === "false"`)
	seen := time.Now()
	reason := eval(s3Row + `.innerText`)
	var st statuspage.Status
	if err := json.Unmarshal([]byte(get(t, page+"status.json")), &st); err != nil {
		t.Fatal(err)
	}
	for _, d := range st.Dependencies {
		if d.Name == s3Name {
			t.Logf("S3 down since %s (breaker), seen on the page %s later: %s", d.Since.Format(time.TimeOnly), seen.Sub(d.Since).Round(time.Millisecond), reason)
			if lag := seen.Sub(d.Since); d.Up || lag > 5*time.Second {
				t.Errorf("S3 shown down %s after the breaker opened (up %v), want within 5s", lag, d.Up)
			}
		}
	}
	if !strings.Contains(reason, "DOWN") || !strings.Contains(reason, s3Name+" unreachable since") || !regexp.MustCompile(`S3 unavailable|connection reset|refused|EOF`).MatchString(reason) {
		t.Errorf("the S3 row says %q: want DOWN and why", reason)
	}
	if h := eval(`document.querySelector("#health").textContent`); h != "degraded" {
		t.Errorf("health %q while S3 is down", h)
	}
	shot(t, ctx, artifacts, "status-s3-down")
	proxy.SetDown(false)
	poll("S3 shown up again", s3Row+` && `+s3Row+`.dataset.up === "true"`)
	poll("the objects of the outage done", `document.querySelector('#counts [data-count="done"] b').textContent === "`+strconv.Itoa(small+5)+`"`)
	poll("nothing in flight", `document.querySelectorAll('#in-flight tbody tr').length === 0`)
	shot(t, ctx, artifacts, "status-end")

	// The counts are the summary's.
	counts := map[string]string{}
	for _, k := range []string{"received", "done", "already_done", "failed", "retried", "dead_lettered", "skipped"} {
		counts[k] = eval(`document.querySelector('#counts [data-count="` + k + `"] b').textContent`)
	}
	var bad []string
	for _, m := range console() {
		if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning {
			bad = append(bad, m.String()+" at "+m.URL)
		}
	}
	if len(bad) > 0 {
		t.Errorf("the page's console says:\n%s", strings.Join(bad, "\n"))
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("palleto run: %v\n%s", err, tail(stderr.String(), 3000))
	}
	m := regexp.MustCompile(`palleto: (\d+) objects processed \((\d+) already done, (\d+) failed`).FindStringSubmatch(stderr.String())
	if m == nil {
		t.Fatalf("no summary:\n%s", tail(stderr.String(), 2000))
	}
	if counts["done"] != m[1] || counts["already_done"] != m[2] || counts["failed"] != m[3] {
		t.Errorf("the page counts %v; the summary says %s", counts, m[0])
	}
	if counts["done"] != strconv.Itoa(small+5) || counts["failed"] != "1" || counts["received"] == "0" {
		t.Errorf("the page counts %v: want %d done, 1 failed", counts, small+5)
	}
	t.Logf("page counts %v; summary %q; screenshots in %s", counts, m[0], artifacts)
}

// shot saves a screenshot of the page as NAME.png in dir.
func shot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), img, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
	}
}

// get returns the body of a GET of url.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}
