package sqs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/palleto/palleto/internal/testenv"
	"github.com/palleto/palleto/sqs"
)

// stallProxy forwards SQS's JSON protocol to target, but holds every
// ChangeMessageVisibilityBatch that includes a stalled receipt handle, unanswered, until the
// client gives up: an SQS endpoint that hangs on some calls. It notes which handles went in
// held calls and which in calls it passed.
type stallProxy struct {
	target string
	mu     sync.Mutex
	stall  map[string]bool
	held   map[string]bool // handles of the calls held
	passed map[string]bool // handles of the renewal calls passed
}

func (p *stallProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Header.Get("X-Amz-Target") == "AmazonSQS.ChangeMessageVisibilityBatch" {
		var in struct {
			Entries []struct{ ReceiptHandle string }
		}
		json.Unmarshal(body, &in)
		p.mu.Lock()
		hold := false
		for _, e := range in.Entries {
			hold = hold || p.stall[e.ReceiptHandle]
		}
		for _, e := range in.Entries {
			if hold {
				p.held[e.ReceiptHandle] = true
			} else {
				p.passed[e.ReceiptHandle] = true
			}
		}
		p.mu.Unlock()
		if hold {
			<-r.Context().Done()
			return
		}
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

// TestHeartbeatAroundAStalledSQSLocalAWSSQS: 30 messages in flight with a 4s visibility, on
// local-aws-sqs behind a proxy that hangs on every renewal call of the 20 received first (the
// ones whose visibility ends first, renewed first). For 10s (5 beats), another consumer polls
// the queue: it gets some of those 20, as their renewals never land, but never one of the
// other 10, whose calls went around the hanging ones in time. (The serial renewal of before
// spent 2s, its call timeout, on each hanging call before the next.)
func TestHeartbeatAroundAStalledSQSLocalAWSSQS(t *testing.T) {
	env := testenv.Get(t)
	direct := env.SQS()
	url := testenv.NewQueue(t, direct, testenv.Name("hbstall"), nil)
	fill(t, direct, url, 30)
	proxy := &stallProxy{target: env.SQSEndpoint, stall: map[string]bool{}, held: map[string]bool{}, passed: map[string]bool{}}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	proxied := awssqs.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider(env.AccessKey, env.SecretKey, "")},
		func(o *awssqs.Options) { o.BaseEndpoint = aws.String(srv.URL) })
	src := sqs.New(proxied, sqs.Config{QueueURL: url, WaitTime: 0, VisibilityTimeout: 4 * time.Second, CallTimeout: 2 * time.Second}, quiet, sqs.Hooks{})
	defer src.Close()
	handles := map[string]string{} // message ID -> receipt handle
	for stalled := 0; len(handles) < 30; {
		msgs, err := src.Receive(context.Background(), 10)
		if err != nil {
			t.Fatal(err)
		}
		proxy.mu.Lock()
		for _, m := range msgs { // whole receives: messages of one receive expire together
			handles[m.ID] = m.Handle.(string)
			if stalled < 20 {
				proxy.stall[m.Handle.(string)] = true
			}
		}
		if stalled < 20 {
			stalled += len(msgs)
		}
		proxy.mu.Unlock()
	}
	var stolen []string
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); { // the window measured: five beats
		out, err := direct.ReceiveMessage(context.Background(), &awssqs.ReceiveMessageInput{QueueUrl: &url, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 60})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range out.Messages {
			stolen = append(stolen, aws.ToString(m.MessageId))
		}
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	free, wrong := 0, 0
	for h := range proxy.passed {
		if !proxy.held[h] {
			free++
		}
	}
	for _, id := range stolen {
		if !proxy.held[handles[id]] {
			wrong++
		}
	}
	t.Logf("redelivered to another consumer: %d messages, %d of them never in a renewal call that hung; %d messages only in calls that passed", len(stolen), wrong, free)
	if wrong > 0 {
		t.Errorf("%d messages whose renewals did not hang were redelivered while in flight", wrong)
	}
	if len(stolen) == 0 {
		t.Errorf("no message was redelivered: the proxy did not stall the renewals")
	}
	if free < 10 {
		t.Errorf("only %d messages renewed in calls that did not hang, want the 10 received last (earliest expiry first, 10 per call)", free)
	}
}
