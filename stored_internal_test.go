package palleto

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/palleto/palleto/metrics"
	"github.com/palleto/palleto/store"
)

// deciding is the rig's store as one that decides at commit, as SQLite, PostgreSQL and S3 do.
type deciding struct{ store.Store }

func (deciding) DecidesAtCommit() bool { return true }

// TestFirstDeliveryIsDecidedAtCommit: with a store that decides at commit, a first delivery is
// not looked up before its GET. A duplicate first delivery of one event is fetched again, never
// stored twice, and counted and logged as already done, not as processed; an older event's first
// delivery never replaces a newer result; a redelivery looks first and is not fetched.
func TestFirstDeliveryIsDecidedAtCommit(t *testing.T) {
	r := newRig(t, map[string]fakeObject{"k": {body: "a\nb\n"}}, nil)
	r.d.store = deciding{r.st}
	r.d.met = metrics.New()
	ctx := context.Background()
	r.src.Send(event("k@0000A2"))
	r.deliver(t, ctx)
	r.src.Send(event("k@0000A2")) // S3 delivered the same event twice
	r.deliver(t, ctx)
	res, _ := r.st.Result(ctx, "b", "k", "lines")
	if res == nil || res.MessageID != "m1" || r.s3.gets["k"] != 2 {
		t.Fatalf("after a duplicate first delivery: result %+v after %d GETs; want m1's result, and 2 GETs", res, r.s3.gets["k"])
	}
	if got := fmt.Sprint(r.src.Events()); got != "[delete m1 delete m2]" {
		t.Fatalf("events %s; want both messages deleted", got)
	}
	r.s3.mu.Lock()
	r.s3.objs["k"] = fakeObject{body: "old\nold\nold\n"}
	r.s3.mu.Unlock()
	r.src.Send(event("k@A1")) // older: A1 < 0000A2 once padded
	r.deliver(t, ctx)
	res, _ = r.st.Result(ctx, "b", "k", "lines")
	if res == nil || res.Sequencer != "0000A2" || fmt.Sprint(res.Fields["lines"]) != "2" {
		t.Fatalf("an older event's first delivery replaced the result: %+v", res)
	}
	r.src.SendCounted(event("k@0000A2"), 2) // a redelivery
	r.deliver(t, ctx)
	if r.s3.gets["k"] != 3 {
		t.Fatalf("%d GETs; want 3: a redelivery is looked up first, and not fetched", r.s3.gets["k"])
	}
	s := r.d.Stats()
	if s.Objects != 1 || s.AlreadyDone != 3 || s.Lines != 2 {
		t.Fatalf("summary %+v; want 1 object (2 lines), 3 already done", s)
	}
	if got := fmt.Sprint(r.src.Events()); got != "[delete m1 delete m2 delete m3 delete m4]" {
		t.Fatalf("events %s; want every message deleted", got)
	}
	logs := r.logs.String()
	if n := strings.Count(logs, `msg="object processed"`); n != 1 {
		t.Errorf("%d 'object processed' lines; want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, `why="already has a result for this version (found at commit)"`); n != 1 {
		t.Errorf("%d duplicates found at commit in the log; want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, `why="has a result of a later event (found at commit)"`); n != 1 {
		t.Errorf("%d older events found at commit in the log; want 1:\n%s", n, logs)
	}
	if n := strings.Count(logs, `outcome=already_done`); n != 3 {
		t.Errorf("%d already_done lines; want 3:\n%s", n, logs)
	}
	w := httptest.NewRecorder()
	r.d.met.Handler(nil).ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(w.Body)
	for _, want := range []string{`palleto_objects_processed_total{outcome="ok"} 1`, `palleto_objects_processed_total{outcome="already_done"} 3`,
		`palleto_objects_in_flight 0`, `palleto_object_duration_seconds_count 4`} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("metrics: no %q", want)
		}
	}
}
