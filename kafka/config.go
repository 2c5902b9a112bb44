// Package kafka is the Kafka source: `--source
// kafka://BROKER[,BROKER...]/TOPIC?group=NAME[&dlq=TOPIC][&tls=1][&sasl=plain|scram-sha-256|scram-sha-512&user=U&password=P]`
// (franz-go's kgo). MinIO's Kafka target and Ceph RGW's Kafka endpoint publish S3-format
// `Records` events to a topic; Palleto processes read it as one consumer group.
//
// What each method of queue.Source means here:
//   - Receive: records of the partitions the group gave this process, at most the demand; the
//     client holds one fetch (at most 4 MiB) ahead of it, and fetches the next only once every
//     record of that one was handed out, so nothing more is fetched while the daemon asks for
//     nothing;
//   - in flight: the group session is the keep-alive (the client heartbeats on its own); a
//     rebalance that takes a partition away mid-object loses nothing: its offset is not
//     committed past the unfinished record, the new owner reads it again and finds the result;
//   - Delete: the record is settled; offsets are committed, in batches, only up to the first
//     record of each partition that is not settled yet (objects finish out of order);
//   - Retry(delay): the record is held, so its partition's committed offset waits, and handed
//     out again once the delay has passed; Kafka counts no deliveries (ReceiveCount 0), so the
//     poison guard reads the object's failure records in the results store, which survive a
//     restart;
//   - Release: the record is handed out again at once;
//   - DeadLetter: the record, with the reason in x-palleto-* headers, produced to dlq=TOPIC;
//   - a broker that cannot be reached is a failure of the world: the client retries, nothing is
//     committed that was not settled, Ready says why.
package kafka

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

type config struct {
	brokers []string
	topic   string
	group   string
	dlq     string
	opts    []kgo.Opt // TLS and SASL
}

// ParseURL checks a kafka:// source URL as Open reads it; the error says what is wrong.
func ParseURL(u *url.URL) error {
	_, err := parseURL(u)
	return err
}

func parseURL(u *url.URL) (config, error) {
	var c config
	if u.Scheme != "kafka" {
		return c, fmt.Errorf("source: %q is not a kafka:// URL", u.Redacted())
	}
	for _, b := range strings.Split(u.Host, ",") {
		if b == "" {
			continue
		}
		if !strings.Contains(b, ":") {
			b += ":9092"
		}
		c.brokers = append(c.brokers, b)
	}
	if len(c.brokers) == 0 {
		return c, fmt.Errorf("source: %s names no broker (kafka://HOST:9092/TOPIC?group=NAME)", u.Redacted())
	}
	c.topic = strings.Trim(u.Path, "/")
	if c.topic == "" || strings.Contains(c.topic, "/") {
		return c, fmt.Errorf("source: %s must name one topic as its path (kafka://HOST:9092/TOPIC?group=NAME)", u.Redacted())
	}
	q := u.Query()
	c.group = q.Get("group")
	if c.group == "" {
		return c, fmt.Errorf("source: %s names no consumer group: add ?group=NAME (every Palleto process of one deployment uses the same)", u.Redacted())
	}
	c.dlq = q.Get("dlq")
	if c.dlq == c.topic {
		return c, fmt.Errorf("source: dlq=%s is the topic itself: a dead letter would come straight back", c.dlq)
	}
	switch q.Get("tls") {
	case "", "0", "false":
	case "1", "true":
		c.opts = append(c.opts, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	default:
		return c, fmt.Errorf("source: tls=%s is not 1 or 0", q.Get("tls"))
	}
	user, pass := q.Get("user"), q.Get("password")
	switch strings.ToLower(q.Get("sasl")) {
	case "":
	case "plain":
		c.opts = append(c.opts, kgo.SASL(plain.Auth{User: user, Pass: pass}.AsMechanism()))
	case "scram-sha-256":
		c.opts = append(c.opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()))
	case "scram-sha-512":
		c.opts = append(c.opts, kgo.SASL(scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()))
	default:
		return c, fmt.Errorf("source: sasl=%s is not plain, scram-sha-256 or scram-sha-512", q.Get("sasl"))
	}
	return c, nil
}
