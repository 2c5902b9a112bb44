package notify

import (
	"encoding/json"
	"net/url"
	"strings"
	"time"
)

// KeyEscape encodes a key as S3 does in its notifications: URL query encoding ('+' for a
// space), with '/' kept. Parse decodes it back exactly.
func KeyEscape(key string) string {
	return strings.ReplaceAll(url.QueryEscape(key), "%2F", "/")
}

// Body is the body of an S3 event notification of one record, as S3 sends it to SQS (a
// "Records" array, the key URL-encoded): what devstack and palleto backfill send, and what Parse
// reads back.
func Body(r Record, configurationID, principal string) string {
	object := map[string]any{"key": KeyEscape(r.Key), "size": r.Size, "eTag": r.ETag}
	if r.Sequencer != "" {
		object["sequencer"] = r.Sequencer
	}
	if r.VersionID != "" {
		object["versionId"] = r.VersionID
	}
	t := r.EventTime
	if t.IsZero() {
		t = time.Now()
	}
	body, _ := json.Marshal(map[string]any{"Records": []any{map[string]any{
		"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
		"eventTime": t.UTC().Format("2006-01-02T15:04:05.000Z"), "eventName": r.EventName,
		"userIdentity":      map[string]string{"principalId": principal},
		"requestParameters": map[string]string{"sourceIPAddress": "127.0.0.1"},
		"s3": map[string]any{"s3SchemaVersion": "1.0", "configurationId": configurationID,
			"bucket": map[string]any{"name": r.Bucket, "arn": "arn:aws:s3:::" + r.Bucket},
			"object": object},
	}}})
	return string(body)
}
