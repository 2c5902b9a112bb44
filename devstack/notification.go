package devstack

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/palleto/palleto/devstack/localsqs"
)

// S3's XML namespace, on the documents it answers with.
const s3Namespace = "http://s3.amazonaws.com/doc/2006-03-01/"

// notificationConfiguration is a bucket's notification configuration, as
// PutBucketNotificationConfiguration sends it and GetBucketNotificationConfiguration answers.
// The devstack delivers to SQS queues only.
type notificationConfiguration struct {
	XMLName     xml.Name             `xml:"NotificationConfiguration"`
	Xmlns       string               `xml:"xmlns,attr,omitempty"`
	Queues      []queueConfiguration `xml:"QueueConfiguration"`
	Topics      []struct{}           `xml:"TopicConfiguration"`
	Lambdas     []struct{}           `xml:"CloudFunctionConfiguration"`
	EventBridge *struct{}            `xml:"EventBridgeConfiguration"`
}

type queueConfiguration struct {
	ID     string     `xml:"Id,omitempty"`
	Queue  string     `xml:"Queue"` // the queue's ARN
	Events []string   `xml:"Event"`
	Filter *keyFilter `xml:"Filter,omitempty"`
}

type keyFilter struct {
	Rules []filterRule `xml:"S3Key>FilterRule"`
}

type filterRule struct {
	Name  string `xml:"Name"`
	Value string `xml:"Value"`
}

// matches says whether an object created with event (s3:ObjectCreated:Put, ...) under key is
// one this configuration sends: one of its events (s3:ObjectCreated:* covers them all) and its
// key's prefix and suffix rules.
func (q queueConfiguration) matches(event, key string) bool {
	ok := false
	for _, e := range q.Events {
		if e == event || (strings.HasSuffix(e, ":*") && strings.HasPrefix(event, strings.TrimSuffix(e, "*"))) {
			ok = true
		}
	}
	if q.Filter != nil {
		for _, r := range q.Filter.Rules {
			switch strings.ToLower(r.Name) {
			case "prefix":
				ok = ok && strings.HasPrefix(key, r.Value)
			case "suffix":
				ok = ok && strings.HasSuffix(key, r.Value)
			}
		}
	}
	return ok
}

// notifyARN names Config.Notify as a bucket notification's destination.
const notifyARN = "arn:palleto:devstack:notify"

// notifications holds each bucket's notification configuration and delivers the events it
// names to the embedded SQS, as S3 does: a bucket with none sends nothing.
type notifications struct {
	sqs      *localsqs.Server
	notify   func(body string) // the destination of notifyARN (Config.Notify), or nil
	mu       sync.Mutex
	byBucket map[string]notificationConfiguration
}

func newNotifications(sqs *localsqs.Server) *notifications {
	return &notifications{sqs: sqs, byBucket: map[string]notificationConfiguration{}}
}

// set replaces bucket's configuration (an empty one removes it).
func (n *notifications) set(bucket string, c notificationConfiguration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(c.Queues) == 0 {
		delete(n.byBucket, bucket)
		return
	}
	n.byBucket[bucket] = c
}

func (n *notifications) get(bucket string) notificationConfiguration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byBucket[bucket]
}

// deliver sends body (built for each configuration's Id) to every queue bucket's configuration
// names for event on key, once per queue.
func (n *notifications) deliver(bucket, key, event string, body func(configurationID string) string) {
	sent := map[string]bool{}
	for _, q := range n.get(bucket).Queues {
		if sent[q.Queue] || !q.matches("s3:"+event, key) {
			continue
		}
		sent[q.Queue] = true
		if q.Queue == notifyARN && n.notify != nil {
			n.notify(body(q.ID))
			continue
		}
		if name, ok := n.sqs.QueueNameByARN(q.Queue); ok {
			n.sqs.Send(name, body(q.ID)) // a queue deleted since: the event is lost, as on AWS
		}
	}
}

// handler answers PutBucketNotificationConfiguration and GetBucketNotificationConfiguration
// (PUT and GET /BUCKET?notification, path-style) and passes everything else to next, the
// embedded S3.
func (n *notifications) handler(next http.Handler, exists func(bucket string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bucket := strings.Trim(r.URL.Path, "/")
		if _, ok := r.URL.Query()["notification"]; !ok || bucket == "" || strings.Contains(bucket, "/") {
			next.ServeHTTP(w, r)
			return
		}
		if !exists(bucket) {
			s3Error(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist", bucket)
			return
		}
		switch r.Method {
		case http.MethodGet:
			c := n.get(bucket)
			c.Xmlns = s3Namespace
			w.Header().Set("Content-Type", "application/xml")
			io.WriteString(w, xml.Header)
			xml.NewEncoder(w).Encode(c)
		case http.MethodPut:
			n.put(w, r, bucket)
		default:
			s3Error(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.", bucket)
		}
	})
}

func (n *notifications) put(w http.ResponseWriter, r *http.Request, bucket string) {
	var c notificationConfiguration
	if err := xml.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&c); err != nil {
		s3Error(w, http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed: "+err.Error(), bucket)
		return
	}
	if len(c.Topics)+len(c.Lambdas) > 0 || c.EventBridge != nil {
		s3Error(w, http.StatusBadRequest, "InvalidArgument", "devstack delivers to SQS queues only (QueueConfiguration); SNS, Lambda and EventBridge destinations are not supported", bucket)
		return
	}
	var unknown []string
	for i, q := range c.Queues {
		if _, ok := n.sqs.QueueNameByARN(q.Queue); !ok {
			unknown = append(unknown, q.Queue)
		}
		if len(q.Events) == 0 {
			s3Error(w, http.StatusBadRequest, "InvalidArgument", "a QueueConfiguration names no Event", bucket)
			return
		}
		for _, e := range q.Events {
			if !strings.HasPrefix(e, "s3:") {
				s3Error(w, http.StatusBadRequest, "InvalidArgument", fmt.Sprintf("The event is not supported for notifications: %s", e), bucket)
				return
			}
		}
		if q.ID == "" {
			c.Queues[i].ID = fmt.Sprintf("devstack-%d", i+1)
		}
	}
	if len(unknown) > 0 {
		// What S3 answers for a destination it cannot send to.
		s3Error(w, http.StatusBadRequest, "InvalidArgument", "Unable to validate the following destination configurations: no such queue "+strings.Join(unknown, ", "), bucket)
		return
	}
	c.Xmlns = ""
	n.set(bucket, c)
	// As S3 does, each queue newly configured receives an s3:TestEvent (Palleto skips it).
	test, _ := json.Marshal(map[string]string{"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": time.Now().UTC().Format(time.RFC3339Nano),
		"Bucket": bucket, "RequestId": "devstack", "HostId": "devstack"})
	sent := map[string]bool{}
	for _, q := range c.Queues {
		if name, ok := n.sqs.QueueNameByARN(q.Queue); ok && !sent[name] {
			sent[name] = true
			n.sqs.Send(name, string(test))
		}
	}
	w.WriteHeader(http.StatusOK)
}

func s3Error(w http.ResponseWriter, status int, code, message, resource string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	xml.NewEncoder(w).Encode(struct {
		XMLName   xml.Name `xml:"Error"`
		Code      string
		Message   string
		Resource  string
		RequestID string `xml:"RequestId"`
	}{Code: code, Message: message, Resource: resource, RequestID: "devstack"})
}
