package testenv

import (
	"context"
	"os"
	"testing"

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
