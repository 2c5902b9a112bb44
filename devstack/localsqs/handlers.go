package localsqs

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

type handler func(s *Server, r *http.Request, in map[string]json.RawMessage) (any, *apiError)

var handlers = map[string]handler{
	"CreateQueue":                  createQueue,
	"GetQueueUrl":                  getQueueURL,
	"ListQueues":                   listQueues,
	"DeleteQueue":                  deleteQueue,
	"PurgeQueue":                   purgeQueue,
	"GetQueueAttributes":           getQueueAttributes,
	"SetQueueAttributes":           setQueueAttributes,
	"SendMessage":                  sendMessage,
	"SendMessageBatch":             sendMessageBatch,
	"ReceiveMessage":               receiveMessage,
	"DeleteMessage":                deleteMessage,
	"DeleteMessageBatch":           deleteMessageBatch,
	"ChangeMessageVisibility":      changeMessageVisibility,
	"ChangeMessageVisibilityBatch": changeMessageVisibilityBatch,
}

func decode(in map[string]json.RawMessage, v any) *apiError {
	b, _ := json.Marshal(in)
	if err := json.Unmarshal(b, v); err != nil {
		return errBadRequest("InvalidParameterValue", "%v", err)
	}
	return nil
}

func validName(n string) bool {
	if n == "" || len(n) > 80 {
		return false
	}
	for _, c := range n {
		if !(c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

func createQueue(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	var req struct {
		QueueName  string
		Attributes map[string]string
	}
	if err := decode(in, &req); err != nil {
		return nil, err
	}
	if !validName(req.QueueName) {
		return nil, errBadRequest("InvalidParameterValue", "QueueName %q: 1-80 characters of [A-Za-z0-9_-]", req.QueueName)
	}
	s.mu.Lock()
	q := s.createLocked(req.QueueName)
	s.mu.Unlock()
	if err := setAttributes(q, req.Attributes); err != nil {
		return nil, err
	}
	return map[string]string{"QueueUrl": q.url}, nil
}

func getQueueURL(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	var req struct{ QueueName string }
	if err := decode(in, &req); err != nil {
		return nil, err
	}
	q, err := s.lookup(req.QueueName)
	if err != nil {
		return nil, err
	}
	return map[string]string{"QueueUrl": q.url}, nil
}

func listQueues(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	var req struct{ QueueNamePrefix string }
	if err := decode(in, &req); err != nil {
		return nil, err
	}
	s.mu.Lock()
	urls := []string{}
	for n, q := range s.queues {
		if strings.HasPrefix(n, req.QueueNamePrefix) {
			urls = append(urls, q.url)
		}
	}
	s.mu.Unlock()
	sort.Strings(urls)
	return map[string][]string{"QueueUrls": urls}, nil
}

func deleteQueue(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	q, err := s.queueByURL(in["QueueUrl"])
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	delete(s.queues, q.name)
	s.mu.Unlock()
	return struct{}{}, nil
}

func purgeQueue(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	q, err := s.queueByURL(in["QueueUrl"])
	if err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.msgs = nil
	q.byReceipt = map[string]*message{}
	q.mu.Unlock()
	return struct{}{}, nil
}

func getQueueAttributes(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	q, err := s.queueByURL(in["QueueUrl"])
	if err != nil {
		return nil, err
	}
	var req struct{ AttributeNames []string }
	if err := decode(in, &req); err != nil {
		return nil, err
	}
	all := q.attributes()
	out := map[string]string{}
	for _, n := range req.AttributeNames {
		if n == "All" {
			out = all
			break
		}
		if v, ok := all[n]; ok {
			out[n] = v
		}
	}
	return map[string]any{"Attributes": out}, nil
}

func setQueueAttributes(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	q, err := s.queueByURL(in["QueueUrl"])
	if err != nil {
		return nil, err
	}
	var req struct{ Attributes map[string]string }
	if err := decode(in, &req); err != nil {
		return nil, err
	}
	return struct{}{}, setAttributes(q, req.Attributes)
}

type sendEntry struct {
	Id                string
	MessageBody       string
	DelaySeconds      int
	MessageAttributes map[string]Attr
}

func (e sendEntry) check() *apiError {
	if e.MessageBody == "" {
		return errBadRequest("MissingParameter", "MessageBody is required")
	}
	if len(e.MessageBody) > 256*1024 {
		return errBadRequest("InvalidParameterValue", "MessageBody is %d bytes, over the 262144 limit", len(e.MessageBody))
	}
	if e.DelaySeconds < 0 || e.DelaySeconds > 900 {
		return errBadRequest("InvalidParameterValue", "DelaySeconds %d is not in [0, 900]", e.DelaySeconds)
	}
	return nil
}

func sendResult(m *message) map[string]string {
	out := map[string]string{"MessageId": m.id, "MD5OfMessageBody": m.md5Body}
	if m.md5Attrs != "" {
		out["MD5OfMessageAttributes"] = m.md5Attrs
	}
	return out
}

func sendMessage(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	q, err := s.queueByURL(in["QueueUrl"])
	if err != nil {
		return nil, err
	}
	var e sendEntry
	if err := decode(in, &e); err != nil {
		return nil, err
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	return sendResult(q.send(e.MessageBody, e.MessageAttributes, time.Duration(e.DelaySeconds)*time.Second)), nil
}

type batchFailure struct {
	Id          string
	SenderFault bool
	Code        string
	Message     string
}

func sendMessageBatch(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	q, err := s.queueByURL(in["QueueUrl"])
	if err != nil {
		return nil, err
	}
	var req struct{ Entries []sendEntry }
	if err := decode(in, &req); err != nil {
		return nil, err
	}
	if len(req.Entries) == 0 || len(req.Entries) > 10 {
		return nil, errBadRequest("TooManyEntriesInBatchRequest", "a batch holds 1 to 10 entries, not %d", len(req.Entries))
	}
	ok := []map[string]string{}
	failed := []batchFailure{}
	for _, e := range req.Entries {
		if err := e.check(); err != nil {
			failed = append(failed, batchFailure{Id: e.Id, SenderFault: true, Code: err.code, Message: err.text})
			continue
		}
		r := sendResult(q.send(e.MessageBody, e.MessageAttributes, time.Duration(e.DelaySeconds)*time.Second))
		r["Id"] = e.Id
		ok = append(ok, r)
	}
	return map[string]any{"Successful": ok, "Failed": failed}, nil
}

func receiveMessage(s *Server, r *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	q, err := s.queueByURL(in["QueueUrl"])
	if err != nil {
		return nil, err
	}
	var req struct {
		MaxNumberOfMessages         *int
		WaitTimeSeconds             *int
		VisibilityTimeout           *int
		AttributeNames              []string
		MessageSystemAttributeNames []string
		MessageAttributeNames       []string
	}
	if err := decode(in, &req); err != nil {
		return nil, err
	}
	max, wait := 1, 0
	if req.MaxNumberOfMessages != nil {
		max = *req.MaxNumberOfMessages
	}
	if max < 1 || max > 10 {
		return nil, errBadRequest("InvalidParameterValue", "MaxNumberOfMessages %d is not in [1, 10]", max)
	}
	if req.WaitTimeSeconds != nil {
		wait = *req.WaitTimeSeconds
	}
	if wait < 0 || wait > 20 {
		return nil, errBadRequest("InvalidParameterValue", "WaitTimeSeconds %d is not in [0, 20]", wait)
	}
	q.mu.Lock()
	vis := q.visibility
	q.mu.Unlock()
	if req.VisibilityTimeout != nil {
		vis = time.Duration(*req.VisibilityTimeout) * time.Second
	}
	moveToDLQ := func(m *message) { // called with q.mu held
		dlq := s.queueByARN(q.dlqARN)
		if dlq == nil {
			return
		}
		dlq.mu.Lock()
		m.visible = time.Now()
		m.receives = 0
		m.receipt = ""
		dlq.msgs = append(dlq.msgs, m)
		dlq.signal()
		dlq.mu.Unlock()
	}
	deadline := time.Now().Add(time.Duration(wait) * time.Second)
	var got []*message
	for {
		q.mu.Lock()
		wake := q.wake
		q.mu.Unlock()
		got = q.take(max, vis, moveToDLQ)
		if len(got) > 0 || !time.Now().Before(deadline) {
			break
		}
		until := time.Until(deadline)
		if next := q.nextVisible(); !next.IsZero() && time.Until(next) < until {
			until = max0(time.Until(next))
		}
		t := time.NewTimer(until)
		select {
		case <-wake:
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return map[string]any{"Messages": []any{}}, nil
		}
		t.Stop()
	}
	want := map[string]bool{}
	for _, n := range append(req.AttributeNames, req.MessageSystemAttributeNames...) {
		want[n] = true
	}
	msgs := make([]map[string]any, 0, len(got))
	for _, m := range got {
		sys := map[string]string{
			"ApproximateReceiveCount":          strconv.Itoa(m.receives),
			"SentTimestamp":                    strconv.FormatInt(m.sent.UnixMilli(), 10),
			"ApproximateFirstReceiveTimestamp": strconv.FormatInt(m.firstReceive.UnixMilli(), 10),
			"SenderId":                         "000000000000",
		}
		attrs := map[string]string{}
		for k, v := range sys {
			if want["All"] || want[k] {
				attrs[k] = v
			}
		}
		out := map[string]any{"MessageId": m.id, "ReceiptHandle": m.receipt, "MD5OfBody": m.md5Body, "Body": m.body}
		if len(attrs) > 0 {
			out["Attributes"] = attrs
		}
		if sel := selectAttrs(m.attrs, req.MessageAttributeNames); len(sel) > 0 {
			out["MessageAttributes"] = sel
			out["MD5OfMessageAttributes"] = md5Attrs(sel)
		}
		msgs = append(msgs, out)
	}
	return map[string]any{"Messages": msgs}, nil
}

func max0(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}

func selectAttrs(attrs map[string]Attr, names []string) map[string]Attr {
	out := map[string]Attr{}
	for k, v := range attrs {
		for _, n := range names {
			if n == "All" || n == ".*" || n == k || (strings.HasSuffix(n, ".*") && strings.HasPrefix(k, strings.TrimSuffix(n, "*"))) {
				out[k] = v
				break
			}
		}
	}
	return out
}

func deleteMessage(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	q, err := s.queueByURL(in["QueueUrl"])
	if err != nil {
		return nil, err
	}
	var req struct{ ReceiptHandle string }
	if err := decode(in, &req); err != nil {
		return nil, err
	}
	if !q.remove(req.ReceiptHandle) {
		return nil, errBadRequest("ReceiptHandleIsInvalid", "the receipt handle %q is not valid", req.ReceiptHandle)
	}
	return struct{}{}, nil
}

type receiptEntry struct {
	Id                string
	ReceiptHandle     string
	VisibilityTimeout int
}

func batchEntries(in map[string]json.RawMessage) ([]receiptEntry, *apiError) {
	var req struct{ Entries []receiptEntry }
	if err := decode(in, &req); err != nil {
		return nil, err
	}
	if len(req.Entries) == 0 {
		return nil, errBadRequest("EmptyBatchRequest", "the batch has no entries")
	}
	if len(req.Entries) > 10 {
		return nil, errBadRequest("TooManyEntriesInBatchRequest", "a batch holds at most 10 entries, not %d", len(req.Entries))
	}
	return req.Entries, nil
}

// eachEntry runs a batch call: do returns an error code and message for an entry that fails.
func eachEntry(s *Server, in map[string]json.RawMessage, do func(q *queue, e receiptEntry) (code, msg string)) (any, *apiError) {
	q, err := s.queueByURL(in["QueueUrl"])
	if err != nil {
		return nil, err
	}
	entries, err := batchEntries(in)
	if err != nil {
		return nil, err
	}
	ok := []map[string]string{}
	failed := []batchFailure{}
	for _, e := range entries {
		if code, msg := do(q, e); code != "" {
			failed = append(failed, batchFailure{Id: e.Id, SenderFault: true, Code: code, Message: msg})
		} else {
			ok = append(ok, map[string]string{"Id": e.Id})
		}
	}
	return map[string]any{"Successful": ok, "Failed": failed}, nil
}

func deleteMessageBatch(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	return eachEntry(s, in, func(q *queue, e receiptEntry) (string, string) {
		if !q.remove(e.ReceiptHandle) {
			return "ReceiptHandleIsInvalid", "the receipt handle is not valid"
		}
		return "", ""
	})
}

func changeMessageVisibility(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	q, err := s.queueByURL(in["QueueUrl"])
	if err != nil {
		return nil, err
	}
	var e receiptEntry
	if err := decode(in, &e); err != nil {
		return nil, err
	}
	if e.VisibilityTimeout < 0 || e.VisibilityTimeout > 43200 {
		return nil, errBadRequest("InvalidParameterValue", "VisibilityTimeout %d is not in [0, 43200]", e.VisibilityTimeout)
	}
	if code := q.changeVisibility(e.ReceiptHandle, time.Duration(e.VisibilityTimeout)*time.Second); code != "" {
		return nil, errBadRequest(code, "cannot change the visibility of receipt handle %q", e.ReceiptHandle)
	}
	return struct{}{}, nil
}

func changeMessageVisibilityBatch(s *Server, _ *http.Request, in map[string]json.RawMessage) (any, *apiError) {
	return eachEntry(s, in, func(q *queue, e receiptEntry) (string, string) {
		if e.VisibilityTimeout < 0 || e.VisibilityTimeout > 43200 {
			return "InvalidParameterValue", "VisibilityTimeout out of range"
		}
		if code := q.changeVisibility(e.ReceiptHandle, time.Duration(e.VisibilityTimeout)*time.Second); code != "" {
			return code, "cannot change visibility"
		}
		return "", ""
	})
}
