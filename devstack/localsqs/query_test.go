package localsqs

import (
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// query makes one Query-protocol call, as the AWS CLI 2.9 and the older SDKs do, and returns
// the status and the XML.
func query(t *testing.T, endpoint string, params url.Values) (int, string) {
	t.Helper()
	params.Set("Version", "2012-11-05")
	resp, err := http.Post(endpoint, "application/x-www-form-urlencoded; charset=utf-8", strings.NewReader(params.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

type receiveXML struct {
	Messages []struct {
		MessageId, ReceiptHandle, Body, MD5OfBody string
		Attributes                                []struct{ Name, Value string } `xml:"Attribute"`
		MessageAttributes                         []struct {
			Name  string
			Value struct{ DataType, StringValue string }
		} `xml:"MessageAttribute"`
	} `xml:"ReceiveMessageResult>Message"`
}

// TestQueryProtocol drives a queue through the Query protocol only: create, send with an
// attribute, a batch, receive with attributes, change visibility, delete (one and a batch), get
// its attributes, and a missing queue's error.
func TestQueryProtocol(t *testing.T) {
	_, base, stop, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	code, out := query(t, base, url.Values{"Action": {"CreateQueue"}, "QueueName": {"q"}, "Attribute.1.Name": {"VisibilityTimeout"}, "Attribute.1.Value": {"30"}})
	var created struct {
		QueueUrl string `xml:"CreateQueueResult>QueueUrl"`
	}
	if code != 200 || xml.Unmarshal([]byte(out), &created) != nil || !strings.HasSuffix(created.QueueUrl, "/q") {
		t.Fatalf("CreateQueue: %d %s", code, out)
	}
	q := created.QueueUrl
	if code, out = query(t, base, url.Values{"Action": {"SendMessage"}, "QueueUrl": {q}, "MessageBody": {"hello <&> world"},
		"MessageAttribute.1.Name": {"kind"}, "MessageAttribute.1.Value.DataType": {"String"}, "MessageAttribute.1.Value.StringValue": {"greeting"}}); code != 200 || !strings.Contains(out, "<MD5OfMessageBody>") {
		t.Fatalf("SendMessage: %d %s", code, out)
	}
	if code, out = query(t, base, url.Values{"Action": {"SendMessageBatch"}, "QueueUrl": {q},
		"SendMessageBatchRequestEntry.1.Id": {"a"}, "SendMessageBatchRequestEntry.1.MessageBody": {"one"},
		"SendMessageBatchRequestEntry.2.Id": {"b"}, "SendMessageBatchRequestEntry.2.MessageBody": {"two"}}); code != 200 || strings.Count(out, "<SendMessageBatchResultEntry>") != 2 {
		t.Fatalf("SendMessageBatch: %d %s", code, out)
	}
	code, out = query(t, base, url.Values{"Action": {"ReceiveMessage"}, "QueueUrl": {q}, "MaxNumberOfMessages": {"10"}, "WaitTimeSeconds": {"1"},
		"AttributeName.1": {"All"}, "MessageAttributeName.1": {"All"}})
	var got receiveXML
	if code != 200 || xml.Unmarshal([]byte(out), &got) != nil || len(got.Messages) != 3 {
		t.Fatalf("ReceiveMessage: %d %s", code, out)
	}
	var first = got.Messages[0]
	for _, m := range got.Messages {
		if m.Body == "hello <&> world" {
			first = m
		}
	}
	if first.Body != "hello <&> world" || len(first.MessageAttributes) != 1 || first.MessageAttributes[0].Value.StringValue != "greeting" || len(first.Attributes) == 0 {
		t.Fatalf("the message read back: %+v\n%s", first, out)
	}
	if code, out = query(t, base, url.Values{"Action": {"ChangeMessageVisibilityBatch"}, "QueueUrl": {q},
		"ChangeMessageVisibilityBatchRequestEntry.1.Id": {"0"}, "ChangeMessageVisibilityBatchRequestEntry.1.ReceiptHandle": {got.Messages[1].ReceiptHandle},
		"ChangeMessageVisibilityBatchRequestEntry.1.VisibilityTimeout": {"0"}}); code != 200 || !strings.Contains(out, "<ChangeMessageVisibilityBatchResultEntry><Id>0</Id>") {
		t.Fatalf("ChangeMessageVisibilityBatch: %d %s", code, out)
	}
	if code, out = query(t, base, url.Values{"Action": {"DeleteMessage"}, "QueueUrl": {q}, "ReceiptHandle": {got.Messages[0].ReceiptHandle}}); code != 200 {
		t.Fatalf("DeleteMessage: %d %s", code, out)
	}
	if code, out = query(t, base, url.Values{"Action": {"DeleteMessageBatch"}, "QueueUrl": {q},
		"DeleteMessageBatchRequestEntry.1.Id": {"x"}, "DeleteMessageBatchRequestEntry.1.ReceiptHandle": {got.Messages[2].ReceiptHandle},
		"DeleteMessageBatchRequestEntry.2.Id": {"y"}, "DeleteMessageBatchRequestEntry.2.ReceiptHandle": {"bogus"}}); code != 200 ||
		!strings.Contains(out, "<DeleteMessageBatchResultEntry><Id>x</Id>") || !strings.Contains(out, "<BatchResultErrorEntry>") {
		t.Fatalf("DeleteMessageBatch: %d %s", code, out)
	}
	code, out = query(t, base, url.Values{"Action": {"GetQueueAttributes"}, "QueueUrl": {q}, "AttributeName.1": {"All"}})
	var attrs struct {
		Attrs []struct{ Name, Value string } `xml:"GetQueueAttributesResult>Attribute"`
	}
	xml.Unmarshal([]byte(out), &attrs)
	values := map[string]string{}
	for _, a := range attrs.Attrs {
		values[a.Name] = a.Value
	}
	if code != 200 || values["ApproximateNumberOfMessages"] != "1" || values["VisibilityTimeout"] != "30" {
		t.Fatalf("GetQueueAttributes: %d %v\n%s", code, values, out)
	}
	code, out = query(t, base, url.Values{"Action": {"GetQueueAttributes"}, "QueueUrl": {base + "/000000000000/nope"}, "AttributeName.1": {"All"}})
	if code != 400 || !strings.Contains(out, "<Code>AWS.SimpleQueueService.NonExistentQueue</Code>") {
		t.Fatalf("a missing queue: %d %s", code, out)
	}
}
