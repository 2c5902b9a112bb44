package palleto

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/palleto/palleto/engine"
	"github.com/palleto/palleto/fetch"
	"github.com/palleto/palleto/process"
	"github.com/palleto/palleto/queue/queuetest"
	"github.com/palleto/palleto/store"
	"github.com/palleto/palleto/store/dir"
)

// fakeS3 serves objects by key; an object with err set fails its GETs with it.
type fakeS3 struct {
	mu   sync.Mutex
	objs map[string]fakeObject
	gets map[string]int
}

type fakeObject struct {
	body string
	err  error
}

func (f *fakeS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := aws.ToString(in.Key)
	f.gets[key]++
	o, ok := f.objs[key]
	if !ok {
		return nil, &smithy.GenericAPIError{Code: "NoSuchKey"}
	}
	if o.err != nil {
		return nil, o.err
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(strings.NewReader(o.body)), ContentLength: aws.Int64(int64(len(o.body))), ETag: aws.String(`"e-` + key + `"`)}, nil
}

// flakyStore is the directory store with failures on demand.
type flakyStore struct {
	*dir.Store
	putErr, failureErr error
}

func (s *flakyStore) Put(ctx context.Context, r store.Result, done func(error)) string {
	if s.putErr != nil {
		done(s.putErr)
		return "nowhere"
	}
	return s.Store.Put(ctx, r, done)
}

func (s *flakyStore) PutFailure(ctx context.Context, f store.Failure) (string, error) {
	if s.failureErr != nil {
		return "", s.failureErr
	}
	return s.Store.PutFailure(ctx, f)
}

// procByKey: keys starting "fail" make the processor fail (retryable), "reject" fail
// permanently, "panic" panic; others are counted as lines.
type procByKey struct{}

func (procByKey) Name() string { return "lines" }
func (procByKey) Process(ctx context.Context, o process.Object, r io.Reader) (process.Fields, error) {
	switch {
	case strings.HasPrefix(o.Key, "fail"):
		return nil, errors.New("exec: exit status 1")
	case strings.HasPrefix(o.Key, "reject"):
		return nil, fmt.Errorf("%w: exit 65", process.ErrPermanent)
	case strings.HasPrefix(o.Key, "panic"):
		panic("processor bug")
	}
	return process.Lines{}.Process(ctx, o, r)
}

type rig struct {
	d    *Daemon
	src  *queuetest.Fake
	s3   *fakeS3
	st   *flakyStore
	logs *bytes.Buffer
}

// newRig returns a daemon on fakes; wrap, when given, puts an S3 of the test's in front of the
// fake one.
func newRig(t *testing.T, objs map[string]fakeObject, mutate func(*Config), wrap ...func(*fakeS3) fetch.API) *rig {
	t.Helper()
	disk, err := dir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{src: &queuetest.Fake{}, s3: &fakeS3{objs: objs, gets: map[string]int{}}, st: &flakyStore{Store: disk}, logs: &bytes.Buffer{}}
	cfg := DefaultConfig()
	cfg.SQS.QueueURL = "http://fake/1/q"
	cfg.OutDir = "unused"
	if mutate != nil {
		mutate(&cfg)
	}
	var api fetch.API = r.s3
	for _, w := range wrap {
		api = w(r.s3)
	}
	r.d, err = New(cfg, Deps{Source: r.src, S3: api, Store: r.st, Processor: procByKey{}, Logger: slog.New(slog.NewTextHandler(r.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.d.health.Close(); r.d.ack.close(); disk.Close() })
	return r
}

// event is an S3 notification of keys in bucket b; a key may carry "@sequencer" and then
// "#etag" (the eTag is "e-KEY" otherwise).
func event(keys ...string) string {
	var recs []string
	for _, k := range keys {
		key, seq, _ := strings.Cut(k, "@")
		seq, etag, _ := strings.Cut(seq, "#")
		if etag == "" {
			etag = "e-" + key
		}
		recs = append(recs, fmt.Sprintf(`{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":%q,"eTag":%q,"sequencer":%q}}}`, key, etag, seq))
	}
	return `{"Records":[` + strings.Join(recs, ",") + `]}`
}

// deliver receives the next message and handles and settles it as an engine worker does.
func (r *rig) deliver(t *testing.T, ctx context.Context) {
	t.Helper()
	msgs, _ := r.src.Receive(context.Background(), 1)
	if len(msgs) != 1 {
		t.Fatal("no message to deliver")
	}
	j := &job{m: msgs[0]}
	r.d.unsettled.Add(1) // as jobSource counts what it receives
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				err = &engine.PanicError{Value: p}
			}
		}()
		err = r.d.handle(ctx, 1, j)
	}()
	r.d.settle(j, err)
	r.d.ack.wait() // the decision is the ackers'
}

func (r *rig) failure(t *testing.T, key string) *store.Failure {
	t.Helper()
	f, err := r.st.Failure(context.Background(), "b", key, "")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

type wantRecord struct {
	class    string
	attempts int
	action   string // a prefix
}

func s3err(status int, code string) error {
	return &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: &smithy.GenericAPIError{Code: code}}
}

// TestSettleDecisions is settle's decision table: for each kind of outcome, what is done with
// the message (delete, retry after which delay, hand back, dead letter) and what is recorded.
// A failure of the world must never delete nor count; only an object's own failure counts.
func TestSettleDecisions(t *testing.T) {
	ok := fakeObject{body: "a\nb\n"}
	for _, tt := range []struct {
		name    string
		keys    []string
		objs    map[string]fakeObject
		count   int // the message's receive count
		before  map[string]store.Failure
		cfg     func(*Config)
		src     func(*queuetest.Fake)
		st      func(*flakyStore)
		cancel  bool
		events  []string
		records map[string]wantRecord // "" key: the message's own record
		none    []string              // keys that must have no failure record
		results []string              // keys that must have a result
	}{
		{name: "every object done: delete", keys: []string{"a", "b"}, objs: map[string]fakeObject{"a": ok, "b": ok},
			events: []string{"delete m1"}, results: []string{"a", "b"}, none: []string{"a", "b"}},
		{name: "missing object: recorded permanent, deleted", keys: []string{"gone"}, objs: map[string]fakeObject{},
			events: []string{"delete m1"}, records: map[string]wantRecord{"gone": {"permanent", 1, "deleted"}}},
		{name: "missing object with a DLQ: dead-lettered first", keys: []string{"gone"}, objs: map[string]fakeObject{},
			src:    func(f *queuetest.Fake) { f.DLQ = true },
			events: []string{"dead-letter m1", "delete m1"}, records: map[string]wantRecord{"gone": {"permanent", 1, "dead-lettered"}}},
		{name: "dead-letter send fails: kept, nothing recorded as dead-lettered", keys: []string{"gone"}, objs: map[string]fakeObject{},
			src:    func(f *queuetest.Fake) { f.DLQ, f.DeadLetterErr = true, errors.New("sqs down") },
			events: []string{"dead-letter m1", "retry m1 10s"}, none: []string{"gone"}},
		{name: "processor error: recorded retryable, retried after 10s", keys: []string{"fail1"}, objs: map[string]fakeObject{"fail1": ok},
			events: []string{"retry m1 10s"}, records: map[string]wantRecord{"fail1": {"retryable", 1, "retry in 10s"}}},
		{name: "third failure of its own: backoff doubled twice", keys: []string{"fail1"}, objs: map[string]fakeObject{"fail1": ok}, count: 3,
			before: map[string]store.Failure{"fail1": {Class: "retryable", Attempts: 2}},
			events: []string{"retry m1 40s"}, records: map[string]wantRecord{"fail1": {"retryable", 3, "retry in 40s"}}},
		{name: "poison guard counts failures of the object's own", keys: []string{"fail1"}, objs: map[string]fakeObject{"fail1": ok}, count: 9,
			before: map[string]store.Failure{"fail1": {Class: "retryable", Attempts: 4}},
			src:    func(f *queuetest.Fake) { f.DLQ = true },
			events: []string{"dead-letter m1", "delete m1"}, records: map[string]wantRecord{"fail1": {"permanent", 5, "dead-lettered"}}},
		{name: "S3 503 on the 50th receive: nothing counted, nothing deleted", keys: []string{"a"}, count: 50,
			objs:   map[string]fakeObject{"a": {err: s3err(503, "SlowDown")}},
			events: []string{"retry m1 10s"}, none: []string{"a"}},
		{name: "403 AccessDenied is the world's: kept", keys: []string{"a"}, count: 5,
			objs:   map[string]fakeObject{"a": {err: s3err(403, "AccessDenied")}},
			events: []string{"retry m1 10s"}, none: []string{"a"}},
		{name: "expired credentials: kept", keys: []string{"a"}, count: 7,
			objs:   map[string]fakeObject{"a": {err: s3err(400, "ExpiredToken")}},
			events: []string{"retry m1 10s"}, none: []string{"a"}},
		{name: "store unavailable at commit: kept", keys: []string{"a"}, objs: map[string]fakeObject{"a": ok}, count: 9,
			st:     func(s *flakyStore) { s.putErr = fmt.Errorf("%w: no space left on device", store.ErrUnavailable) },
			events: []string{"retry m1 10s"}, none: []string{"a"}},
		{name: "a failure record that cannot be written: kept", keys: []string{"gone"}, objs: map[string]fakeObject{},
			st:     func(s *flakyStore) { s.failureErr = fmt.Errorf("%w: no space left on device", store.ErrUnavailable) },
			events: []string{"retry m1 10s"}, none: []string{"gone"}},
		{name: "permanent beside retryable: both recorded, each with its class", keys: []string{"gone", "fail1"}, objs: map[string]fakeObject{"fail1": ok},
			events:  []string{"retry m1 10s"},
			records: map[string]wantRecord{"gone": {"permanent", 1, "kept"}, "fail1": {"retryable", 1, "retry in 10s"}}},
		{name: "permanent beside a failure of the world: recorded, the message waits", keys: []string{"reject1", "a"},
			objs:    map[string]fakeObject{"reject1": ok, "a": {err: s3err(500, "InternalError")}},
			events:  []string{"retry m1 10s"},
			records: map[string]wantRecord{"reject1": {"permanent", 1, "kept"}}, none: []string{"a"}},
		{name: "shutdown: handed back", keys: []string{"a"}, objs: map[string]fakeObject{"a": ok}, cancel: true,
			events: []string{"release m1"}, none: []string{"a"}},
		{name: "panic: retried, counted for the message", keys: []string{"panic1"}, objs: map[string]fakeObject{"panic1": ok},
			events: []string{"retry m1 10s"}, records: map[string]wantRecord{"": {"retryable", 1, "retry in 10s"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.objs, tt.cfg)
			if tt.src != nil {
				tt.src(r.src)
			}
			if tt.st != nil {
				tt.st(r.st)
			}
			for k, f := range tt.before {
				f.Bucket, f.Key, f.ETag, f.MessageID, f.Error = "b", k, "e-"+k, "m1", "before"
				if _, err := r.st.Store.PutFailure(context.Background(), f); err != nil {
					t.Fatal(err)
				}
			}
			r.src.SendCounted(event(tt.keys...), max(tt.count, 1))
			ctx, cancel := context.WithCancel(context.Background())
			if tt.cancel {
				cancel()
			}
			r.deliver(t, ctx)
			cancel()
			if got := r.src.Events(); !slices.Equal(got, tt.events) {
				t.Errorf("events %v, want %v\n%s", got, tt.events, r.logs)
			}
			for key, w := range tt.records {
				var f *store.Failure
				if key == "" {
					f, _ = r.st.Failure(context.Background(), "", "", "m1")
				} else {
					f = r.failure(t, key)
				}
				if f == nil || f.Class != w.class || f.Attempts != w.attempts || !strings.HasPrefix(f.Action, w.action) {
					t.Errorf("record of %q: %+v, want class %s, attempts %d, action %s...", key, f, w.class, w.attempts, w.action)
				}
			}
			for _, key := range tt.none {
				if f := r.failure(t, key); f != nil {
					t.Errorf("%s has a failure record %+v; want none", key, f)
				}
			}
			for _, key := range tt.results {
				if res, _ := r.st.Result(context.Background(), "b", key, "lines"); res == nil {
					t.Errorf("%s has no result", key)
				}
			}
		})
	}
}

// TestPermanentSiblingIsNotFetchedAgain: a permanent failure kept in its message by a retryable
// sibling is not fetched on the retry, and its record ends saying what was done.
func TestPermanentSiblingIsNotFetchedAgain(t *testing.T) {
	r := newRig(t, map[string]fakeObject{"reject1": {body: "x"}, "flaky": {err: s3err(503, "SlowDown")}}, func(c *Config) { c.RetryBackoff = 0 })
	r.src.Send(event("reject1", "flaky"))
	r.deliver(t, context.Background())
	r.s3.mu.Lock()
	r.s3.objs["flaky"] = fakeObject{body: "y\n"}
	r.s3.mu.Unlock()
	r.deliver(t, context.Background())
	if got := r.s3.gets["reject1"]; got != 1 {
		t.Errorf("the permanently failed object was fetched %d times; want once", got)
	}
	if f := r.failure(t, "reject1"); f == nil || f.Class != "permanent" || f.Action != "deleted" {
		t.Errorf("record of reject1 at the end: %+v; want permanent, deleted", f)
	}
	if got := r.src.Events(); fmt.Sprint(got) != "[retry m1 0s delete m1]" {
		t.Errorf("events %v", got)
	}
}

// TestLaterEventIsNotReplacedByAnOlderOne: the sequencer orders the events of one key; an older
// event arriving after a newer one's result is skipped, not processed over it.
func TestLaterEventIsNotReplacedByAnOlderOne(t *testing.T) {
	r := newRig(t, map[string]fakeObject{"k": {body: "new\n"}}, nil)
	r.src.Send(event("k@0000A2"))
	r.deliver(t, context.Background())
	r.s3.mu.Lock()
	r.s3.objs["k"] = fakeObject{body: "old\nold\n"}
	r.s3.mu.Unlock()
	r.src.Send(event("k@A1#e-older")) // older: A1 < 0000A2 once padded; another version
	r.deliver(t, context.Background())
	res, _ := r.st.Result(context.Background(), "b", "k", "lines")
	if res == nil || res.Sequencer != "0000A2" || fmt.Sprint(res.Fields["lines"]) != "1" || r.s3.gets["k"] != 1 {
		t.Fatalf("result %+v after %d GETs; want the later event's, and the older one never fetched", res, r.s3.gets["k"])
	}
}

// TestAnotherProcessorIsNotAlreadyDone: a result of lines does not make grep skip the object.
func TestAnotherProcessorIsNotAlreadyDone(t *testing.T) {
	r := newRig(t, map[string]fakeObject{"k": {body: "a\nb\n"}}, nil)
	r.src.Send(event("k"))
	r.deliver(t, context.Background())
	r.d.proc = mustGrep(t, "a")
	r.src.Send(event("k"))
	r.deliver(t, context.Background())
	data, _ := json.Marshal(r.s3.gets)
	res, _ := r.st.Result(context.Background(), "b", "k", "grep")
	if res == nil || r.s3.gets["k"] != 2 {
		t.Fatalf("after lines then grep: result %+v, GETs %s; want grep's result from a second GET", res, data)
	}
}

func mustGrep(t *testing.T, re string) process.Processor {
	p, err := process.NewGrep(re)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
