package palleto_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/notify"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/queue/queuetest"
	"github.com/palleto/palleto/store/dir"
)

// memSource is queuetest.Fake registered as the "mem" source, with the optional Depther and
// Checker; opened records the Options the daemon gave its opener.
type memSource struct {
	*queuetest.Fake
	checkErr error
}

func (m memSource) Depth(context.Context) (visible, inFlight int, err error) { return 7, 3, nil }
func (m memSource) Check(context.Context) error                              { return m.checkErr }

var (
	memMu     sync.Mutex
	memFakes  = map[string]memSource{} // by the URL's host
	memOpened queue.Options
)

func init() {
	queue.Register("mem", "mem", nil, func(_ context.Context, u *url.URL, opts queue.Options) (queue.Source, error) {
		memMu.Lock()
		defer memMu.Unlock()
		memOpened = opts
		src, ok := memFakes[u.Host]
		if !ok {
			return nil, errors.New("mem: no such queue " + u.Host)
		}
		return src, nil
	})
}

func TestValidateTheSourceSettings(t *testing.T) {
	base := palleto.DefaultConfig()
	for _, tt := range []struct {
		source, queueURL, dlq string
		want                  string // "" for valid
	}{
		{"", "", "", "queue-url: required"},
		{"", "https://sqs.us-east-1.amazonaws.com/123456789012/q", "", ""},
		{"mem://q", "", "", ""},
		{"https://sqs.us-east-1.amazonaws.com/123456789012/q", "", "", ""},
		{"mem://q", "mem://q", "", ""}, // the same source spelled twice
		{"mem://q", "https://sqs.us-east-1.amazonaws.com/123456789012/q", "", "name two sources"},
		{"bogus://q", "", "", `no source for scheme "bogus"`},
		{"mem://q", "", "https://sqs.us-east-1.amazonaws.com/123456789012/dlq", "dlq-url"},
		{"https://sqs.us-east-1.amazonaws.com/123456789012/q", "", "https://sqs.us-east-1.amazonaws.com/123456789012/dlq", ""},
	} {
		cfg := base
		cfg.Source, cfg.SQS.QueueURL, cfg.DLQURL = tt.source, tt.queueURL, tt.dlq
		err := cfg.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("source %q, queue-url %q, dlq-url %q: %v, want %q", tt.source, tt.queueURL, tt.dlq, err, tt.want)
		}
	}
}

// TestSourceOpenedByURL: with --source, the daemon opens the source through the registry with
// its own settings (no SQS client at all), names it in its start log, asks it for depth and
// checks it at start, and processes what it delivers to the end.
func TestSourceOpenedByURL(t *testing.T) {
	st, s3c, _ := stack(t)
	out := t.TempDir()
	put(t, s3c, st.Bucket, "a/one.txt", "1\n2\n3\n")
	fake := &queuetest.Fake{}
	fake.Send(notify.Body(notify.Record{EventName: "ObjectCreated:Put", Bucket: st.Bucket, Key: "a/one.txt", Size: 6}, "test", "test"))
	memMu.Lock()
	memFakes["opened"] = memSource{Fake: fake}
	memFakes["refuses"] = memSource{Fake: &queuetest.Fake{}, checkErr: errors.New("consumer: no such consumer C")}
	memMu.Unlock()

	cfg := config(st, out)
	cfg.SQS.QueueURL = ""
	cfg.Source = "mem://opened?token=s3cret"
	cfg.Engine.Workers, cfg.Engine.Prefetch = 3, 5
	cfg.SourceOptions.Spool = "spool.db"
	var logs bytes.Buffer
	var mu sync.Mutex
	d, err := palleto.New(cfg, palleto.Deps{S3: s3c, Logger: slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	memMu.Lock()
	got := memOpened
	memMu.Unlock()
	if got.AckTimeout != cfg.SQS.VisibilityTimeout || got.WaitTime != time.Second || got.MaxInFlight != 8 || got.Logger == nil ||
		got.CallTimeout <= 0 || got.Spool != "spool.db" {
		t.Errorf("the opener was given %+v", got)
	}
	if v, f, err := d.QueueDepth(context.Background()); err != nil || v != 7 || f != 3 {
		t.Errorf("QueueDepth = %d, %d, %v; want the source's 7, 3", v, f, err)
	}
	if err := d.Check(context.Background()); err != nil {
		t.Errorf("Check: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := d.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Objects != 1 || fake.Events()[0] != "delete m1" {
		t.Fatalf("summary %+v, source events %v", s, fake.Events())
	}
	if res := readJSON(t, filepath.Join(out, dir.Path(st.Bucket, "a/one.txt"))); res["lines"] != 3.0 {
		t.Fatalf("result %v", res)
	}
	mu.Lock()
	log := logs.String()
	mu.Unlock()
	if !strings.Contains(log, "source=mem") || !strings.Contains(log, "mem://opened?token=xxxxx") || strings.Contains(log, "s3cret") {
		t.Errorf("the start log does not name the source, or shows its token:\n%s", log)
	}

	cfg.Source = "mem://refuses"
	d, err = palleto.New(cfg, palleto.Deps{S3: s3c})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Check(context.Background()); err == nil || !strings.Contains(err.Error(), "no such consumer") {
		t.Errorf("Check of a source that refuses: %v", err)
	}
	cfg.Source = "mem://missing"
	if _, err := palleto.New(cfg, palleto.Deps{S3: s3c}); err == nil || !strings.Contains(err.Error(), "no such queue missing") {
		t.Errorf("New with a source that cannot open: %v", err)
	}
}

// TestGivenSourceNeedsNoQueueURL: Deps.Source, as an embedder gives it, needs no SQS queue URL;
// a source without Depther says it cannot tell its depth.
func TestGivenSourceNeedsNoQueueURL(t *testing.T) {
	st, s3c, _ := stack(t)
	cfg := config(st, t.TempDir())
	cfg.SQS.QueueURL = ""
	d, err := palleto.New(cfg, palleto.Deps{S3: s3c, Source: &queuetest.Fake{}})
	if err != nil {
		t.Fatalf("New with Deps.Source and no queue URL: %v", err)
	}
	if _, _, err := d.QueueDepth(context.Background()); err == nil {
		t.Error("QueueDepth of a source that cannot tell: no error")
	}
}
