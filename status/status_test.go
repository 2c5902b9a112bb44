package status

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t atomic.Int64 }

func (c *fakeClock) now() time.Time                { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) add(d time.Duration) time.Time { return time.Unix(0, c.t.Add(int64(d))) }

func newTracker(t *testing.T, counts *Counts) (*Tracker, *fakeClock) {
	t.Helper()
	tr := New(Config{Version: "v1.2.3", Inflate: "go", Source: "amqp://palleto:hunter2@127.0.0.1:5672/?queue=q&token=s3cr3t",
		Store: "postgres://palleto:pgpass@127.0.0.1/db", Dependencies: []string{"S3", "results store", "sqs"},
		Counts: func() Counts { return *counts }}) // read on the test's goroutine only
	clock := &fakeClock{}
	clock.t.Store(tr.started.UnixNano())
	tr.now = clock.now
	return tr, clock
}

// The objects in flight are those begun and not ended, by worker, with the bytes their reader
// stored in the counter the tracker handed out.
func TestInFlightShowsBytesReadPerWorker(t *testing.T) {
	tr, clock := newTracker(t, &Counts{})
	tr.ObjectBegan(2, "logs", "a/b c.gz", 0)
	tr.ObjectBegan(1, "logs", "first.gz", 100)
	read := tr.ObjectReading(2, 4000)
	read.Store(1500)
	clock.add(3 * time.Second)
	s := tr.Snapshot()
	want := []Object{
		{Bucket: "logs", Key: "first.gz", Worker: 1, Size: 100, StartedAt: tr.started.UTC()},
		{Bucket: "logs", Key: "a/b c.gz", Worker: 2, BytesRead: 1500, Size: 4000, StartedAt: tr.started.UTC()},
	}
	if !slices.Equal(s.InFlight, want) {
		t.Fatalf("in flight:\n%+v\nwant\n%+v", s.InFlight, want)
	}
	read.Store(4000)
	tr.ObjectEnded(1)
	s = tr.Snapshot()
	if len(s.InFlight) != 1 || s.InFlight[0].Worker != 2 || s.InFlight[0].BytesRead != 4000 {
		t.Fatalf("after worker 1 ended and worker 2 read all: %+v", s.InFlight)
	}
	// The next object of a worker starts from 0 bytes read.
	tr.ObjectBegan(2, "logs", "next.gz", 10)
	if s := tr.Snapshot(); s.InFlight[0].Key != "next.gz" || s.InFlight[0].BytesRead != 0 {
		t.Fatalf("worker 2's next object: %+v", s.InFlight)
	}
	if tr.ObjectReading(9, 1) != nil || tr.ObjectReading(0, 1) != nil {
		t.Error("a counter for a worker that began no object")
	}
	tr.ObjectBegan(0, "b", "k", 1) // not a worker number: ignored
	tr.ObjectEnded(7)
	if n := len(tr.Snapshot().InFlight); n != 1 {
		t.Errorf("%d in flight, want 1", n)
	}
}

// The failures list keeps the last 50, newest first, with their secrets removed.
func TestFailuresKeepTheLast50NewestFirst(t *testing.T) {
	tr, clock := newTracker(t, &Counts{})
	for i := range 60 {
		clock.add(time.Second)
		tr.Failure("b", fmt.Sprintf("k%02d", i), "permanent", fmt.Sprintf("decode s3://b/k%02d: gzip: invalid header", i), "deleted")
	}
	s := tr.Snapshot()
	if len(s.Failures) != 50 {
		t.Fatalf("%d failures, want the last 50", len(s.Failures))
	}
	if s.Failures[0].Key != "k59" || s.Failures[49].Key != "k10" || !s.Failures[0].At.After(s.Failures[1].At) {
		t.Errorf("newest %s, oldest %s; want k59 first and k10 last", s.Failures[0].Key, s.Failures[49].Key)
	}
	tr.Failure("", "", "permanent", `source amqp://u:hunter2@h:5672/v?dlq=d: dial: refused; presigned https://b.s3/k?X-Amz-Signature=abc123&X-Amz-Credential=AKIA`+strings.Repeat("x", 3000), "dead-lettered")
	f := tr.Snapshot().Failures[0]
	for _, secret := range []string{"hunter2", "abc123", "AKIA"} {
		if strings.Contains(f.Error, secret) {
			t.Errorf("the failure shows %q: %s", secret, f.Error)
		}
	}
	if !strings.Contains(f.Error, "amqp://u:xxxxx@h:5672/v?dlq=d") || len(f.Error) > maxError+3 {
		t.Errorf("error text %d bytes: %.200s", len(f.Error), f.Error)
	}
}

// A dependency is up from the start; down, it says why (without secrets) and since when; back,
// it is up since then with no reason.
func TestDependenciesSayWhyAndSince(t *testing.T) {
	tr, clock := newTracker(t, &Counts{})
	s := tr.Snapshot()
	if len(s.Dependencies) != 3 || !s.Dependencies[0].Up || s.Dependencies[0].Name != "S3" || !s.Dependencies[0].Since.Equal(tr.started) {
		t.Fatalf("at start: %+v", s.Dependencies)
	}
	down := clock.add(time.Minute)
	tr.DependencyChanged("S3", false, `operation error S3: GetObject: Get "http://127.0.0.1:9/b/k?x-id=GetObject": dial tcp 127.0.0.1:9: connect: connection refused`)
	tr.DependencyChanged("kafka", false, "kafka://u:pw@b1/t: no broker")
	s = tr.Snapshot()
	d := s.Dependencies[0]
	if d.Up || !d.Since.Equal(down) || !strings.Contains(d.Reason, "connection refused") {
		t.Errorf("S3 down: %+v", d)
	}
	if k := s.Dependencies[3]; k.Name != "kafka" || k.Up || strings.Contains(k.Reason, "pw") {
		t.Errorf("a dependency first heard of when down: %+v", k)
	}
	back := clock.add(time.Minute)
	tr.DependencyChanged("S3", true, "ignored")
	if d := tr.Snapshot().Dependencies[0]; !d.Up || !d.Since.Equal(back) || d.Reason != "" {
		t.Errorf("S3 back: %+v", d)
	}
}

// Rates are over the last minute of samples, history holds what each step did, for 15 minutes.
func TestRateAndHistoryFromCounters(t *testing.T) {
	c := &Counts{}
	tr, clock := newTracker(t, c)
	set := func(done, bytes int64) { c.Done, c.Bytes = done, bytes }
	// 10 objects (1 MB) per 10-second step for 2 minutes, then nothing for 30 s.
	var done int64
	for range 12 {
		done += 10
		set(done, done*100_000)
		tr.sample(clock.add(10 * time.Second))
	}
	s := tr.Snapshot()
	if s.Rate.ObjectsPerSecond != 1 || s.Rate.BytesPerSecond != 100_000 {
		t.Errorf("rate %+v, want 1 object/s and 100 kB/s", s.Rate)
	}
	if len(s.History) != 12 || s.History[0].Objects != 10 || s.History[11].Bytes != 1_000_000 || !s.History[11].At.Equal(clock.now().UTC()) {
		t.Errorf("history %+v", s.History)
	}
	for range 3 {
		tr.sample(clock.add(10 * time.Second))
	}
	if s := tr.Snapshot(); s.Rate.ObjectsPerSecond != 0.5 || s.History[len(s.History)-1].Objects != 0 {
		t.Errorf("30 s of nothing after 30 s of 1/s: rate %+v, last point %+v; want 0.5/s and 0", s.Rate, s.History[len(s.History)-1])
	}
	for range 100 {
		tr.sample(clock.add(10 * time.Second))
	}
	if s := tr.Snapshot(); len(s.History) != 90 || s.Rate.ObjectsPerSecond != 0 {
		t.Errorf("after 20 minutes: %d points (want 90: 15 minutes), rate %v", len(s.History), s.Rate)
	}
}

// The queue's depth is asked at start and every step; a failed ask keeps the last answer, and
// nothing known is null.
func TestQueueDepthAndOldestAge(t *testing.T) {
	var calls atomic.Int64
	asked := make(chan struct{}, 10)
	tr := New(Config{Depth: func(ctx context.Context) (int, int, error) {
		defer func() { asked <- struct{}{} }()
		if calls.Add(1) > 1 {
			return 0, 0, fmt.Errorf("sqs GetQueueAttributes: timeout")
		}
		if _, ok := ctx.Deadline(); !ok {
			t.Error("Depth is called without a deadline")
		}
		return 7, 3, nil
	}, Step: time.Millisecond})
	if q := tr.Snapshot().Queue; q.Visible != nil || q.InFlight != nil || q.OldestAgeSeconds != nil {
		t.Errorf("before any answer: %+v, want nulls", q)
	}
	stop := tr.Start(context.Background())
	<-asked
	<-asked
	stop()
	q := tr.Snapshot().Queue
	if q.Visible == nil || *q.Visible != 7 || *q.InFlight != 3 || q.OldestAgeSeconds != nil {
		t.Errorf("queue %+v", q)
	}
	tr.cfg.OldestAge = func() (time.Duration, bool) { return 90 * time.Second, true }
	if q := tr.Snapshot().Queue; q.OldestAgeSeconds == nil || *q.OldestAgeSeconds != 90 {
		t.Errorf("oldest age %v, want 90", q.OldestAgeSeconds)
	}
}

// /status.json has exactly the field names of DESIGN.md's "Seeing it" (and added ones), and
// no secret.
func TestStatusJSONContract(t *testing.T) {
	tr, _ := newTracker(t, &Counts{Received: 5, Done: 3})
	tr.ObjectBegan(1, "b", "k", 10)
	tr.Failure("b", "bad.gz", "permanent", "gzip: invalid header", "deleted")
	tr.sample(tr.now().Add(10 * time.Second))
	srv := httptest.NewServer(tr.Handler())
	defer srv.Close()
	body, resp := get(t, srv.URL+"/status.json")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	keys := func(v any) []string {
		m, _ := v.(map[string]any)
		var k []string
		for name := range m {
			k = append(k, name)
		}
		sort.Strings(k)
		return k
	}
	first := func(v any) any {
		if a, ok := v.([]any); ok && len(a) > 0 {
			return a[0]
		}
		return nil
	}
	for _, c := range []struct {
		what string
		v    any
		want []string
	}{
		{"top", doc, []string{"version", "inflate", "source", "store", "started_at", "uptime_seconds", "counts", "rate", "history", "in_flight", "queue", "dependencies", "failures"}},
		{"counts", doc["counts"], []string{"received", "done", "already_done", "failed", "retried", "dead_lettered", "skipped"}},
		{"rate", doc["rate"], []string{"objects_per_second", "bytes_per_second"}},
		{"history", first(doc["history"]), []string{"at", "objects", "bytes"}},
		{"in_flight", first(doc["in_flight"]), []string{"bucket", "key", "worker", "bytes_read", "size", "started_at"}},
		{"queue", doc["queue"], []string{"visible", "in_flight", "oldest_age_seconds"}},
		{"dependencies", first(doc["dependencies"]), []string{"name", "up", "since", "reason"}},
		{"failures", first(doc["failures"]), []string{"at", "bucket", "key", "class", "error", "action"}},
	} {
		got := keys(c.v)
		for _, k := range c.want {
			if !slices.Contains(got, k) {
				t.Errorf("%s: no field %q (has %v)", c.what, k, got)
			}
		}
	}
	for _, secret := range []string{"hunter2", "s3cr3t", "pgpass"} {
		if strings.Contains(body, secret) {
			t.Errorf("/status.json shows the secret %q", secret)
		}
	}
	if doc["source"] != "amqp://palleto:xxxxx@127.0.0.1:5672/?queue=q&token=xxxxx" {
		t.Errorf("source %v", doc["source"])
	}
}

// The page is served with its script and style from the binary, escapes what it shows, and
// refuses writes.
func TestPageServedFromTheBinary(t *testing.T) {
	tr, _ := newTracker(t, &Counts{Done: 42})
	tr.ObjectBegan(1, "b", `<script>alert(1)</script>.gz`, 10)
	srv := httptest.NewServer(tr.Handler())
	defer srv.Close()
	body, resp := get(t, srv.URL+"/")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("no CSP: %q", resp.Header.Get("Content-Security-Policy"))
	}
	if strings.Contains(body, "<script>alert(1)") || !strings.Contains(body, "&lt;script&gt;alert(1)") {
		t.Error("the key is not escaped in the page")
	}
	if !strings.Contains(body, `data-count="done"><b>42</b>`) || strings.Contains(body, "http://") || strings.Contains(body, "https://") {
		t.Errorf("the page does not show the count, or loads something from elsewhere:\n%s", body)
	}
	for path, ctype := range map[string]string{"/status.js": "text/javascript", "/status.css": "text/css"} {
		body, resp := get(t, srv.URL+path)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) < 1000 {
			t.Errorf("%s: %d %s, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
	}
	if _, resp := get(t, srv.URL+"/favicon.ico"); resp.StatusCode != 404 {
		t.Errorf("/favicon.ico: %d, want 404", resp.StatusCode)
	}
	resp, err := http.Post(srv.URL+"/status.json", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", resp.StatusCode)
	}
}

// The terminal screen says the same things.
func TestRenderForTheTerminal(t *testing.T) {
	tr, _ := newTracker(t, &Counts{Received: 12, Done: 9, Failed: 1})
	tr.ObjectBegan(3, "logs", "big.gz", 2_000_000)
	tr.ObjectReading(3, 0).Store(1_000_000)
	tr.DependencyChanged("S3", false, "dial tcp 127.0.0.1:9: connect: connection refused")
	tr.Failure("logs", "bad.gz", "permanent", "gzip: invalid\nheader", "deleted")
	var b strings.Builder
	Render(&b, tr.Snapshot(), 120)
	out := b.String()
	for _, want := range []string{"DEGRADED", "received 12 · done 9", "failed 1", "S3", "DOWN", "connection refused",
		"w3", "[##########          ]  50%  1.0 MB of 2.0 MB", "logs/big.gz", "logs/bad.gz  object: permanent  -> deleted\n            gzip: invalid header",
		"waiting ? · in flight ?", "amqp://palleto:xxxxx@"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if n := len([]rune(l)); n > 120 {
			t.Errorf("a line of %d columns: %s", n, l)
		}
	}
}

func TestHumanUnits(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{HumanBytes(999), "999 B"}, {HumanBytes(1500), "1.5 kB"}, {HumanBytes(2_500_000_000), "2.5 GB"},
		{HumanDuration(45 * time.Second), "45s"}, {HumanDuration(192 * time.Second), "3m12s"},
		{HumanDuration(2*time.Hour + 5*time.Minute), "2h05m"}, {HumanDuration(-time.Second), "0s"},
	} {
		if c.got != c.want {
			t.Errorf("%q, want %q", c.got, c.want)
		}
	}
}

func get(t *testing.T, url string) (string, *http.Response) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body), resp
}

// BenchmarkObjectBookkeeping is what the tracker costs per object with the page on: began,
// reading (8 reads stored), ended, on 8 workers at once.
func BenchmarkObjectBookkeeping(b *testing.B) {
	tr := New(Config{})
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		w := int(next.Add(1)%8) + 1
		for pb.Next() {
			tr.ObjectBegan(w, "bucket", "key", 1024)
			n := tr.ObjectReading(w, 1024)
			for i := range int64(8) {
				n.Store(i * 128)
			}
			tr.ObjectEnded(w)
		}
	})
}

// BenchmarkRefresh is what one refresh of an open page costs the daemon: a snapshot of 8
// objects in flight and 50 failures, as JSON.
func BenchmarkRefresh(b *testing.B) {
	tr := New(Config{Dependencies: []string{"S3", "results store", "sqs"}})
	for w := 1; w <= 8; w++ {
		tr.ObjectBegan(w, "bucket", fmt.Sprintf("logs/2026/12/03/%d.gz", w), 1<<20)
	}
	for i := range 50 {
		tr.Failure("bucket", fmt.Sprint(i), "permanent", strings.Repeat("corrupt compressed data ", 8), "deleted")
	}
	for range 90 {
		tr.sample(time.Now())
	}
	srv := tr.Handler()
	b.ReportAllocs()
	for b.Loop() {
		srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/status.json", nil))
	}
}
