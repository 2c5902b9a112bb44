package sqs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/palleto/palleto/queue"
)

// stallAPI answers renewals (visibility vis) at once, but blocks each one that includes a
// stalled receipt handle until release is closed or its deadline passes, as an SQS endpoint
// that hangs on some calls does. Every event goes to events.
type stallAPI struct {
	API
	vis     int32
	stall   map[string]bool
	release chan struct{}
	events  chan string // "stalled" per blocked call, "renewed" per message renewed, "gave up" per call that ran out of time

	mu    sync.Mutex
	calls [][]int         // the message numbers of each renewal call
	left  []time.Duration // each renewal call's time to its deadline when it came
}

func (f *stallAPI) ChangeMessageVisibilityBatch(ctx context.Context, in *awssqs.ChangeMessageVisibilityBatchInput, _ ...func(*awssqs.Options)) (*awssqs.ChangeMessageVisibilityBatchOutput, error) {
	if in.Entries[0].VisibilityTimeout != f.vis { // a retry's delay, not a renewal
		return &awssqs.ChangeMessageVisibilityBatchOutput{}, nil
	}
	var nums []int
	stalled := false
	for _, e := range in.Entries {
		n, _ := strconv.Atoi(strings.TrimPrefix(aws.ToString(e.ReceiptHandle), "h"))
		nums = append(nums, n)
		stalled = stalled || f.stall[aws.ToString(e.ReceiptHandle)]
	}
	deadline, _ := ctx.Deadline()
	f.mu.Lock()
	f.calls = append(f.calls, nums)
	f.left = append(f.left, time.Until(deadline))
	f.mu.Unlock()
	if stalled {
		f.events <- "stalled"
		select {
		case <-f.release:
		case <-ctx.Done():
			f.events <- "gave up"
			return nil, ctx.Err()
		}
	} else {
		for range nums {
			f.events <- "renewed"
		}
	}
	return &awssqs.ChangeMessageVisibilityBatchOutput{}, nil
}

// TestHeartbeatRenewsAroundStalledCalls is issue #24's item 8: 50 messages in flight, and SQS
// hangs on the calls that renew the 20 whose visibility ends first. The other 30 are renewed
// while those calls still hang (before they run out of time): calls run side by side, earliest
// expiry first, 10 messages each, each under a deadline of at most a quarter of the visibility
// timeout. A retry of a renewed message does not wait for the hanging calls, only for its own.
func TestHeartbeatRenewsAroundStalledCalls(t *testing.T) {
	api := &stallAPI{vis: 20, stall: map[string]bool{}, release: make(chan struct{}), events: make(chan string, 200)}
	s := New(api, Config{QueueURL: "q", VisibilityTimeout: 20 * time.Second, CallTimeout: 30 * time.Second}, slog.New(slog.NewTextHandler(io.Discard, nil)), Hooks{})
	defer s.Close()
	t0 := time.Now().Add(-time.Minute) // received a minute ago: had it not been renewed, a message's visibility would be over
	msgs := make([]*queue.Message, 50)
	for _, i := range []int{7, 42, 0, 19, 33, 25, 11, 48, 3, 29, 14, 38, 21, 5, 45, 17, 30, 9, 40, 1, 23, 36, 12, 47, 27, 6, 43, 16, 34, 2, 49, 20, 10, 39, 26, 4, 44, 15, 31, 8, 46, 22, 13, 37, 28, 18, 41, 24, 35, 32} {
		msgs[i] = &queue.Message{ID: fmt.Sprint("m", i), Handle: fmt.Sprint("h", i)}
		s.hb.track(msgs[i], t0.Add(time.Duration(i)*time.Millisecond)) // m0's visibility ends first
		if i < 20 {
			api.stall[fmt.Sprint("h", i)] = true
		}
	}
	beat := make(chan struct{})
	go func() { s.hb.extend(context.Background()); close(beat) }()
	stalled, renewed := 0, 0
	for stalled < 2 || renewed < 30 {
		switch <-api.events {
		case "stalled":
			stalled++
		case "renewed":
			renewed++
		case "gave up":
			t.Fatalf("a stalled call ran out of time with %d stalled calls and %d messages renewed: the others waited for it", stalled, renewed)
		}
	}
	// A retry of a renewed message waits for its own call, not for the two that hang.
	retried := make(chan error, 1)
	go func() { retried <- s.Retry(context.Background(), msgs[25], time.Minute) }()
	for done := false; !done; {
		select {
		case err := <-retried:
			if err != nil {
				t.Fatal(err)
			}
			done = true
		case e := <-api.events:
			t.Fatalf("%s while a retry of a renewed message waited: it waits for the stalled calls", e)
		}
	}
	close(api.release)
	<-beat

	api.mu.Lock()
	defer api.mu.Unlock()
	for i, nums := range api.calls {
		sorted := append([]int(nil), nums...)
		sort.Ints(sorted)
		if len(nums) != 10 || sorted[0]%10 != 0 || sorted[9] != sorted[0]+9 {
			t.Errorf("call %d renewed %v; want 10 messages in order of expiry (m0-m9, m10-m19, ...)", i, nums)
		}
		if api.left[i] <= 0 || api.left[i] > 5*time.Second {
			t.Errorf("call %d had %s to its deadline, want (0, 5s]: a quarter of the 20s visibility", i, api.left[i])
		}
	}
	if len(api.calls) != 5 {
		t.Errorf("%d renewal calls, want 5", len(api.calls))
	}
	s.hb.mu.Lock()
	defer s.hb.mu.Unlock()
	for m, b := range s.hb.m {
		if !b.expires.After(time.Now()) {
			t.Errorf("%s: visibility still ends at its receive's, not renewed", m.ID)
		}
	}
}
