package palleto

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/queue/queuetest"
	"github.com/palleto/palleto/store"
	"github.com/palleto/palleto/store/dir"
)

// bucketsS3 serves objects by bucket and key, and HeadBucket: a bucket in refuse answers 403 to
// everything; a key in denied answers 403 while its bucket answers.
type bucketsS3 struct {
	mu     sync.Mutex
	refuse map[string]bool
	denied map[string]bool // "bucket/key"
	gets   map[string]int  // "bucket/key"
	heads  map[string]int
}

func (f *bucketsS3) GetObject(ctx context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, k := aws.ToString(in.Bucket), aws.ToString(in.Key)
	f.gets[b+"/"+k]++
	if f.refuse[b] || f.denied[b+"/"+k] {
		return nil, s3err(403, "AccessDenied")
	}
	body := "x\n"
	return &s3.GetObjectOutput{Body: io.NopCloser(strings.NewReader(body)), ContentLength: aws.Int64(int64(len(body))), ETag: aws.String(`"e-` + k + `"`)}, nil
}

func (f *bucketsS3) HeadBucket(ctx context.Context, in *s3.HeadBucketInput, _ ...func(*s3.Options)) (*s3.HeadBucketOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.heads[aws.ToString(in.Bucket)]++
	if f.refuse[aws.ToString(in.Bucket)] {
		return nil, s3err(403, "Forbidden")
	}
	return &s3.HeadBucketOutput{}, nil
}

func (f *bucketsS3) count(m map[string]int, k string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return m[k]
}

// eventIn is the notification of keys in bucket.
func eventIn(bucket string, keys ...string) string {
	return strings.ReplaceAll(event(keys...), `{"name":"b"}`, fmt.Sprintf(`{"name":%q}`, bucket))
}

// deletesSeen is the fake source that tells each Delete on a channel.
type deletesSeen struct {
	*queuetest.Fake
	deleted chan string
}

func (s *deletesSeen) Delete(m *queue.Message) { s.Fake.Delete(m); s.deleted <- m.ID }

// TestBucketThatRefusesDoesNotStopTheOthers: a bucket that refuses these credentials (a forged
// event naming someone else's bucket, no --bucket allowlist) has its breaker opened by its
// HeadBucket probe; its messages wait, never counted, never deleted; every object of the other
// bucket is done meanwhile, receiving never pauses, and /readyz stays ready.
func TestBucketThatRefusesDoesNotStopTheOthers(t *testing.T) {
	const good = 20
	src := &deletesSeen{Fake: &queuetest.Fake{}, deleted: make(chan string, 100)}
	for i := range 3 {
		src.Send(eventIn("theirs", fmt.Sprintf("x%d", i)))
	}
	want := map[string]bool{}
	for i := range good {
		want[src.Send(eventIn("ours", fmt.Sprintf("k%d", i)))] = true
	}
	s3c := &bucketsS3{refuse: map[string]bool{"theirs": true}, gets: map[string]int{}, heads: map[string]int{}}
	d, met, logs := daemonOn(t, src, s3c, disk(t), func(c *Config) { c.RetryBackoff = 50 * time.Millisecond })
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, d)
	for len(want) > 0 {
		select {
		case id := <-src.deleted:
			if !want[id] {
				t.Fatalf("message %s of the refusing bucket deleted", id)
			}
			delete(want, id)
		case <-time.After(failAfter):
			t.Fatalf("%d messages of the good bucket not done\n%s", len(want), logs)
		}
	}
	// Its breaker opens on its own time (3 failures, then the probe): wait for the word of it.
	for deadline := time.Now().Add(failAfter); !d.health.IsOpen(s3Key("theirs")); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the refusing bucket's breaker never opened\n%s", logs)
		}
	}
	if err := d.Ready(ctx); err != nil {
		t.Errorf("/readyz: %v, with one bucket down and the other working", err)
	}
	if got := metric(t, met, `palleto_dependency_up{dependency="s3"}`); got != 0 {
		t.Errorf("palleto_dependency_up{s3} = %v while a bucket is down", got)
	}
	cancel()
	s := waitRun(t, done, logs)
	if s.Objects != good || s.Failed != 0 {
		t.Errorf("objects %d, failures recorded %d; want %d, 0", s.Objects, s.Failed, good)
	}
	if s3c.count(s3c.heads, "ours") != 0 {
		t.Error("the working bucket was probed")
	}
	if strings.Contains(logs.String(), "receiving paused") || strings.Contains(logs.String(), "S3 UNAVAILABLE (ours)") {
		t.Errorf("log:\n%s", logs)
	}
}

// TestObjectDeniedWhileItsBucketAnswersIsItsOwnFailure: one object the credentials may not read
// (its KMS key, an object policy), three events for it before the others: its bucket answers the
// probe, so the 403 is the object's own: retried, counted, dead-lettered by the poison guard;
// every other object is done, the breaker never opens, and the run ends with nothing undone.
func TestObjectDeniedWhileItsBucketAnswersIsItsOwnFailure(t *testing.T) {
	const good = 10
	src := &queuetest.Fake{DLQ: true}
	for range 3 {
		src.Send(eventIn("ours", "secret"))
	}
	for i := range good {
		src.Send(eventIn("ours", fmt.Sprintf("k%d", i)))
	}
	s3c := &bucketsS3{denied: map[string]bool{"ours/secret": true}, gets: map[string]int{}, heads: map[string]int{}}
	st := disk(t)
	d, _, logs := daemonOn(t, src, s3c, st, func(c *Config) { c.MaxReceives, c.Engine.ExitWhenIdle = 3, 100*time.Millisecond })
	s := waitRun(t, runAsync(context.Background(), d), logs)
	if s.Objects != good || s.Deleted != good+3 || s.DeadLettered != 3 || s.Undone != 0 {
		t.Errorf("objects %d, deleted %d, dead-lettered %d, undone %d; want %d, %d, 3, 0\n%s", s.Objects, s.Deleted, s.DeadLettered, s.Undone, good, good+3, logs)
	}
	again, err := dir.Open(st.Dir()) // Run closed it
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	f, err := again.Failure(context.Background(), "ours", "secret", "")
	if err != nil || f == nil || f.Class != ClassPermanent || !strings.Contains(f.Error, "access denied to this object while its bucket answers") {
		t.Errorf("failure record of the denied object: %+v, %v", f, err)
	}
	if strings.Contains(logs.String(), "UNAVAILABLE") {
		t.Errorf("a breaker opened for one object:\n%s", logs)
	}
}

// TestForgedEventOutsideTheAllowlistOpensNothing: an event naming a bucket outside --bucket is
// refused before any GET: recorded, deleted, no breaker, no probe.
func TestForgedEventOutsideTheAllowlistOpensNothing(t *testing.T) {
	src := &queuetest.Fake{}
	for range 5 {
		src.Send(eventIn("theirs", "x"))
	}
	src.Send(eventIn("ours", "k"))
	s3c := &bucketsS3{refuse: map[string]bool{"theirs": true}, gets: map[string]int{}, heads: map[string]int{}}
	d, _, logs := daemonOn(t, src, s3c, disk(t), func(c *Config) { c.Buckets, c.Engine.ExitWhenIdle = []string{"ours"}, 100*time.Millisecond })
	s := waitRun(t, runAsync(context.Background(), d), logs)
	if s.Objects != 1 || s.Deleted != 6 || s3c.count(s3c.gets, "theirs/x") != 0 || s3c.count(s3c.heads, "theirs") != 0 || len(d.health.States()) > 1 {
		t.Errorf("objects %d, deleted %d, GETs of the forged %d, probes %d, breaker %v\n%s", s.Objects, s.Deleted,
			s3c.count(s3c.gets, "theirs/x"), s3c.count(s3c.heads, "theirs"), d.health.States(), logs)
	}
}

// ownedDisk is the directory store as a store inside bucket "b" under "palleto/" would be.
type ownedDisk struct{ store.Store }

func (ownedDisk) Owns(bucket, key string) bool {
	return bucket == "b" && strings.HasPrefix(key, "palleto/")
}
func (ownedDisk) Owned() (string, string) { return "b", "palleto/" }

// TestOwnOutputIsSkipped: events for what the store wrote (results, failure records, the
// readiness object) are skipped before anything else, the --bucket allowlist included: no GET,
// no failure record, one count each; the others are processed.
func TestOwnOutputIsSkipped(t *testing.T) {
	for _, buckets := range [][]string{nil, {"elsewhere"}} {
		t.Run(fmt.Sprint("buckets=", buckets), func(t *testing.T) {
			src := &queuetest.Fake{}
			own := []string{"palleto/b/a.json", "palleto/_palleto/ready.json", "palleto/_failed/b/x.json"}
			src.Send(event(own...))
			src.Send(event("a"))
			fs3 := &fakeS3{objs: map[string]fakeObject{"a": {body: "x\n"}}, gets: map[string]int{}}
			st := disk(t)
			d, met, logs := daemonOn(t, src, fs3, ownedDisk{st}, func(c *Config) { c.Buckets, c.Engine.ExitWhenIdle = buckets, 100*time.Millisecond })
			s := waitRun(t, runAsync(context.Background(), d), logs)
			again, err := dir.Open(st.Dir()) // Run closed it
			if err != nil {
				t.Fatal(err)
			}
			defer again.Close()
			for _, k := range own {
				if fs3.gets[k] != 0 {
					t.Errorf("%s fetched", k)
				}
				if f, err := again.Failure(context.Background(), "b", k, ""); f != nil || err != nil {
					t.Errorf("%s recorded as a failure: %+v, %v", k, f, err)
				}
			}
			failed := int64(0)
			if buckets != nil {
				failed = 1 // "a", refused: bucket b is not in the allowlist
			}
			if got := metric(t, met, `palleto_objects_skipped_total{reason="own_output"}`); got != 3 || s.Failed != failed || s.Deleted != 2 {
				t.Errorf("own_output skipped %v, failed %d, deleted %d; want 3, %d, 2\n%s", got, s.Failed, s.Deleted, failed, logs)
			}
			if n := strings.Count(logs.String(), "own output"); n != 3 {
				t.Errorf("%d log lines of own output, want 3", n)
			}
			warned := strings.Contains(logs.String(), "the results store writes into a bucket this daemon reads")
			if warned != (buckets == nil) {
				t.Errorf("start warning %v, want %v (allowlist %v)", warned, buckets == nil, buckets)
			}
		})
	}
}

// TestNoWarningWhenFiltersLeaveTheStoreOut: --include keeping to another prefix is the filter
// the warning asks for.
func TestNoWarningWhenFiltersLeaveTheStoreOut(t *testing.T) {
	d, _, logs := daemonOn(t, &queuetest.Fake{}, &fakeS3{}, ownedDisk{disk(t)}, func(c *Config) { c.Include = []string{"incoming/*"} })
	d.warnOwnOutput()
	if strings.Contains(logs.String(), "writes into a bucket this daemon reads") {
		t.Errorf("warned with --include incoming/*:\n%s", logs)
	}
}
