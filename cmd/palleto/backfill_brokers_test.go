package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/palleto/palleto/backfill"
	"github.com/palleto/palleto/internal/testenv"
	notifypkg "github.com/palleto/palleto/notify"
)

// brokerBucket puts 25 objects, one of them with a space, a '+' and a '%' in its key, into a new
// bucket with no notification, and returns their sizes and eTags by key.
func brokerBucket(t *testing.T, env testenv.Env, prefix string) (bucket string, objects map[string]notifypkg.Record) {
	t.Helper()
	bucket = testenv.Name(prefix)
	plainBucket(t, env, bucket)
	var keys []string
	for i := range 24 {
		keys = append(keys, fmt.Sprintf("old/%02d.log", i))
	}
	keys = append(keys, "with space/a+b%.log")
	putKeys(t, env, bucket, keys)
	objects = map[string]notifypkg.Record{}
	p := s3.NewListObjectsV2Paginator(env.S3(), &s3.ListObjectsV2Input{Bucket: &bucket})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.Contents {
			objects[aws.ToString(o.Key)] = notifypkg.Record{Bucket: bucket, Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), ETag: strings.Trim(aws.ToString(o.ETag), `"`)}
		}
	}
	if len(objects) != len(keys) {
		t.Fatalf("listed %d objects, put %d", len(objects), len(keys))
	}
	return bucket, objects
}

// checkAnnounced checks that bodies hold one S3-format notification per object, each with one
// ObjectCreated record naming the object as S3 would (bucket, key decoded, size, eTag) and the
// backfill's configurationId.
func checkAnnounced(t *testing.T, bodies [][]byte, objects map[string]notifypkg.Record) {
	t.Helper()
	var got, want []string
	for _, b := range bodies {
		n, err := notifypkg.Parse(b)
		if err != nil || n.Format != notifypkg.FormatS3 || len(n.Records) != 1 {
			t.Fatalf("a message is not one S3 Records notification: %s (%v)", b, err)
		}
		r := n.Records[0]
		o, ok := objects[r.Key]
		if !ok || r.Bucket != o.Bucket || r.Size != o.Size || strings.Trim(r.ETag, `"`) != o.ETag || !strings.HasPrefix(r.EventName, "ObjectCreated:") {
			t.Errorf("record %+v; the object is %+v", r, o)
		}
		var raw struct {
			Records []struct {
				S3 struct {
					ConfigurationID string `json:"configurationId"`
				} `json:"s3"`
			}
		}
		if json.Unmarshal(b, &raw) != nil || raw.Records[0].S3.ConfigurationID != backfill.ConfigurationID {
			t.Errorf("configurationId of %s, want %q", b, backfill.ConfigurationID)
		}
		got = append(got, r.Key)
	}
	for k := range objects {
		want = append(want, k)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("announced %d keys %v\nwant one message per object: %v", len(got), got, want)
	}
}

// TestBackfillToKafkaMinIO: `palleto backfill --to kafka://BROKER/TOPIC` produces one record per
// object of a MinIO bucket to the topic, each an S3 Records notification of that object, and the
// topic holds nothing else.
func TestBackfillToKafkaMinIO(t *testing.T) {
	env := testenv.Get(t)
	brokers := testenv.KafkaBrokers(t)
	bucket, objects := brokerBucket(t, env, "backfill-kafka")
	topic := testenv.Name("backfill-kafka")
	pr := testenv.KafkaProducer(t, brokers)
	testenv.CreateTopic(t, pr, topic, 3)
	got, _ := runBackfill(t, env, "--bucket", bucket, "--to", fmt.Sprintf("kafka://%s/%s?group=unused", brokers, topic), "--page-size", "10")
	if got.Sent != int64(len(objects)) {
		t.Errorf("backfill sent %d, want %d", got.Sent, len(objects))
	}
	// The topic's end offsets: every record it holds, read back from its start.
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range int32(3) {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition, rp.Timestamp = p, -1 // -1: the end
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), pr)
	if err != nil {
		t.Fatal(err)
	}
	var held int64
	for _, t2 := range resp.Topics {
		for _, p := range t2.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				t.Fatalf("ListOffsets %s[%d]: %v", topic, p.Partition, err)
			}
			held += p.Offset
		}
	}
	if held != int64(len(objects)) {
		t.Errorf("the topic holds %d records, want one per object: %d", held, len(objects))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var bodies [][]byte
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for int64(len(bodies)) < held && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { bodies = append(bodies, r.Value) })
	}
	checkAnnounced(t, bodies, objects)
}

// TestBackfillToRabbitMQMinIO: `palleto backfill --to amqp://.../?queue=Q` publishes one
// persistent message per object of a MinIO bucket to the queue, each an S3 Records notification
// of that object, and the queue holds nothing else.
func TestBackfillToRabbitMQMinIO(t *testing.T) {
	env := testenv.Get(t)
	base := testenv.AMQPURL(t)
	bucket, objects := brokerBucket(t, env, "backfill-amqp")
	queue := testenv.Name("backfill-amqp")
	ch := testenv.AMQPChannel(t, base)
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	defer ch.QueueDelete(queue, false, false, false)
	got, _ := runBackfill(t, env, "--bucket", bucket, "--to", base+"?queue="+queue, "--page-size", "10")
	if got.Sent != int64(len(objects)) {
		t.Errorf("backfill sent %d, want %d", got.Sent, len(objects))
	}
	// Every message was confirmed by the broker before backfill exited: the queue holds them all.
	var bodies [][]byte
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if d.DeliveryMode != 2 {
			t.Errorf("a message of delivery mode %d, want 2 (persistent)", d.DeliveryMode)
		}
		bodies = append(bodies, d.Body)
	}
	checkAnnounced(t, bodies, objects)
}
