package nats

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/queue"
)

// TestRetryWaitsForTheRenewalInFlight forces the interleaving the keep-alive discipline is
// about: a renewal of a held message is in flight (published, not yet flushed) when the message
// is retried; the retry's nak must wait until the renewal is through, so that the renewal can
// never land after the nak and restart its delay.
func TestRetryWaitsForTheRenewalInFlight(t *testing.T) {
	server := testenv.NATSURL(t)
	renewing, release, waits := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var once sync.Once
	testHookRenewing = func() { once.Do(func() { close(renewing); <-release }) }
	testHookUntrackWaits = func() { close(waits) }
	defer func() { testHookRenewing, testHookUntrackWaits = nil, nil }()

	id := fmt.Sprintf("%d%06d", time.Now().Unix()%100000, rand.IntN(1000000))
	u, _ := url.Parse(fmt.Sprintf("%s/K%s/C?subject=palleto.ka.%s", server, id, id))
	src, err := Open(context.Background(), u, queue.Options{AckTimeout: 300 * time.Millisecond, WaitTime: time.Second, CallTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s := src.(*Source)
	defer func() {
		close(release)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.js.DeleteStream(ctx, "K"+id)
		s.Close()
	}()
	if err := s.nc.Publish("palleto.ka."+id, []byte("held")); err != nil {
		t.Fatal(err)
	}
	var m *queue.Message
	for deadline := time.Now().Add(10 * time.Second); m == nil && time.Now().Before(deadline); {
		msgs, err := s.Receive(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 {
			m = msgs[0]
		}
	}
	if m == nil {
		t.Fatal("the message was not received")
	}
	<-renewing // a renewal of m is published and not yet flushed
	retried := make(chan error, 1)
	go func() { retried <- s.Retry(context.Background(), m, time.Second) }()
	select {
	case <-waits:
	case err := <-retried:
		t.Fatalf("Retry went ahead of the renewal in flight (%v)", err)
	case <-time.After(10 * time.Second):
		t.Fatal("Retry neither waited for the renewal in flight nor returned")
	}
	release <- struct{}{} // the renewal goes on; later ones pass the hook at once
	if err := <-retried; err != nil {
		t.Fatalf("Retry after the renewal: %v", err)
	}
}
