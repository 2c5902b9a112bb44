package sqs

import (
	"strings"
	"testing"
)

// TestDLQMustNotBeTheQueue: a dead-letter queue that is the queue consumed (however the URL is
// spelled) is refused, naming both settings; another queue, port or host is not.
func TestDLQMustNotBeTheQueue(t *testing.T) {
	const q = "https://sqs.us-east-1.amazonaws.com/123456789012/uploads"
	for _, tt := range []struct {
		dlq  string
		same bool
	}{
		{q, true},
		{q + "/", true},
		{"HTTPS://SQS.us-east-1.amazonaws.com:443/123456789012/uploads", true},
		{"https://sqs.us-east-1.amazonaws.com/123456789012/uploads-dlq", false},
		{"https://sqs.us-east-1.amazonaws.com/123456789012/Uploads", false}, // queue names are case-sensitive
		{"https://sqs.eu-west-1.amazonaws.com/123456789012/uploads", false},
		{"https://sqs.us-east-1.amazonaws.com:8443/123456789012/uploads", false},
	} {
		cfg := DefaultConfig()
		cfg.QueueURL, cfg.DLQURL = q, tt.dlq
		err := cfg.Validate()
		named := err != nil && strings.Contains(err.Error(), "dlq-url") && strings.Contains(err.Error(), "--queue-url")
		if (err != nil) != tt.same || (err != nil && !named) {
			t.Errorf("dlq %s: err %v, want refused %v naming dlq-url and --queue-url", tt.dlq, err, tt.same)
		}
	}
}
