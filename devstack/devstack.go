// Package devstack runs an S3 and an SQS endpoint inside the process, on 127.0.0.1, wired the way
// AWS wires them: every object created in the embedded S3 (PUT, copy, multipart completion)
// sends an AWS-format S3 event notification to the queues its bucket's notification
// configuration names (PutBucketNotificationConfiguration, queue ARNs, events and key filters,
// as on AWS); the configured bucket notifies the configured queue from the start. It is for development, the
// demo and tests ONLY: everything is in memory, there is no authentication, and only what Palleto
// uses is implemented. S3 is github.com/johannesboyne/gofakes3; SQS is devstack/localsqs.
package devstack

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/palleto/palleto/devstack/localsqs"
	"github.com/palleto/palleto/notify"
)

// Config says where the stack listens and what it creates.
type Config struct {
	S3Addr, SQSAddr string // host:port; port 0 picks a free one
	Bucket          string // created at start
	Queue           string // receives the bucket's notifications (other buckets notify the queues their configuration names)
	DLQ             string // dead-letter queue of Queue ("" for none)
	MaxReceives     int    // the redrive policy's maxReceiveCount (default 10)
	// Notify, when set, is where the demo bucket's notifications go instead of Queue (the
	// publisher of another transport: palleto demo --source nats).
	Notify func(body string)
}

// DefaultConfig listens on free ports with bucket and queue "uploads" and DLQ "uploads-dlq",
// whose redrive moves a message after 10 receipts: twice palleto run's --max-receives (5), as
// DEPLOY.md asks of a real queue, so that Palleto's own guard decides.
func DefaultConfig() Config {
	return Config{S3Addr: "127.0.0.1:0", SQSAddr: "127.0.0.1:0", Bucket: "uploads", Queue: "uploads", DLQ: "uploads-dlq", MaxReceives: 10}
}

// Stack is a running embedded S3 + SQS.
type Stack struct {
	S3Endpoint, SQSEndpoint string
	Bucket, QueueURL        string
	DLQURL                  string
	SQS                     *localsqs.Server

	stops []func()
}

// Start starts the stack. Close stops it.
func Start(cfg Config) (*Stack, error) {
	st := &Stack{Bucket: cfg.Bucket}
	sqsSrv, sqsURL, stopSQS, err := localsqs.Listen(cfg.SQSAddr)
	if err != nil {
		return nil, fmt.Errorf("devstack SQS on %s: %w", cfg.SQSAddr, err)
	}
	st.stops = append(st.stops, stopSQS)
	st.SQS, st.SQSEndpoint = sqsSrv, sqsURL
	st.QueueURL = sqsSrv.Queue(cfg.Queue)
	if cfg.DLQ != "" {
		st.DLQURL = sqsSrv.Queue(cfg.DLQ)
		if cfg.MaxReceives == 0 {
			cfg.MaxReceives = DefaultConfig().MaxReceives
		}
		if err := sqsSrv.SetRedrive(cfg.Queue, cfg.DLQ, cfg.MaxReceives); err != nil {
			st.Close()
			return nil, err
		}
	}

	backend := &notifying{Backend: s3mem.New(), routes: newNotifications(sqsSrv)}
	if cfg.Bucket != "" && cfg.Queue != "" {
		// The default wiring (the demo's): the bucket's ObjectCreated events go to the queue, or
		// to Notify when set (another transport: palleto demo --source nats).
		target := sqsSrv.QueueARN(cfg.Queue)
		if cfg.Notify != nil {
			backend.routes.notify, target = cfg.Notify, notifyARN
		}
		backend.routes.set(cfg.Bucket, notificationConfiguration{Queues: []queueConfiguration{
			{ID: "devstack", Queue: target, Events: []string{"s3:ObjectCreated:*"}}}})
	}
	faker := gofakes3.New(backend, gofakes3.WithTimeSkewLimit(0), gofakes3.WithLogger(gofakes3.DiscardLog()))
	ln, err := net.Listen("tcp", cfg.S3Addr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("devstack S3 on %s: %w", cfg.S3Addr, err)
	}
	exists := func(bucket string) bool { ok, err := backend.BucketExists(bucket); return ok && err == nil }
	hs := &http.Server{Handler: backend.routes.handler(faker.Server(), exists), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); hs.Serve(ln) }()
	st.stops = append(st.stops, func() { hs.Close(); <-done })
	st.S3Endpoint = "http://" + ln.Addr().String()
	if cfg.Bucket != "" {
		if err := backend.CreateBucket(cfg.Bucket); err != nil {
			st.Close()
			return nil, fmt.Errorf("devstack bucket %s: %w", cfg.Bucket, err)
		}
	}
	return st, nil
}

// Env is the environment that points AWS SDKs and tools (and `palleto run`) at the stack.
func (s *Stack) Env() []string {
	return []string{
		"AWS_REGION=us-east-1",
		"AWS_DEFAULT_REGION=us-east-1", // older tools (AWS CLI 1, boto3) read only this one
		"AWS_ACCESS_KEY_ID=devstack",
		"AWS_SECRET_ACCESS_KEY=devstack",
		"AWS_ENDPOINT_URL_S3=" + s.S3Endpoint,
		"AWS_ENDPOINT_URL_SQS=" + s.SQSEndpoint,
	}
}

// Close stops both servers.
func (s *Stack) Close() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

// notifying wraps a gofakes3 backend so that every object creation sends an S3 event to the
// queues its bucket's notification configuration names (routes). It does not implement
// gofakes3.MultipartBackend, so gofakes3 assembles multipart uploads itself and stores them with
// PutObject: a completed multipart upload is notified too.
type notifying struct {
	gofakes3.Backend
	routes *notifications
}

// DeleteBucket forgets the bucket's notification configuration with it, as S3 does.
func (n *notifying) DeleteBucket(name string) error {
	err := n.Backend.DeleteBucket(name)
	if err == nil {
		n.routes.set(name, notificationConfiguration{})
	}
	return err
}

func (n *notifying) PutObject(bucket, key string, meta map[string]string, input io.Reader, size int64, cond *gofakes3.PutConditions) (gofakes3.PutObjectResult, error) {
	r, err := n.Backend.PutObject(bucket, key, meta, input, size, cond)
	if err == nil {
		n.emit("ObjectCreated:Put", bucket, key, string(r.VersionID))
	}
	return r, err
}

func (n *notifying) CopyObject(srcBucket, srcKey, dstBucket, dstKey string, meta map[string]string) (gofakes3.CopyObjectResult, error) {
	r, err := n.Backend.CopyObject(srcBucket, srcKey, dstBucket, dstKey, meta)
	if err == nil {
		n.emit("ObjectCreated:Copy", dstBucket, dstKey, "")
	}
	return r, err
}

// S3KeyEscape encodes a key the way S3 event notifications do: form encoding ('+' for a
// space), with '/' left as it is.
func S3KeyEscape(key string) string { return notify.KeyEscape(key) }

func (n *notifying) emit(event, bucket, key, version string) {
	var size int64
	var etag string
	if obj, err := n.Backend.HeadObject(bucket, key); err == nil {
		size, etag = obj.Size, hex.EncodeToString(obj.Hash)
		if obj.Contents != nil {
			obj.Contents.Close()
		}
	}
	seq := fmt.Sprintf("%016X", time.Now().UnixNano())
	n.routes.deliver(bucket, key, event, func(configurationID string) string {
		return notify.Body(notify.Record{EventName: event, Bucket: bucket, Key: key, VersionID: version, ETag: etag, Size: size, Sequencer: seq},
			configurationID, "devstack")
	})
}

// EventBody is an S3 event notification for one object, as S3 sends it to SQS.
func EventBody(event, bucket, key, version, etag string, size int64) string {
	return notify.Body(notify.Record{EventName: event, Bucket: bucket, Key: key, VersionID: version, ETag: etag, Size: size,
		Sequencer: fmt.Sprintf("%016X", time.Now().UnixNano())}, "devstack", "devstack")
}

// WaitReady waits until both endpoints answer (they do once Start returns; this is for callers
// that start the stack in another process).
func WaitReady(ctx context.Context, endpoints ...string) error {
	for _, e := range endpoints {
		for {
			resp, err := http.Get(e)
			if err == nil {
				resp.Body.Close()
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not ready: %w", e, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}
