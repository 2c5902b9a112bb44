package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaBrokers returns the address of the test Kafka broker (franz-go's kfake, started by
// scripts/testservers.sh), or skips (fails, when servers are required) without it.
func KafkaBrokers(t testing.TB) string {
	t.Helper()
	b := os.Getenv("PALLETO_TEST_KAFKA_BROKERS")
	if b == "" {
		if os.Getenv("PALLETO_REQUIRE_SERVERS") == "1" {
			t.Fatal("Kafka required but PALLETO_TEST_KAFKA_BROKERS is not set: run `make test`")
		}
		t.Skip("no Kafka: run `make test` (or scripts/testservers.sh start and source .testservers/env)")
	}
	return b
}

// MinIOKafka is how MinIO's Kafka target publishes: its ARN for a bucket notification and its
// topic.
type MinIOKafka struct{ ARN, Topic string }

// MinIOKafkaTarget returns MinIO's Kafka target, as scripts/testservers.sh configured it.
func MinIOKafkaTarget(t testing.TB) MinIOKafka {
	t.Helper()
	KafkaBrokers(t)
	return MinIOKafka{ARN: os.Getenv("PALLETO_TEST_MINIO_KAFKA_ARN"), Topic: os.Getenv("PALLETO_TEST_MINIO_KAFKA_TOPIC")}
}

// KafkaProducer returns a client of brokers that produces synchronously; it is closed at the
// end of the test.
func KafkaProducer(t testing.TB, brokers string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// CreateTopic creates topic with n partitions.
func CreateTopic(t testing.TB, cl *kgo.Client, topic string, n int32) {
	t.Helper()
	req := kmsg.NewPtrCreateTopicsRequest()
	rt := kmsg.NewCreateTopicsRequestTopic()
	rt.Topic, rt.NumPartitions, rt.ReplicationFactor = topic, n, 1
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	for _, r := range resp.Topics {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}
}

// Produce sends each body to topic and waits for the broker.
func Produce(t testing.TB, cl *kgo.Client, topic string, bodies ...string) {
	t.Helper()
	for _, b := range bodies {
		r := &kgo.Record{Topic: topic, Value: []byte(b)}
		if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
	}
}

// KafkaLag returns how many records of topic the group has not committed past (the sum over
// the topic's partitions of the end offset less the committed one, a partition with no commit
// counting from 0).
func KafkaLag(t testing.TB, brokers, topic, group string) int64 {
	t.Helper()
	cl := KafkaProducer(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, cl)
	if err != nil || len(mresp.Topics) != 1 {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	var parts []int32
	for _, p := range mresp.Topics[0].Partitions {
		parts = append(parts, p.Partition)
	}
	lo := kmsg.NewPtrListOffsetsRequest()
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, p := range parts {
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition, lp.Timestamp = p, -1 // the end
		lt.Partitions = append(lt.Partitions, lp)
	}
	lo.Topics = append(lo.Topics, lt)
	lresp, err := lo.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("list offsets of %s: %v", topic, err)
	}
	end := map[int32]int64{}
	for _, rt := range lresp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				t.Fatalf("list offsets of %s[%d]: %v", topic, rp.Partition, err)
			}
			end[rp.Partition] = rp.Offset
		}
	}
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Group = group
	ot := kmsg.NewOffsetFetchRequestTopic()
	ot.Topic, ot.Partitions = topic, parts
	of.Topics = append(of.Topics, ot)
	oresp, err := of.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("offsets of group %s: %v", group, err)
	}
	var lag int64
	committed := map[int32]int64{}
	for _, rt := range oresp.Topics {
		for _, rp := range rt.Partitions {
			committed[rp.Partition] = max(rp.Offset, 0)
		}
	}
	for p, e := range end {
		lag += e - committed[p]
	}
	return lag
}
