package nats

import "github.com/palleto/palleto/queue"

// Abandon drops s as a killed process does: the keep-alive stops and the connection closes
// with no ack, nak or flush; what s held comes back after the consumer's AckWait.
func Abandon(s queue.Source) {
	src := s.(*Source)
	src.ka.close()
	src.nc.Close()
	src.acks.close() // nothing was handed to it; ends its goroutine
}
