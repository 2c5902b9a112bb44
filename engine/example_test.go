package engine_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/palleto/palleto/engine"
)

// numbers is a Source handing out 1..limit, at most max per call.
type numbers struct {
	mu         sync.Mutex
	next, last int
}

func (n *numbers) Receive(ctx context.Context, max int) ([]int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []int
	for len(out) < max && n.next < n.last {
		n.next++
		out = append(out, n.next)
	}
	if len(out) == 0 {
		time.Sleep(5 * time.Millisecond) // an empty long poll
	}
	return out, nil
}

func Example() {
	var mu sync.Mutex
	sum := 0
	cfg := engine.Config{Producer: engine.ProducerConfig{Pollers: 2, MaxBatch: 10}, Workers: 4, ShutdownTimeout: time.Second, ExitWhenIdle: 50 * time.Millisecond}
	p := engine.New[int](&numbers{last: 100}, cfg, engine.Handler[int]{
		Handle: func(ctx context.Context, worker int, n int) error {
			mu.Lock()
			sum += n
			mu.Unlock()
			return nil
		},
		Settle: func(n int, err error) {}, // ack or nack: here, nothing to do
	})
	p.Run(context.Background())
	fmt.Println(sum)
	// Output: 5050
}
