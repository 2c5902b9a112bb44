package notify

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
)

const s3Body = `{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2016-07-21T10:00:00.000Z","eventName":"ObjectCreated:Put","s3":{"s3SchemaVersion":"1.0","configurationId":"c","bucket":{"name":"packrat","arn":"arn:aws:s3:::packrat"},"object":{"key":"data/2016+07+21/log%2B1.gz","size":1024,"eTag":"d41d8cd98f00b204e9800998ecf8427e","versionId":"v1","sequencer":"0055AED6DCD90281E5"}}},{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2016-07-21T10:00:01.000Z","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"packrat"},"object":{"key":"old.gz","sequencer":"1"}}},{"eventVersion":"2.1","eventSource":"aws:s3","eventTime":"2016-07-21T10:00:02.000Z","eventName":"ObjectCreated:CompleteMultipartUpload","s3":{"bucket":{"name":"packrat"},"object":{"key":"big.gz","size":99,"eTag":"abc-2"}}}]}`

const testEvent = `{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2016-07-21T10:00:00.000Z","Bucket":"packrat","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"}`

const eventBridge = `{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created","source":"aws.s3","account":"111122223333","time":"2021-11-12T00:00:00Z","region":"ca-central-1","resources":["arn:aws:s3:::packrat"],"detail":{"version":"0","bucket":{"name":"packrat"},"object":{"key":"raw/2023-08-08T14:03:40 a+b.zip","size":5,"etag":"b1946ac92492d2347c6235b4d2611184","version-id":"IYV3p45BT0ac8hjHg1houSdS1a.Mro8e","sequencer":"00617F08299329D189"},"request-id":"N4N7GDK58NMKJ12R","requester":"123456789012","source-ip-address":"1.2.3.4","reason":"PutObject"}}`

func snsWrap(inner string) string {
	b, _ := json.Marshal(map[string]string{"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t", "Subject": "Amazon S3 Notification", "Message": inner})
	return string(b)
}

func TestParse(t *testing.T) {
	minio, err := os.ReadFile("testdata/minio-put.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		body    string
		format  Format
		keys    []string
		skipped int
		version string
	}{
		{"s3 with skipped delete", s3Body, FormatS3, []string{"data/2016 07 21/log+1.gz", "big.gz"}, 1, "v1"},
		{"sns-wrapped s3", snsWrap(s3Body), FormatSNS, []string{"data/2016 07 21/log+1.gz", "big.gz"}, 1, "v1"},
		{"sns-wrapped test event", snsWrap(testEvent), FormatTest, nil, 0, ""},
		{"eventbridge keys are not encoded", eventBridge, FormatEventBridge, []string{"raw/2023-08-08T14:03:40 a+b.zip"}, 0, "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"},
		{"s3 test event", testEvent, FormatTest, nil, 0, ""},
		{"captured from MinIO", string(minio), FormatS3, []string{"dir/a b+c%d/ü.gz"}, 0, ""},
		{"leading whitespace", "\n  " + s3Body, FormatS3, []string{"data/2016 07 21/log+1.gz", "big.gz"}, 1, "v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Parse([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if n.Format != tt.format || len(n.Records) != len(tt.keys) || len(n.Skipped) != tt.skipped {
				t.Fatalf("got %+v", n)
			}
			for i, k := range tt.keys {
				if n.Records[i].Key != k {
					t.Errorf("record %d key %q, want %q", i, n.Records[i].Key, k)
				}
			}
			if len(tt.keys) > 0 && n.Records[0].VersionID != tt.version {
				t.Errorf("version %q, want %q", n.Records[0].VersionID, tt.version)
			}
		})
	}
}

func TestParseMinIOFields(t *testing.T) {
	minio, _ := os.ReadFile("testdata/minio-put.json")
	n, err := Parse(minio)
	if err != nil {
		t.Fatal(err)
	}
	r := n.Records[0]
	if r.Bucket != "capture-bucket" || r.Size != 2 || r.ETag != "401b30e3b8b5d629635a5c613cdb7919" || r.EventName != "s3:ObjectCreated:Put" || r.EventTime.IsZero() {
		t.Fatalf("%+v", r)
	}
}

func TestParseMalformed(t *testing.T) {
	for name, body := range map[string]string{
		"empty":              "",
		"not json":           "hello",
		"truncated":          `{"Records":[{"s3":`,
		"array":              `[1,2]`,
		"unknown object":     `{"hello":"world"}`,
		"empty records":      `{"Records":[]}`,
		"records not array":  `{"Records":"x"}`,
		"no bucket":          `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}`,
		"no key":             `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"}}}]}`,
		"bad escape":         `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%zz"}}}]}`,
		"sns with bad inner": snsWrap("nope"),
		"eventbridge no key": `{"detail-type":"Object Created","detail":{"bucket":{"name":"b"}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(body))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	minio, _ := os.ReadFile("testdata/minio-put.json")
	for _, s := range []string{s3Body, testEvent, eventBridge, snsWrap(s3Body), string(minio), "{}", `{"Records":[{}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		for _, r := range n.Records {
			if r.Bucket == "" {
				t.Fatalf("record with no bucket: %+v", r)
			}
		}
	})
}
