package localsqs

import (
	"context"
	"fmt"
	"net/http/httptrace"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/palleto/palleto/internal/testenv"
)

// The same conformance tests run against this server and against local-aws-sqs, through the
// AWS SDK, so that what Palleto relies on behaves alike on both.

func client(endpoint string) *sqs.Client {
	return sqs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")},
		func(o *sqs.Options) { o.BaseEndpoint = aws.String(endpoint) })
}

func TestConformanceEmbedded(t *testing.T) {
	_, base, stop, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	conformance(t, client(base))
}

func TestConformanceLocalAWSSQS(t *testing.T) {
	env := testenv.Get(t)
	conformance(t, client(env.SQSEndpoint))
}

func conformance(t *testing.T, c *sqs.Client) {
	ctx := context.Background()
	newQueue := func(t *testing.T, attrs map[string]string) string {
		return testenv.NewQueue(t, c, testenv.Name("conf"), attrs)
	}
	send := func(t *testing.T, url, body string) {
		t.Helper()
		if _, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: &body}); err != nil {
			t.Fatalf("SendMessage: %v", err)
		}
	}
	receive := func(t *testing.T, url string, max, wait, vis int32) []types.Message {
		t.Helper()
		in := &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: max, WaitTimeSeconds: wait,
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
			AttributeNames:              []types.QueueAttributeName{"All"},
			MessageAttributeNames:       []string{"All"}}
		if vis >= 0 {
			in.VisibilityTimeout = vis
		}
		out, err := c.ReceiveMessage(ctx, in)
		if err != nil {
			t.Fatalf("ReceiveMessage: %v", err)
		}
		return out.Messages
	}

	t.Run("send and receive up to 10", func(t *testing.T) {
		url := newQueue(t, nil)
		entries := []types.SendMessageBatchRequestEntry{}
		for i := 0; i < 10; i++ {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(fmt.Sprintf("m%02d", i))})
		}
		out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
		if err != nil || len(out.Successful) != 10 {
			t.Fatalf("SendMessageBatch: %v %+v", err, out)
		}
		send(t, url, "m10")
		send(t, url, "m11")
		var bodies []string
		for len(bodies) < 12 {
			msgs := receive(t, url, 10, 0, 30)
			if len(msgs) == 0 {
				break
			}
			if len(msgs) > 10 {
				t.Fatalf("received %d > 10", len(msgs))
			}
			for _, m := range msgs {
				bodies = append(bodies, aws.ToString(m.Body))
			}
		}
		sort.Strings(bodies)
		if len(bodies) != 12 || bodies[0] != "m00" || bodies[11] != "m11" {
			t.Fatalf("received %v", bodies)
		}
	})

	t.Run("long poll returns before the wait ends", func(t *testing.T) {
		url := newQueue(t, nil)
		// The message is sent once the receive's request is on the wire, so the poll is out (or
		// about to be) when it arrives; either way the poll must answer with it. The receive's
		// own context ends before its wait does: a server that answers only when the wait ends
		// fails here, whatever the machine's speed.
		written := make(chan struct{})
		var once sync.Once
		pollCtx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(written) }) },
		})
		pollCtx, cancel := context.WithTimeout(pollCtx, 18*time.Second)
		defer cancel()
		sent := make(chan error, 1)
		go func() { // t.Fatal belongs to the test's goroutine: the error comes back on a channel
			<-written
			_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("late")})
			sent <- err
		}()
		out, err := c.ReceiveMessage(pollCtx, &sqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 1, WaitTimeSeconds: 20, VisibilityTimeout: 30})
		if err != nil {
			t.Fatalf("ReceiveMessage with a 20s wait, a message sent while it waits: %v (the poll did not answer when the message arrived)", err)
		}
		if err := <-sent; err != nil {
			t.Fatalf("SendMessage: %v", err)
		}
		if len(out.Messages) != 1 || aws.ToString(out.Messages[0].Body) != "late" {
			t.Fatalf("the long poll answered with %d messages, want the one sent while it waited", len(out.Messages))
		}
	})

	t.Run("visibility timeout expiry redelivers with a receive count", func(t *testing.T) {
		url := newQueue(t, nil)
		send(t, url, "x")
		first := receive(t, url, 1, 0, 1)
		if len(first) != 1 || first[0].Attributes["ApproximateReceiveCount"] != "1" {
			t.Fatalf("first receive: %+v", first)
		}
		if again := receive(t, url, 1, 0, 1); len(again) != 0 {
			t.Fatal("an in-flight message was received again")
		}
		time.Sleep(1500 * time.Millisecond)
		second := receive(t, url, 1, 2, 30)
		if len(second) != 1 || second[0].Attributes["ApproximateReceiveCount"] != "2" || aws.ToString(second[0].MessageId) != aws.ToString(first[0].MessageId) {
			t.Fatalf("redelivery: %+v", second)
		}
	})

	t.Run("change visibility to 0 hands a message back", func(t *testing.T) {
		url := newQueue(t, nil)
		send(t, url, "y")
		m := receive(t, url, 1, 0, 60)
		if len(m) != 1 {
			t.Fatal("no message")
		}
		out, err := c.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: &url, Entries: []types.ChangeMessageVisibilityBatchRequestEntry{
			{Id: aws.String("a"), ReceiptHandle: m[0].ReceiptHandle, VisibilityTimeout: 0},
		}})
		if err != nil || len(out.Successful) != 1 {
			t.Fatalf("ChangeMessageVisibilityBatch: %v %+v", err, out)
		}
		if again := receive(t, url, 1, 1, 60); len(again) != 1 {
			t.Fatal("message not visible after visibility 0")
		}
	})

	t.Run("batch delete with a bad receipt handle", func(t *testing.T) {
		url := newQueue(t, nil)
		send(t, url, "z")
		m := receive(t, url, 1, 0, 1)
		if len(m) != 1 {
			t.Fatal("no message")
		}
		out, err := c.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: &url, Entries: []types.DeleteMessageBatchRequestEntry{
			{Id: aws.String("good"), ReceiptHandle: m[0].ReceiptHandle},
			{Id: aws.String("bad"), ReceiptHandle: aws.String("not-a-receipt-handle")},
		}})
		if err != nil {
			t.Fatalf("DeleteMessageBatch: %v", err)
		}
		if len(out.Successful) != 1 || aws.ToString(out.Successful[0].Id) != "good" || len(out.Failed) != 1 || aws.ToString(out.Failed[0].Id) != "bad" {
			t.Fatalf("DeleteMessageBatch result: %+v", out)
		}
		time.Sleep(1500 * time.Millisecond)
		if left := receive(t, url, 1, 0, 30); len(left) != 0 {
			t.Fatal("a deleted message came back")
		}
	})

	t.Run("redrive to a dead-letter queue", func(t *testing.T) {
		dlq := newQueue(t, nil)
		attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: &dlq, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn}})
		if err != nil {
			t.Fatal(err)
		}
		arn := attrs.Attributes["QueueArn"]
		url := newQueue(t, map[string]string{"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"1"}`, arn)})
		send(t, url, "poison")
		if m := receive(t, url, 1, 0, 1); len(m) != 1 {
			t.Fatal("no first receipt")
		}
		time.Sleep(1500 * time.Millisecond)
		if m := receive(t, url, 1, 1, 1); len(m) != 0 {
			t.Fatalf("message received a second time past maxReceiveCount 1: %+v", m)
		}
		m := receive(t, dlq, 1, 2, 30)
		if len(m) != 1 || aws.ToString(m[0].Body) != "poison" {
			t.Fatalf("dead-letter queue holds %+v", m)
		}
	})

	t.Run("message attributes round trip with their digest", func(t *testing.T) {
		url := newQueue(t, nil)
		_, err := c.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: &url, MessageBody: aws.String("with attrs"),
			MessageAttributes: map[string]types.MessageAttributeValue{
				"error": {DataType: aws.String("String"), StringValue: aws.String("corrupt gzip")},
				"count": {DataType: aws.String("Number"), StringValue: aws.String("3")},
			}})
		if err != nil { // the SDK checks MD5OfMessageAttributes
			t.Fatalf("SendMessage: %v", err)
		}
		m := receive(t, url, 1, 0, 30)
		if len(m) != 1 || aws.ToString(m[0].MessageAttributes["error"].StringValue) != "corrupt gzip" || aws.ToString(m[0].MessageAttributes["count"].StringValue) != "3" {
			t.Fatalf("received %+v", m)
		}
	})

	t.Run("unknown queue is QueueDoesNotExist", func(t *testing.T) {
		_, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String("no-such-queue-" + testenv.Name("x"))})
		var nf *types.QueueDoesNotExist
		if err == nil || !asErr(err, &nf) {
			t.Fatalf("err = %v, want QueueDoesNotExist", err)
		}
	})
}
