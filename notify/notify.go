// Package notify parses the bodies of S3 ObjectCreated notifications as they reach an SQS queue:
// straight from S3 (a "Records" array, keys URL-encoded with '+' for a space), wrapped in an SNS
// envelope, as an EventBridge event (keys not encoded), or the s3:TestEvent S3 sends when a
// notification is configured.
package notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// ErrMalformed is wrapped by every error Parse returns: the body cannot be understood, so no
// amount of retrying will help.
var ErrMalformed = errors.New("malformed notification")

// Format names the envelope a notification came in.
type Format string

const (
	FormatS3          Format = "s3"
	FormatSNS         Format = "sns"
	FormatEventBridge Format = "eventbridge"
	FormatTest        Format = "test" // s3:TestEvent: nothing to do
)

// Record is one object event.
type Record struct {
	EventName string    `json:"event_name"`
	EventTime time.Time `json:"event_time"`
	Bucket    string    `json:"bucket"`
	Key       string    `json:"key"` // decoded
	Size      int64     `json:"size"`
	ETag      string    `json:"etag"`
	VersionID string    `json:"version_id,omitempty"`
	Sequencer string    `json:"sequencer,omitempty"`
}

// Notification is a parsed message body.
type Notification struct {
	Format Format
	// Records are the ObjectCreated events, in message order.
	Records []Record
	// Skipped are events of other kinds (ObjectRemoved, Restore, ...), which Palleto ignores.
	Skipped []Record
}

// Parse parses one message body. Every error wraps ErrMalformed.
func Parse(body []byte) (Notification, error) {
	body = bytes.TrimSpace(body)
	var probe struct {
		Records    json.RawMessage `json:"Records"`
		Type       string          `json:"Type"`
		Message    *string         `json:"Message"`
		DetailType string          `json:"detail-type"`
		Detail     json.RawMessage `json:"detail"`
		Event      string          `json:"Event"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return Notification{}, malformed("not a JSON object: %v", err)
	}
	switch {
	case probe.Records != nil:
		return parseRecords(probe.Records, FormatS3)
	case probe.Type == "Notification" && probe.Message != nil:
		inner, err := Parse([]byte(*probe.Message))
		if err != nil {
			return Notification{}, fmt.Errorf("in SNS Message: %w", err)
		}
		if inner.Format == FormatS3 {
			inner.Format = FormatSNS
		}
		return inner, nil
	case probe.DetailType != "" && probe.Detail != nil:
		return parseEventBridge(probe.DetailType, probe.Detail)
	case probe.Event == "s3:TestEvent":
		return Notification{Format: FormatTest}, nil
	}
	return Notification{}, malformed("no Records, SNS Message, EventBridge detail or s3:TestEvent")
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

type s3Record struct {
	EventName string    `json:"eventName"`
	EventTime time.Time `json:"eventTime"`
	S3        struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key       *string `json:"key"`
			Size      int64   `json:"size"`
			ETag      string  `json:"eTag"`
			VersionID string  `json:"versionId"`
			Sequencer string  `json:"sequencer"`
		} `json:"object"`
	} `json:"s3"`
}

func parseRecords(raw json.RawMessage, f Format) (Notification, error) {
	var recs []s3Record
	if err := json.Unmarshal(raw, &recs); err != nil {
		return Notification{}, malformed("Records: %v", err)
	}
	if len(recs) == 0 {
		return Notification{}, malformed("Records is empty")
	}
	n := Notification{Format: f}
	for i, r := range recs {
		if r.S3.Bucket.Name == "" || r.S3.Object.Key == nil {
			return Notification{}, malformed("Records[%d]: no s3.bucket.name or s3.object.key", i)
		}
		key, err := url.QueryUnescape(*r.S3.Object.Key)
		if err != nil {
			return Notification{}, malformed("Records[%d]: key %q is not URL-encoded: %v", i, *r.S3.Object.Key, err)
		}
		rec := Record{
			EventName: r.EventName, EventTime: r.EventTime,
			Bucket: r.S3.Bucket.Name, Key: key, Size: r.S3.Object.Size,
			ETag: r.S3.Object.ETag, VersionID: r.S3.Object.VersionID, Sequencer: r.S3.Object.Sequencer,
		}
		// S3 writes "ObjectCreated:Put"; MinIO "s3:ObjectCreated:Put".
		if strings.HasPrefix(strings.TrimPrefix(r.EventName, "s3:"), "ObjectCreated:") {
			n.Records = append(n.Records, rec)
		} else {
			n.Skipped = append(n.Skipped, rec)
		}
	}
	return n, nil
}

func parseEventBridge(detailType string, raw json.RawMessage) (Notification, error) {
	var d struct {
		Bucket struct {
			Name string `json:"name"`
		} `json:"bucket"`
		Object struct {
			Key       *string `json:"key"`
			Size      int64   `json:"size"`
			ETag      string  `json:"etag"`
			VersionID string  `json:"version-id"`
			Sequencer string  `json:"sequencer"`
		} `json:"object"`
		Reason string `json:"reason"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return Notification{}, malformed("EventBridge detail: %v", err)
	}
	if d.Bucket.Name == "" || d.Object.Key == nil {
		return Notification{}, malformed("EventBridge detail: no bucket.name or object.key")
	}
	rec := Record{
		EventName: detailType, Bucket: d.Bucket.Name, Key: *d.Object.Key, Size: d.Object.Size,
		ETag: d.Object.ETag, VersionID: d.Object.VersionID, Sequencer: d.Object.Sequencer,
	}
	n := Notification{Format: FormatEventBridge}
	if detailType == "Object Created" {
		n.Records = []Record{rec}
	} else {
		n.Skipped = []Record{rec}
	}
	return n, nil
}
