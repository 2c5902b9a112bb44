package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a Status that remembers what it was told.
type recorder struct {
	told []string
	read atomic.Int64
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	io.WriteString(w, "page at "+req.URL.Path)
}
func (r *recorder) ObjectBegan(worker int, bucket, key string, size int64) {
	r.told = append(r.told, "began "+bucket+"/"+key)
}
func (r *recorder) ObjectReading(worker int, size int64) *atomic.Int64 { return &r.read }
func (r *recorder) ObjectEnded(worker int)                             { r.told = append(r.told, "ended") }
func (r *recorder) Failure(bucket, key, class, err, action string) {
	r.told = append(r.told, "failure "+key+" "+class+" "+err+" "+action)
}
func (r *recorder) DependencyChanged(name string, up bool, reason string) {
	state := "up"
	if !up {
		state = "down"
	}
	r.told = append(r.told, name+" "+state+" "+reason)
}

// The status is told what the daemon's calls say, and served at / beside /metrics.
func TestStatusIsToldAndServed(t *testing.T) {
	m := New()
	r := &recorder{}
	m.SetStatus(r)
	m.Working(1, "b", "k", 10)
	if got := m.Reading(1, 10); got != &r.read {
		t.Error("Reading does not hand out the status's counter")
	}
	m.Idle(1)
	m.Failure("b", "k", "permanent", "gzip: invalid header", "deleted")
	m.DependencyChanged("results store", true, errors.New("disk full"))
	m.DependencyChanged("results store", false, nil)
	want := []string{"began b/k", "ended", "failure k permanent gzip: invalid header deleted", "results store down disk full", "results store up "}
	if strings.Join(r.told, "|") != strings.Join(want, "|") {
		t.Errorf("told %q, want %q", r.told, want)
	}
	srv := httptest.NewServer(m.Handler(nil))
	defer srv.Close()
	for path, want := range map[string]string{"/": "page at /", "/status.json": "page at /status.json", "/metrics": `palleto_dependency_up{dependency="results_store"} 1`} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("%s: no %q in %.300s", path, want, body)
		}
	}
}

// Without a status (or without metrics) the calls do nothing, and / is not served.
func TestNoStatusCostsNothing(t *testing.T) {
	var none *Metrics
	none.Working(1, "b", "k", 1)
	none.Failure("b", "k", "c", "e", "a")
	none.DependencyChanged("S3", true, errors.New("x"))
	none.QueueDepth(1, 2)
	none.MessageWaited(time.Now(), time.Now())
	none.GetAnswered(time.Second, nil)
	if none.Reading(1, 1) != nil || none.Counts() != (Counts{}) {
		t.Error("a nil Metrics gave something")
	}
	m := New()
	if m.Reading(1, 1) != nil {
		t.Error("a counter without a status page")
	}
	allocs := testing.AllocsPerRun(100, func() { m.Working(1, "b", "k", 1); m.Idle(1) })
	if allocs != 0 {
		t.Errorf("%v allocations per object without a status page", allocs)
	}
	srv := httptest.NewServer(m.Handler(nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("/ without a status page: %d, want 404", resp.StatusCode)
	}
}

// The counters the page shows beside the daemon's own counts, and the queue gauges.
func TestCountsAndQueueGauges(t *testing.T) {
	m := New()
	m.Received(7, nil)
	m.Received(0, errors.New("x"))
	m.Returned("retry", 2)
	m.Returned("shutdown", 5)
	m.DeadLettered()
	if got := m.Counts(); got != (Counts{Received: 7, Retried: 2, DeadLettered: 1}) {
		t.Errorf("counts %+v", got)
	}
	m.QueueDepth(12, 3)
	m.GetAnswered(20*time.Millisecond, nil)
	m.GetAnswered(time.Second, errors.New("refused"))
	body := scrapeText(t, m)
	for _, want := range []string{`palleto_queue_messages{state="visible"} 12`, `palleto_queue_messages{state="in_flight"} 3`,
		"palleto_s3_get_seconds_count 1", "palleto_result_lag_seconds_count 0", "palleto_queue_oldest_message_age_seconds 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in /metrics", want)
		}
	}
}

// The oldest message age is the longest wait of the messages received in the last minute.
func TestOldestWaitOverTheLastMinute(t *testing.T) {
	var w waitWindow
	if _, ok := w.max(time.Now()); ok {
		t.Error("ok before any message told its sent time")
	}
	t0 := time.Unix(1_000_000, 0)
	w.add(t0, 90*time.Second)
	w.add(t0.Add(5*time.Second), 10*time.Second)
	w.add(t0.Add(20*time.Second), 30*time.Second)
	for _, c := range []struct {
		at   time.Duration
		want time.Duration
	}{{20 * time.Second, 90 * time.Second}, {59 * time.Second, 90 * time.Second}, {60 * time.Second, 30 * time.Second}, {79 * time.Second, 30 * time.Second}, {80 * time.Second, 0}} {
		if got, ok := w.max(t0.Add(c.at)); got != c.want || !ok {
			t.Errorf("at +%s: %s %v, want %s", c.at, got, ok, c.want)
		}
	}
	m := New()
	sent := time.Now().Add(-42 * time.Second)
	m.MessageWaited(sent, sent.Add(42*time.Second))
	m.MessageWaited(time.Time{}, time.Now()) // a source that does not tell
	if age, ok := m.OldestWait(); !ok || age != 42*time.Second {
		t.Errorf("oldest %s %v, want 42s", age, ok)
	}
	if body := scrapeText(t, m); !strings.Contains(body, "palleto_queue_oldest_message_age_seconds 42") {
		t.Error("the gauge does not say 42")
	}
}

func scrapeText(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}
