package s3store

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/store"
)

// holdingAPI holds its first PutObject, once armed, until release is closed: a replica stopped
// between the read of a result and its write.
type holdingAPI struct {
	API
	armed, counting atomic.Bool
	held, release   chan struct{}
	puts            atomic.Int32 // since armed
}

func (h *holdingAPI) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if h.counting.Load() {
		h.puts.Add(1)
	}
	if h.armed.CompareAndSwap(true, false) {
		close(h.held)
		<-h.release
	}
	return h.API.PutObject(ctx, in, opts...)
}

// TestTwoReplicasNeverPutAnOlderResultOverANewer: two stores on one MinIO bucket, as two
// replicas. Replica A, with an older event's result, reads (nothing there, or an even older
// result) and is held before its write; replica B writes a newer event's result meanwhile; A is
// let go. A's write, conditional on what it read, fails (412); A reads again, finds the newer
// result and keeps it. Without conditional writes A's PUT would replace it.
func TestTwoReplicasNeverPutAnOlderResultOverANewer(t *testing.T) {
	env := testenv.Get(t)
	c := env.S3()
	bucket := testenv.Name("race")
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		before string // the sequencer of a result already there, or none
	}{
		{"NewKey", ""},        // A's write is If-None-Match: *
		{"ExistingKey", "01"}, // A's write is If-Match the ETag it read
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			url := "s3://" + bucket + "/" + testenv.Name("run")
			h := &holdingAPI{API: c, held: make(chan struct{}), release: make(chan struct{})}
			a, err := Open(h, url)
			if err != nil {
				t.Fatal(err)
			}
			b, err := Open(c, url)
			if err != nil {
				t.Fatal(err)
			}
			res := func(etag, seq string) store.Result {
				now := time.Now().UTC()
				return store.Result{Bucket: "data", Key: "logs/app.log", ETag: etag, Sequencer: seq, Processor: "lines",
					MessageID: "m-" + etag, StartedAt: now, FinishedAt: now, Fields: map[string]any{"lines": int64(1)}}
			}
			if tc.before != "" {
				if err := putSync(b, res("oldest", tc.before)); err != nil {
					t.Fatal(err)
				}
			}
			h.counting.Store(true)
			h.armed.Store(true)
			doneA := make(chan error, 1)
			go a.Put(ctx, res("older", "05"), func(err error) { doneA <- err })
			<-h.held // A has read and is about to write
			if err := putSync(b, res("newer", "09")); err != nil {
				t.Fatalf("replica B's write: %v", err)
			}
			close(h.release)
			if err := <-doneA; !errors.Is(err, store.ErrSuperseded) {
				t.Fatalf("replica A's write, after losing the race: %v; want it kept, reported as store.ErrSuperseded", err)
			}
			got, err := b.Result(ctx, "data", "logs/app.log", "lines")
			if err != nil || got == nil || got.ETag != "newer" {
				t.Fatalf("stored after the race: %+v, %v; want the newer event's result (eTag newer)", got, err)
			}
			if n := h.puts.Load(); n != 1 {
				t.Errorf("replica A wrote %d times; want once (refused), then nothing once it read the newer result", n)
			}
		})
	}
}

func putSync(s *Store, r store.Result) error {
	var err error
	s.Put(context.Background(), r, func(e error) { err = e })
	return err
}
