package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// events is a log of what handlers did, in order, safe for concurrent use.
type events struct {
	mu  sync.Mutex
	log []string
}

func (e *events) add(format string, args ...any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.log = append(e.log, fmt.Sprintf(format, args...))
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.log)
}

// takeNextSoon calls TakeNext until it takes an item: the items the prefetch asked for are
// received by the producer at its own pace.
func takeNextSoon(t *testing.T, ctx context.Context) {
	for !TakeNext(ctx) {
		if ctx.Err() != nil {
			t.Error("no item to take early")
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTakeNextHandsTheNextItemToTheSameWorker: a handler that takes its next item early gets
// it prepared while it still runs, one item ahead at most; the worker handles that item right
// after, every item is settled once, and the taken item was asked for again (the unmet demand
// comes back to Prefetch + Workers once the source is dry).
func TestTakeNextHandsTheNextItemToTheSameWorker(t *testing.T) {
	src := &fakeSource{limit: 3}
	var ev events
	settled := make(chan int, 3)
	cfg := Config{Producer: ProducerConfig{Pollers: 1, MaxBatch: 10}, Workers: 1, Prefetch: 2, ShutdownTimeout: 5 * time.Second}
	pl := New[int](src, cfg, Handler[int]{
		Handle: func(ctx context.Context, w int, item int) error {
			ev.add("handle %d on %d", item, w)
			if item == 0 {
				takeNextSoon(t, ctx)
				if TakeNext(ctx) {
					t.Error("a second item was taken early: one ahead at most")
				}
			}
			ev.add("handled %d", item)
			return nil
		},
		Prepare: func(ctx context.Context, w int, item int) { ev.add("prepare %d on %d", item, w) },
		Settle:  func(item int, err error) { settled <- item },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- pl.Run(ctx) }()
	var got []int
	for range 3 {
		got = append(got, <-settled)
	}
	for pl.Demand() != cfg.Prefetch+cfg.Workers && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if d := pl.Demand(); d != cfg.Prefetch+cfg.Workers {
		t.Errorf("unmet demand %d once every item is done, want %d: an item taken early must be asked for again", d, cfg.Prefetch+cfg.Workers)
	}
	cancel()
	<-done
	want := []string{"handle 0 on 1", "prepare 1 on 1", "handled 0", "handle 1 on 1", "handled 1", "handle 2 on 1", "handled 2"}
	if log := ev.all(); !slices.Equal(log, want) {
		t.Errorf("events:\n%q\nwant\n%q", log, want)
	}
	if !slices.Equal(got, []int{0, 1, 2}) {
		t.Errorf("settled %v, want each of 0, 1, 2 once, in order", got)
	}
	if n := pl.InFlight(); n != 0 {
		t.Errorf("in flight after Run: %d", n)
	}
}

// TestItemTakenEarlyIsHandedBackAtShutdown: a worker that took its next item early and is then
// told to stop hands that item back, unstarted and unsettled, with the producer's own.
func TestItemTakenEarlyIsHandedBackAtShutdown(t *testing.T) {
	src := &fakeSource{limit: 3}
	var mu sync.Mutex
	var settled, released []int
	took := make(chan struct{})
	cfg := Config{Producer: ProducerConfig{Pollers: 1, MaxBatch: 10}, Workers: 1, Prefetch: 2, ShutdownTimeout: 5 * time.Second}
	pl := New[int](src, cfg, Handler[int]{
		Handle: func(ctx context.Context, w int, item int) error {
			if item == 0 {
				takeNextSoon(t, ctx)
				close(took)
				<-ctx.Done() // until the hard stop: the shutdown is under way when it returns
			}
			return nil
		},
		Settle: func(item int, err error) { mu.Lock(); settled = append(settled, item); mu.Unlock() },
		Release: func(items []int) {
			mu.Lock()
			released = append(released, items...)
			mu.Unlock()
		},
	})
	pl.cfg.ShutdownTimeout = 0 // cancel the handler's context as soon as Run is told to stop
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pl.Run(ctx) }()
	<-took
	cancel()
	<-done
	slices.Sort(released)
	if !slices.Equal(settled, []int{0}) || !slices.Contains(released, 1) || len(slices.Compact(slices.Clone(released))) != len(released) {
		t.Errorf("settled %v, released %v: want 0 settled, and 1 (taken early, never started) released once", settled, released)
	}
	if n := pl.InFlight(); n != 0 {
		t.Errorf("in flight after Run: %d", n)
	}
}

// TestItemTakenEarlyOutlivesAPanic: the handler that took the next item panics; the restarted
// worker handles that item, and each item is settled once.
func TestItemTakenEarlyOutlivesAPanic(t *testing.T) {
	src := &fakeSource{limit: 2}
	settled := make(chan string, 2)
	cfg := Config{Producer: ProducerConfig{Pollers: 1, MaxBatch: 10}, Workers: 1, Prefetch: 1, ShutdownTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	pl := New[int](src, cfg, Handler[int]{
		Handle: func(ctx context.Context, w int, item int) error {
			if item == 0 {
				takeNextSoon(t, ctx)
				panic("handler bug")
			}
			return nil
		},
		Settle: func(item int, err error) { settled <- fmt.Sprintf("%d: panic %v", item, errors.Is(err, ErrPanic)) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- pl.Run(ctx) }()
	got := []string{<-settled, <-settled}
	cancel()
	<-done
	if want := []string{"0: panic true", "1: panic false"}; !slices.Equal(got, want) {
		t.Errorf("settled %q, want %q", got, want)
	}
}
