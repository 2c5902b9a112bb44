// Package localsqs is a small SQS server speaking the JSON protocol of the current AWS SDKs, for
// local development and the embedded demo ONLY: one process, in memory, no auth, no FIFO. It
// implements what Palleto and its tests use: CreateQueue, GetQueueUrl, ListQueues, DeleteQueue,
// PurgeQueue, Get/SetQueueAttributes, SendMessage(Batch), ReceiveMessage (long polling that
// returns as soon as any message is there), DeleteMessage(Batch), ChangeMessageVisibility(Batch),
// ApproximateReceiveCount and a RedrivePolicy to a dead-letter queue. It passes the same
// conformance tests as local-aws-sqs (see conformance_test.go).
package localsqs

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"
)

type message struct {
	id, body, md5Body, md5Attrs string
	attrs                       map[string]Attr
	sent, firstReceive, visible time.Time
	receives                    int
	receipt                     string // current receipt handle; "" until received
}

// Attr is a message attribute value.
type Attr struct {
	DataType    string `json:"DataType"`
	StringValue string `json:"StringValue,omitempty"`
	BinaryValue []byte `json:"BinaryValue,omitempty"`
}

type queue struct {
	name, url, arn string

	mu         sync.Mutex
	msgs       []*message
	byReceipt  map[string]*message
	wake       chan struct{} // closed and replaced whenever a message may have become visible
	visibility time.Duration
	delay      time.Duration
	dlqARN     string
	maxRecv    int
	attrs      map[string]string // other attributes as set
}

func newQueue(name, url, arn string) *queue {
	return &queue{name: name, url: url, arn: arn, byReceipt: map[string]*message{}, wake: make(chan struct{}),
		visibility: 30 * time.Second, attrs: map[string]string{}}
}

func (q *queue) signal() { // q.mu held
	close(q.wake)
	q.wake = make(chan struct{})
}

func newID() string {
	var b [16]byte
	rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func md5hex(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// md5Attrs is SQS's digest of message attributes: names sorted; for each, the length-prefixed
// name, data type, a transport byte (1 string, 2 binary) and length-prefixed value.
func md5Attrs(attrs map[string]Attr) string {
	if len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf []byte
	put := func(b []byte) {
		buf = append(buf, byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b)))
		buf = append(buf, b...)
	}
	for _, n := range names {
		a := attrs[n]
		put([]byte(n))
		put([]byte(a.DataType))
		if a.BinaryValue != nil {
			buf = append(buf, 2)
			put(a.BinaryValue)
		} else {
			buf = append(buf, 1)
			put([]byte(a.StringValue))
		}
	}
	return md5hex(buf)
}

func (q *queue) send(body string, attrs map[string]Attr, delay time.Duration) *message {
	now := time.Now()
	m := &message{id: newID(), body: body, md5Body: md5hex([]byte(body)), attrs: attrs, md5Attrs: md5Attrs(attrs), sent: now}
	q.mu.Lock()
	defer q.mu.Unlock()
	if delay == 0 {
		delay = q.delay
	}
	m.visible = now.Add(delay)
	q.msgs = append(q.msgs, m)
	q.signal()
	return m
}

// take removes up to max visible messages' visibility, or moves them to the DLQ past the
// redrive limit. dlq is called with q.mu held for messages to move.
func (q *queue) take(max int, vis time.Duration, dlq func(*message)) []*message {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []*message
	kept := q.msgs[:0]
	for _, m := range q.msgs {
		if len(out) < max && !m.visible.After(now) {
			if q.maxRecv > 0 && m.receives >= q.maxRecv && dlq != nil {
				delete(q.byReceipt, m.receipt)
				dlq(m)
				continue
			}
			m.receives++
			if m.firstReceive.IsZero() {
				m.firstReceive = now
			}
			delete(q.byReceipt, m.receipt)
			m.receipt = newID() + "#" + m.id
			q.byReceipt[m.receipt] = m
			m.visible = now.Add(vis)
			out = append(out, m)
		}
		kept = append(kept, m)
	}
	for i := len(kept); i < len(q.msgs); i++ {
		q.msgs[i] = nil
	}
	q.msgs = kept
	return out
}

// nextVisible is when the next invisible message becomes visible (zero if none).
func (q *queue) nextVisible() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	var next time.Time
	now := time.Now()
	for _, m := range q.msgs {
		if m.visible.After(now) && (next.IsZero() || m.visible.Before(next)) {
			next = m.visible
		}
	}
	return next
}

func (q *queue) remove(receipt string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, ok := q.byReceipt[receipt]
	if !ok {
		return false
	}
	delete(q.byReceipt, receipt)
	for i, x := range q.msgs {
		if x == m {
			q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
			break
		}
	}
	return true
}

// changeVisibility returns an error code, or "".
func (q *queue) changeVisibility(receipt string, d time.Duration) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	m, ok := q.byReceipt[receipt]
	if !ok {
		return "ReceiptHandleIsInvalid"
	}
	now := time.Now()
	if !m.visible.After(now) {
		return "MessageNotInflight"
	}
	m.visible = now.Add(d)
	q.signal()
	return ""
}

func (q *queue) counts() (visible, inflight, delayed int) {
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range q.msgs {
		switch {
		case !m.visible.After(now):
			visible++
		case m.receives > 0:
			inflight++
		default:
			delayed++
		}
	}
	return
}

func (q *queue) attributes() map[string]string {
	v, f, d := q.counts()
	q.mu.Lock()
	defer q.mu.Unlock()
	a := map[string]string{}
	for k, x := range q.attrs {
		a[k] = x
	}
	a["QueueArn"] = q.arn
	a["VisibilityTimeout"] = strconv.Itoa(int(q.visibility / time.Second))
	a["DelaySeconds"] = strconv.Itoa(int(q.delay / time.Second))
	a["ApproximateNumberOfMessages"] = strconv.Itoa(v)
	a["ApproximateNumberOfMessagesNotVisible"] = strconv.Itoa(f)
	a["ApproximateNumberOfMessagesDelayed"] = strconv.Itoa(d)
	if q.dlqARN != "" {
		a["RedrivePolicy"] = fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":%d}`, q.dlqARN, q.maxRecv)
	}
	return a
}
