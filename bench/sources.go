package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/palleto/palleto"
	"github.com/palleto/palleto/amqp"
	"github.com/palleto/palleto/devstack"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/kafka"
	"github.com/palleto/palleto/queue"
)

// P2 through the sources other than SQS: the same objects, S3 server, store and settings as
// P2's SQS row, their notifications in a Kafka topic (franz-go's kfake) or a RabbitMQ queue,
// read in this process by the source `palleto run --source` opens (kafka.Open, amqp.Open) with
// the options the daemon gives it, through palleto.Deps.Source.

// countingSource counts the messages the daemon deleted (acked, settled): the runs end at the
// n-th, as the SQS row's end at the n-th message deleted.
type countingSource struct {
	queue.Source
	deleted atomic.Int64
}

func (c *countingSource) Delete(m *queue.Message) {
	c.Source.Delete(m)
	c.deleted.Add(1)
}

// sourceOptions are the options the daemon opens a --source with (palleto.openSource): the
// demand it may hold is the workers and the prefetch.
func sourceOptions(cfg palleto.Config) queue.Options {
	return queue.Options{Logger: quiet, WaitTime: cfg.SQS.WaitTime, CallTimeout: cfg.SQS.CallTimeout, AckTimeout: cfg.SQS.VisibilityTimeout,
		MaxInFlight: cfg.Engine.Workers + cfg.Engine.Prefetch}
}

// eventBodies are the S3 notifications of objs, one per object, as P2's SQS queue holds them.
func eventBodies(bucket string, objs []object) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = devstack.EventBody("ObjectCreated:Put", bucket, o.key, "", o.etag, o.size)
	}
	return out
}

// publishAll sends bodies through p (the publisher of `palleto backfill --to`), 500 at a time.
func publishAll(ctx context.Context, p interface {
	Publish(context.Context, []string) error
}, bodies []string) error {
	for i := 0; i < len(bodies); i += 500 {
		if err := p.Publish(ctx, bodies[i:min(i+500, len(bodies))]); err != nil {
			return err
		}
	}
	return nil
}

// runSource runs the daemon on src until n messages are deleted; as runDaemon.
func (b *bench) runSource(ctx context.Context, cfg palleto.Config, src queue.Source, outBase string, n int) time.Duration {
	cfg.SQS.QueueURL = "https://sqs.us-east-1.amazonaws.com/000000000000/unused" // the source is Deps.Source
	b.source = &countingSource{Source: src}
	defer func() { b.source = nil }()
	took, _ := b.runDaemon(ctx, cfg, outBase, n)
	return took
}

// p2Kafka is one P2 run through a Kafka topic of one partition (MinIO's Kafka target writes its
// events to one topic) read by a consumer group of one Palleto: the objects/s, and what the run
// left behind checked: every record's offset committed.
func (b *bench) p2Kafka(ctx context.Context, cfg palleto.Config, brokers, bucket string, objs []object, outBase string) (float64, error) {
	admin, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...))
	if err != nil {
		return 0, err
	}
	defer admin.Close()
	topic := testenv.Name("bench-kafka")
	group := topic + "-g"
	if err := kafkaTopic(ctx, admin, topic, true); err != nil {
		return 0, err
	}
	defer kafkaTopic(context.Background(), admin, topic, false)
	u, _ := url.Parse(fmt.Sprintf("kafka://%s/%s?group=%s", brokers, topic, group))
	pub, err := kafka.NewPublisher(u, 0)
	if err != nil {
		return 0, err
	}
	err = publishAll(ctx, pub, eventBodies(bucket, objs))
	pub.Close()
	if err != nil {
		return 0, err
	}
	src, err := kafka.Open(ctx, u, sourceOptions(cfg))
	if err != nil {
		return 0, err
	}
	// The group is joined before the run starts, as the SQS queue is there before its run: a
	// daemon joins once, and the join (kfake's, a few hundred ms) is no part of a rate.
	joined := time.Now()
	if err := kafkaJoined(ctx, admin, group); err != nil {
		src.Close()
		return 0, err
	}
	b.o.Log.Info("P2 Kafka group joined", "took", time.Since(joined).Round(time.Millisecond))
	took := b.runSource(ctx, cfg, src, outBase, len(objs))
	b.o.Log.Info("P2 Kafka run", "objects_per_s", float64(len(objs))/took.Seconds(), "cpu_us_per_object", perObjectOf(b.lastCPU, len(objs)))
	if got, err := kafkaCommitted(ctx, admin, group, topic); err != nil || got != int64(len(objs)) {
		return 0, fmt.Errorf("P2 Kafka: %d of %d records committed after the run (%v)", got, len(objs), err)
	}
	return float64(len(objs)) / took.Seconds(), nil
}

// kafkaTopic creates (or deletes) a topic of one partition.
func kafkaTopic(ctx context.Context, cl *kgo.Client, topic string, create bool) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !create {
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.TopicNames = []string{topic}
		rt := kmsg.NewDeleteTopicsRequestTopic()
		rt.Topic = kmsg.StringPtr(topic)
		req.Topics = append(req.Topics, rt)
		_, err := req.RequestWith(ctx, cl)
		return err
	}
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, 1, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("kafka create topic %s: %w", topic, err)
	}
	for _, r := range resp.Topics {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return fmt.Errorf("kafka create topic %s: %w", topic, err)
		}
	}
	return nil
}

// kafkaJoined waits until group is stable with a member that has partitions.
func kafkaJoined(ctx context.Context, cl *kgo.Client, group string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		req := kmsg.NewPtrDescribeGroupsRequest()
		req.Groups = []string{group}
		resp, err := req.RequestWith(ctx, cl)
		if err == nil && len(resp.Groups) == 1 {
			g := resp.Groups[0]
			if g.State == "Stable" && len(g.Members) == 1 && len(g.Members[0].MemberAssignment) > 0 {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("kafka group %s: not stable within a minute", group)
}

// kafkaCommitted is the sum of group's committed offsets on topic.
func kafkaCommitted(ctx context.Context, cl *kgo.Client, group, topic string) (int64, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic, rt.Partitions = topic, []int32{0}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return 0, err
	}
	var sum int64
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return 0, err
			}
			sum += max(p.Offset, 0)
		}
	}
	return sum, nil
}

// p2AMQP is one P2 run through a RabbitMQ queue bound to an exchange with a routing key, as
// MinIO's AMQP target publishes: the objects/s, and what the run left behind checked: the
// queue empty (every message acked; Close gives back what was not).
func (b *bench) p2AMQP(ctx context.Context, cfg palleto.Config, base, bucket string, objs []object, outBase string) (float64, error) {
	q := testenv.Name("bench-amqp")
	u, err := url.Parse(fmt.Sprintf("%s?queue=%s&exchange=%s-x&routing_key=minio", base, q, q))
	if err != nil {
		return 0, err
	}
	conn, err := amqp091.Dial(base)
	if err != nil {
		return 0, fmt.Errorf("amqp dial: %w", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer func() { ch.QueueDelete(q, false, false, false); ch.ExchangeDelete(q+"-x", false, false) }()
	// The source declares the exchange, the queue and the binding; it is opened (and so
	// consuming, up to its prefetch) before the events are published, as it runs before MinIO
	// sends anything.
	src, err := amqp.Open(ctx, u, sourceOptions(cfg))
	if err != nil {
		return 0, err
	}
	pub, err := amqp.NewPublisher(u, 0)
	if err != nil {
		src.Close()
		return 0, err
	}
	err = publishAll(ctx, pub, eventBodies(bucket, objs))
	pub.Close()
	if err != nil {
		src.Close()
		return 0, err
	}
	took := b.runSource(ctx, cfg, src, outBase, len(objs))
	b.o.Log.Info("P2 RabbitMQ run", "objects_per_s", float64(len(objs))/took.Seconds(), "cpu_us_per_object", perObjectOf(b.lastCPU, len(objs)))
	if st, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil || st.Messages != 0 {
		return 0, fmt.Errorf("P2 RabbitMQ: %d messages left in the queue after the run (%v)", st.Messages, err)
	}
	return float64(len(objs)) / took.Seconds(), nil
}

// sourceBrokers returns the test Kafka brokers and RabbitMQ URL, "" for those not running.
func sourceBrokers() (kafkaBrokers, amqpURL string) {
	return os.Getenv("PALLETO_TEST_KAFKA_BROKERS"), os.Getenv("PALLETO_TEST_AMQP_URL")
}

// sourceRows are P2's rows through Kafka and RabbitMQ, each against the SQS row of the same
// runs (p is its median, pal its runs); cpu holds the CPU per object (µs) of each kind's runs.
func sourceRows(p float64, pal, viaKafka, viaAMQP []float64, cpu map[string][]float64) []Row {
	var rows []Row
	limit := fmt.Sprintf("%.0f objects/s, the SQS row (local-aws-sqs) in the same runs", p)
	spent := func(kind string) string {
		return fmt.Sprintf("; Palleto's process %.0f µs of CPU per object, %.0f in the SQS row", median(cpu[kind]), median(cpu["sqs"]))
	}
	if len(viaKafka) > 0 {
		rows = append(rows, Row{Scenario: "P2 small objects, Kafka source",
			Setting: "the same objects, S3, store and defaults; their events in a topic of one partition on franz-go's kfake, one consumer group, `--source kafka://` opened in-process (kafka.Open); until the n-th record settled" + spent("kafka"),
			Value:   fmt.Sprintf("%.0f objects/s", median(viaKafka)), Limit: limit, Ratio: ratio(viaKafka, pal), Target: 1})
	}
	if len(viaAMQP) > 0 {
		rows = append(rows, Row{Scenario: "P2 small objects, RabbitMQ source",
			Setting: "the same objects, S3, store and defaults; their events in a durable queue bound to a direct exchange (as MinIO's AMQP target publishes) on Debian's rabbitmq-server, `--source amqp://` opened in-process (amqp.Open); until the n-th ack" + spent("amqp"),
			Value:   fmt.Sprintf("%.0f objects/s", median(viaAMQP)), Limit: limit, Ratio: ratio(viaAMQP, pal), Target: 1})
	}
	return rows
}

func perObjectOf(cpu time.Duration, n int) float64 {
	return float64(cpu.Microseconds()) / float64(max(n, 1))
}

// rotated returns xs turned left by n: each of them first in its turn.
func rotated(xs []string, n int) []string {
	n %= len(xs)
	return append(append([]string(nil), xs[n:]...), xs[:n]...)
}
