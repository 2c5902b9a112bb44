package nats_test

import (
	"context"
	"fmt"
	"time"

	_ "github.com/palleto/palleto/nats" // registers nats://
	"github.com/palleto/palleto/queue"
)

// A NATS JetStream source is opened by its URL; with subject= the stream and the durable
// consumer are created when missing. Every process opened on the same consumer shares its work.
func Example() {
	src, err := queue.Open(context.Background(), "nats://127.0.0.1:4222/MINIO/palleto?subject=minio.events&dlq=minio.dead",
		queue.Options{AckTimeout: time.Minute, WaitTime: 20 * time.Second})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer src.Close()
	msgs, err := src.Receive(context.Background(), 10) // at most the demand
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range msgs {
		// ... store the result of m.Body's objects, then:
		src.Delete(m) // an ack, flushed by Close
	}
}
