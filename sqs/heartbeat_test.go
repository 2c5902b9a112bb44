package sqs

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/palleto/palleto/queue"
)

// fakeAPI is SQS for one test: ReceiveMessage hands out one message; a heartbeat's
// ChangeMessageVisibilityBatch (the renewal to the visibility timeout) blocks until release is
// closed; every visibility change is recorded, in the order SQS would apply them.
type fakeAPI struct {
	API
	vis     int32
	entered chan struct{} // closed when a renewal call is blocked
	release chan struct{}
	mu      sync.Mutex
	applied []int32 // the visibility timeouts set, in order
	during  []int32 // those set while a renewal was blocked
	blocked bool
}

func (f *fakeAPI) ReceiveMessage(ctx context.Context, in *awssqs.ReceiveMessageInput, _ ...func(*awssqs.Options)) (*awssqs.ReceiveMessageOutput, error) {
	return &awssqs.ReceiveMessageOutput{Messages: []types.Message{{MessageId: aws.String("m1"), ReceiptHandle: aws.String("r1"), Body: aws.String("{}")}}}, nil
}

func (f *fakeAPI) ChangeMessageVisibilityBatch(ctx context.Context, in *awssqs.ChangeMessageVisibilityBatchInput, _ ...func(*awssqs.Options)) (*awssqs.ChangeMessageVisibilityBatchOutput, error) {
	v := in.Entries[0].VisibilityTimeout
	if v == f.vis { // the heartbeat's renewal
		f.mu.Lock()
		f.blocked = true
		f.mu.Unlock()
		close(f.entered)
		<-f.release
		f.mu.Lock()
		f.blocked = false
		f.applied = append(f.applied, v)
		f.mu.Unlock()
		return &awssqs.ChangeMessageVisibilityBatchOutput{}, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.blocked {
		f.during = append(f.during, v)
	}
	f.applied = append(f.applied, v)
	return &awssqs.ChangeMessageVisibilityBatchOutput{}, nil
}

// TestRetryWaitsForTheRenewalInFlight forces the interleaving of issue #12: a renewal of the
// visibility is in flight when a retry sets a 300s delay. The retry must wait for the renewal to
// return, so that the delay is the last word; otherwise the renewal's 60s overwrites it.
func TestRetryWaitsForTheRenewalInFlight(t *testing.T) {
	for _, op := range []string{"retry", "release"} {
		t.Run(op, func(t *testing.T) {
			api := &fakeAPI{vis: 60, entered: make(chan struct{}), release: make(chan struct{})}
			waits := make(chan struct{}, 1)
			testHookUntrackWaits = func() { waits <- struct{}{} }
			defer func() { testHookUntrackWaits = nil }()
			s := New(api, Config{QueueURL: "q", VisibilityTimeout: 60 * time.Second, WaitTime: time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)), Hooks{})
			defer s.Close()
			msgs, err := s.Receive(context.Background(), 1)
			if err != nil || len(msgs) != 1 {
				t.Fatalf("receive: %v", err)
			}
			beat := make(chan struct{})
			go func() { s.hb.extend(context.Background()); close(beat) }()
			<-api.entered // the renewal is in flight, blocked
			done := make(chan error, 1)
			go func() {
				if op == "retry" {
					done <- s.Retry(context.Background(), msgs[0], 300*time.Second)
				} else {
					done <- s.Release(context.Background(), []*queue.Message{msgs[0]})
				}
			}()
			select {
			case <-waits: // the retry waits for the renewal: release it
			case err := <-done:
				t.Fatalf("%s went through while a renewal was in flight (%v): the renewal can undo it", op, err)
			}
			close(api.release)
			<-beat
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			api.mu.Lock()
			defer api.mu.Unlock()
			want := int32(300)
			if op == "release" {
				want = 0
			}
			if len(api.during) != 0 || len(api.applied) != 2 || api.applied[1] != want {
				t.Fatalf("visibility set to %v (during the renewal: %v); want the renewal's 60 then %d", api.applied, api.during, want)
			}
		})
	}
}

// stallingAPI never answers, as an SQS endpoint behind a dead connection does.
type stallingAPI struct{ API }

func (stallingAPI) ReceiveMessage(ctx context.Context, _ *awssqs.ReceiveMessageInput, _ ...func(*awssqs.Options)) (*awssqs.ReceiveMessageOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (stallingAPI) ChangeMessageVisibilityBatch(ctx context.Context, _ *awssqs.ChangeMessageVisibilityBatchInput, _ ...func(*awssqs.Options)) (*awssqs.ChangeMessageVisibilityBatchOutput, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestEveryCallHasADeadline: a receive gives up after its wait time plus the call timeout, and a
// visibility change after the call timeout, however the caller's context is.
func TestEveryCallHasADeadline(t *testing.T) {
	s := New(stallingAPI{}, Config{QueueURL: "q", VisibilityTimeout: 60 * time.Second, WaitTime: 0, CallTimeout: time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)), Hooks{})
	defer s.Close()
	if _, err := s.Receive(context.Background(), 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a receive that never answers: %v, want its deadline", err)
	}
	m := &queue.Message{ID: "m", Handle: "h"}
	if err := s.Retry(context.Background(), m, time.Second); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a visibility change that never answers: %v, want its deadline", err)
	}
}

func TestDeleteAfterCloseIsDropped(t *testing.T) {
	s := New(stallingAPI{}, Config{QueueURL: "q", VisibilityTimeout: 60 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)), Hooks{})
	s.Close()
	s.Delete(&queue.Message{ID: "late"}) // a worker left behind by the hard stop: no panic
}
