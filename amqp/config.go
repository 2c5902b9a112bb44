// Package amqp is the RabbitMQ (AMQP 0.9.1) source: `--source
// amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME[&dlq=QUEUE][&exchange=EX&routing_key=KEY]`, or
// amqps:// for TLS. MinIO's and Ceph RGW's AMQP targets publish S3-format `Records` events to an
// exchange; Palleto consumes a queue bound to it.
//
// What each method of queue.Source means here:
//   - Receive: the consumer's deliveries, manual acks, with basic.qos prefetch equal to the most
//     messages the daemon holds (workers + prefetch), never unbounded;
//   - in flight: an unacknowledged delivery stays with this consumer until it is acked or its
//     channel closes (RabbitMQ's consumer_timeout, 30 minutes by default, bounds one object);
//   - Delete: basic.ack;
//   - Release: the message is published again at once with its delivery counted (the header
//     x-palleto-attempts), then acked: classic queues count no deliveries;
//   - Retry(delay): the message is published again, with its attempt count in the header
//     x-palleto-attempts, to a delay queue whose per-queue TTL dead-letters it back into the
//     queue, and the original is acked once the broker confirmed the copy: the delay survives a
//     restart of Palleto, and needs no plugin (RabbitMQ 3.10 or later);
//   - the poison guard's count: the x-palleto-attempts header, x-delivery-count on quorum
//     queues, or the redelivered flag;
//   - DeadLetter: the body and the reason (x-palleto-* headers) published to dlq=QUEUE;
//   - a lost connection or channel is a failure of the world: it reconnects with backoff,
//     nothing acknowledged is lost, nothing unacknowledged is deleted (the broker requeues it),
//     and Ready says why meanwhile.
package amqp

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// config is what the URL and the daemon's options say.
type config struct {
	dial        string // the broker URL without Palleto's own query parameters
	queue       string
	dlq         string
	exchange    string // bind queue to this exchange (declared durable when missing)
	routingKey  string
	prefetch    int
	callTimeout time.Duration
	waitTime    time.Duration
}

// parseURL reads amqp[s]://USER:PASS@HOST:PORT/VHOST?queue=NAME[&dlq=Q][&exchange=E&routing_key=K][&prefetch=N].
func parseURL(u *url.URL) (config, error) {
	var c config
	switch u.Scheme {
	case "amqp", "amqps":
	default:
		return c, fmt.Errorf("source: %q is not an amqp:// or amqps:// URL", u.Redacted())
	}
	if u.Host == "" {
		return c, fmt.Errorf("source: %s names no broker host (amqp://USER:PASS@HOST:5672/VHOST?queue=NAME)", u.Redacted())
	}
	q := u.Query()
	c.queue = q.Get("queue")
	if c.queue == "" {
		return c, fmt.Errorf("source: %s names no queue: add ?queue=NAME", u.Redacted())
	}
	c.dlq = q.Get("dlq")
	if c.dlq == c.queue {
		return c, fmt.Errorf("source: dlq=%s is the queue itself: a dead letter would come straight back", c.dlq)
	}
	c.exchange, c.routingKey = q.Get("exchange"), q.Get("routing_key")
	if c.routingKey != "" && c.exchange == "" {
		return c, fmt.Errorf("source: routing_key=%s without exchange=: name the exchange the queue is bound to", c.routingKey)
	}
	if p := q.Get("prefetch"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return c, fmt.Errorf("source: prefetch=%s is not a number in [1, 65535]", p)
		}
		c.prefetch = n
	}
	for _, k := range []string{"queue", "dlq", "exchange", "routing_key", "prefetch"} {
		q.Del(k)
	}
	d := *u
	d.RawQuery = q.Encode()
	c.dial = d.String()
	return c, nil
}

// vhost is the URL's virtual host, as RabbitMQ names it ("/" when none).
func vhost(u *url.URL) string {
	v := strings.TrimPrefix(u.Path, "/")
	if v == "" {
		return "/"
	}
	if un, err := url.PathUnescape(v); err == nil {
		return un
	}
	return v
}

// delayQueue is the name of the queue that holds retried messages for delay before they go back
// to queue.
func delayQueue(queue string, delay time.Duration) string {
	return fmt.Sprintf("%s.palleto-delay-%dms", queue, delay.Milliseconds())
}

// ParseURL checks an amqp:// source URL as Open reads it; the error says what is wrong.
func ParseURL(u *url.URL) error {
	_, err := parseURL(u)
	return err
}
