package devstack

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/notify"
)

// drain receives every message now in the queue (short polls until one comes back empty) and
// returns the buckets and keys of their records, "test" for an s3:TestEvent.
func drain(t *testing.T, c *sqs.Client, url string) []string {
	t.Helper()
	var got []string
	for {
		out, err := c.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 0})
		if err != nil {
			t.Fatalf("ReceiveMessage %s: %v", url, err)
		}
		if len(out.Messages) == 0 {
			return got
		}
		var del []sqstypes.DeleteMessageBatchRequestEntry
		for i, m := range out.Messages {
			del = append(del, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(string(rune('a' + i))), ReceiptHandle: m.ReceiptHandle})
			ev, err := notify.Parse([]byte(aws.ToString(m.Body)))
			if err != nil {
				t.Fatalf("a message that is not a notification: %s: %v", aws.ToString(m.Body), err)
			}
			if ev.Format == notify.FormatTest {
				got = append(got, "test")
			}
			for _, r := range ev.Records {
				got = append(got, r.Bucket+"/"+r.Key)
			}
		}
		c.DeleteMessageBatch(context.Background(), &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: del})
	}
}

// TestPerBucketNotificationConfiguration is DEPLOY.md's "existing bucket" step through the SDK:
// a new bucket notifies nothing until PutBucketNotificationConfiguration names a queue by its
// ARN; then its ObjectCreated events (within the key filter) go to that queue only, and the
// demo's bucket keeps its default wiring to its own queue.
func TestPerBucketNotificationConfiguration(t *testing.T) {
	st, err := Start(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	env := testenv.Env{S3Endpoint: st.S3Endpoint, SQSEndpoint: st.SQSEndpoint, AccessKey: "devstack", SecretKey: "devstack"}
	s3c, sqsc := env.S3(), env.SQS()
	ctx := context.Background()
	put := func(bucket, key string) {
		t.Helper()
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: strings.NewReader("x\n")}); err != nil {
			t.Fatalf("PutObject %s/%s: %v", bucket, key, err)
		}
	}
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("logs")}); err != nil {
		t.Fatal(err)
	}
	queueURL := testenv.NewQueue(t, sqsc, "logs-events", nil)
	put("logs", "before.gz")
	put("uploads", "a.gz")
	if got := drain(t, sqsc, queueURL); len(got) != 0 {
		t.Errorf("a queue no configuration names received %v", got)
	}
	if got := drain(t, sqsc, st.QueueURL); strings.Join(got, ",") != "uploads/a.gz" {
		t.Errorf("the demo's queue received %v, want only uploads/a.gz (its bucket's, by default)", got)
	}

	attrs, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &queueURL, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn}})
	if err != nil {
		t.Fatal(err)
	}
	arn := attrs.Attributes["QueueArn"]
	_, err = s3c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: aws.String("logs"),
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: &arn, Events: []s3types.Event{"s3:ObjectCreated:*"},
			Filter: &s3types.NotificationConfigurationFilter{Key: &s3types.S3KeyFilter{FilterRules: []s3types.FilterRule{{Name: "suffix", Value: aws.String(".gz")}}}},
		}}}})
	if err != nil {
		t.Fatalf("PutBucketNotificationConfiguration: %v", err)
	}
	got, err := s3c.GetBucketNotificationConfiguration(ctx, &s3.GetBucketNotificationConfigurationInput{Bucket: aws.String("logs")})
	if err != nil || len(got.QueueConfigurations) != 1 || aws.ToString(got.QueueConfigurations[0].QueueArn) != arn {
		t.Errorf("GetBucketNotificationConfiguration: %+v %v", got, err)
	}
	put("logs", "after.gz")
	put("logs", "after.txt") // outside the suffix filter
	put("uploads", "b.gz")
	if got := drain(t, sqsc, queueURL); strings.Join(got, ",") != "test,logs/after.gz" {
		t.Errorf("the configured queue received %v, want S3's test event, then logs/after.gz only", got)
	}
	if got := drain(t, sqsc, st.QueueURL); strings.Join(got, ",") != "uploads/b.gz" {
		t.Errorf("the demo's queue received %v, want only uploads/b.gz", got)
	}

	// A queue that does not exist is refused, as S3 refuses a destination it cannot validate.
	_, err = s3c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: aws.String("logs"),
		NotificationConfiguration: &s3types.NotificationConfiguration{QueueConfigurations: []s3types.QueueConfiguration{{
			QueueArn: aws.String("arn:aws:sqs:us-east-1:000000000000:nope"), Events: []s3types.Event{"s3:ObjectCreated:*"}}}}})
	if err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Errorf("a configuration naming a missing queue: %v, want InvalidArgument", err)
	}
	// An empty configuration turns the bucket's notifications off.
	if _, err := s3c.PutBucketNotificationConfiguration(ctx, &s3.PutBucketNotificationConfigurationInput{Bucket: aws.String("logs"),
		NotificationConfiguration: &s3types.NotificationConfiguration{}}); err != nil {
		t.Fatal(err)
	}
	put("logs", "off.gz")
	if got := drain(t, sqsc, queueURL); len(got) != 0 {
		t.Errorf("a bucket whose configuration was emptied still notifies: %v", got)
	}
}
