package sqs_test

import (
	"net/url"
	"testing"

	"github.com/palleto/palleto/queue"
	"github.com/palleto/palleto/sqs"
)

// TestSourceURLsOfSQS: which http(s) URLs --source takes as SQS queues (the rest are a
// webhook's), as a user of AWS or of a local SQS would type them.
func TestSourceURLsOfSQS(t *testing.T) {
	for _, tt := range []struct {
		url, endpoint string
		want          bool
	}{
		{"https://sqs.eu-west-1.amazonaws.com/123456789012/uploads", "", true},
		{"https://sqs.cn-north-1.amazonaws.com.cn/123456789012/uploads", "", true},
		{"https://sqs.us-east-1.api.aws/123456789012/uploads", "", true},
		{"https://vpce-1a2b.sqs.us-east-1.vpce.amazonaws.com/123456789012/q", "", true},
		{"http://localhost:4566/000000000000/uploads", "", true}, // LocalStack, ElasticMQ: the account path
		{"http://127.0.0.1:19324/000000000000/q.fifo", "", true},
		{"http://localhost:9324/queue/uploads", "http://localhost:9324", true},  // ElasticMQ's other form, with its endpoint set
		{"http://127.0.0.1:9324/queue/uploads", "http://localhost:9324", true},  // loopback spelled two ways
		{"http://127.0.0.1:9325/queue/uploads", "http://localhost:9324", false}, // another port: not that server
		{"http://127.0.0.1:8080/minio/events", "", false},                       // a webhook
		{"http://127.0.0.1:8080/minio", "http://127.0.0.1:9324", false},
		{"https://hooks.example.com/palleto", "", false},
		{"http://127.0.0.1:8080/12345/events", "", false},
		{"nats://127.0.0.1:4222/S/C", "", false},
	} {
		t.Setenv("AWS_ENDPOINT_URL_SQS", tt.endpoint)
		t.Setenv("AWS_ENDPOINT_URL", "")
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatal(err)
		}
		if got := sqs.IsQueueURL(u); got != tt.want {
			t.Errorf("IsQueueURL(%s) with AWS_ENDPOINT_URL_SQS=%q = %v, want %v", tt.url, tt.endpoint, got, tt.want)
		}
	}
	t.Setenv("AWS_ENDPOINT_URL_SQS", "")
	t.Setenv("AWS_ENDPOINT_URL", "http://localhost:4566")
	if name, _, _, err := queue.Lookup("http://localhost:4566/queue/x"); err != nil || name != sqs.Name {
		t.Errorf("a queue on AWS_ENDPOINT_URL's host: source %q, %v; want sqs", name, err)
	}
}
