// Package sourcetest holds what the end-to-end tests of the broker sources (amqp, kafka) share:
// objects uploaded with a known line count, a daemon configured around a source of the test's
// own, its results read back, and a processor that holds one object until the test lets it go
// (so that an outage comes with work in flight). For tests only.
package sourcetest

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/notify"
	"github.com/palleto/palleto/process"
	"github.com/palleto/palleto/store"
)

// Upload puts n gzip objects of i+1 lines each into bucket (keys that need URL-encoding in an
// event) and returns their line counts by key.
func Upload(t testing.TB, s3c *s3.Client, bucket string, n int) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	for i := range n {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		for l := range i + 1 {
			fmt.Fprintf(zw, "line %d of object %d\n", l, i)
		}
		zw.Close()
		key := fmt.Sprintf("logs/%02d file+%d.gz", i, i)
		if _, err := s3c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(buf.Bytes())}); err != nil {
			t.Fatalf("PutObject %s: %v", key, err)
		}
		want[key] = int64(i + 1)
	}
	return want
}

// Config is a daemon's configuration for a test whose source is palleto.Deps.Source: results in
// a directory of the test's own, 4 workers, bucket allowed, short retry delays.
func Config(t testing.TB, bucket string) palleto.Config {
	cfg := palleto.DefaultConfig()
	cfg.OutDir = t.TempDir()
	cfg.Engine.Workers = 4
	cfg.Buckets = []string{bucket}
	cfg.RetryBackoff = time.Second
	return cfg
}

// Results reads the lines of the results the daemon stored in dir for bucket's keys.
func Results(t testing.TB, dir, bucket string, keys map[string]int64) map[string]int64 {
	t.Helper()
	st, err := palleto.OpenStore(context.Background(), dir, store.DefaultGroupConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got := map[string]int64{}
	for k := range keys {
		r, err := st.Result(context.Background(), bucket, k, "lines")
		if err != nil {
			t.Fatal(err)
		}
		if r != nil {
			l, _ := r.Fields["lines"].(float64)
			got[k] = int64(l)
			if r.ETag == "" || r.Size == 0 {
				t.Errorf("result of %s: etag %q size %d", k, r.ETag, r.Size)
			}
		}
	}
	return got
}

// WaitFor polls cond until it holds, failing the test after within.
func WaitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// HoldNth is the default processor (lines) that holds its nth object until Release: a test
// waits for Started() >= n, causes its outage, then releases it.
type HoldNth struct {
	N       int
	mu      sync.Mutex
	started int
	release chan struct{}
	once    sync.Once
}

// NewHoldNth holds the nth object processed.
func NewHoldNth(n int) *HoldNth { return &HoldNth{N: n, release: make(chan struct{})} }

// Started is how many objects the processor was given so far.
func (h *HoldNth) Started() int { h.mu.Lock(); defer h.mu.Unlock(); return h.started }

// Release lets the held object (and every later one) go.
func (h *HoldNth) Release() { h.once.Do(func() { close(h.release) }) }

func (h *HoldNth) Name() string { return "lines" }

func (h *HoldNth) Process(ctx context.Context, o process.Object, r io.Reader) (process.Fields, error) {
	h.mu.Lock()
	h.started++
	hold := h.started == h.N
	h.mu.Unlock()
	if hold {
		<-h.release
	}
	p, _ := process.New("lines", process.Options{})
	return p.Process(ctx, o, r)
}

// Events returns an S3-format ObjectCreated notification body for each key of bucket, as S3
// would send it (size and eTag from a HEAD of the object).
func Events(t testing.TB, s3c *s3.Client, bucket string, keys map[string]int64) []string {
	t.Helper()
	var bodies []string
	for key := range keys {
		head, err := s3c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
		if err != nil {
			t.Fatalf("HeadObject %s: %v", key, err)
		}
		bodies = append(bodies, notify.Body(notify.Record{Bucket: bucket, Key: key, Size: aws.ToInt64(head.ContentLength),
			ETag: strings.Trim(aws.ToString(head.ETag), `"`), EventName: "ObjectCreated:Put", EventTime: time.Now()}, "test", "test"))
	}
	return bodies
}

// Bucket creates bucket and, with an ARN, has MinIO notify that target of every object created.
func Bucket(t testing.TB, s3c *s3.Client, bucket, arn string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("CreateBucket %s: %v", bucket, err)
	}
	if arn == "" {
		return
	}
	if _, err := s3c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: &bucket,
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String(arn), Events: []s3types.Event{"s3:ObjectCreated:*"}}}}}); err != nil {
		t.Fatalf("PutBucketNotificationConfiguration %s: %v", bucket, err)
	}
}
