// Package s3store is the results store in S3 (`--out s3://BUCKET/PREFIX`): one JSON object per
// result at PREFIX/<bucket>/<key>.json, the object's key as it is (see objectKey for the few
// keys that take a hashed name), failure records at PREFIX/_failed/<bucket>/<key>.json, the
// same JSON the directory store writes. Every replica of a scaled-out deployment writes to one
// place, next to the data. A result is durable when PutObject returns (S3 is strongly
// consistent), so Put is synchronous; an older event's result never replaces a newer one's (by
// sequencer), nor a result of the same version another (read, compared, and written on the
// condition that nothing changed meanwhile).
package s3store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/palleto/palleto/store"
)

// API is the part of the S3 client the store calls. *s3.Client implements it.
type API interface {
	transfermanager.S3APIClient
	DeleteObject(context.Context, *s3.DeleteObjectInput, ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
}

// Store keeps results in an S3 bucket under a prefix. Safe for concurrent use.
type Store struct {
	api            API
	bucket, prefix string // prefix is "" or ends with "/"
	callTimeout    time.Duration
	up             *transfermanager.Client
	log            *slog.Logger
	// unconditional is set once the server refused a conditional write (501): results are then
	// written without If-Match / If-None-Match.
	unconditional atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Parse splits s3://BUCKET/PREFIX.
func Parse(url string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(url, "s3://")
	bucket, prefix, _ = strings.Cut(rest, "/")
	if !ok || bucket == "" {
		return "", "", fmt.Errorf("%q is not s3://BUCKET/PREFIX", url)
	}
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return bucket, prefix, nil
}

// Open returns the store of s3://BUCKET/PREFIX on api. It does not call S3: Ready does.
func Open(api API, url string) (*Store, error) {
	bucket, prefix, err := Parse(url)
	if err != nil {
		return nil, err
	}
	return &Store{api: api, bucket: bucket, prefix: prefix, callTimeout: 30 * time.Second, log: slog.Default(),
		up: transfermanager.New(api, func(o *transfermanager.Options) { o.Concurrency = 2 })}, nil
}

func (s *Store) String() string { return "s3://" + s.bucket + "/" + s.prefix }

var _ store.Owner = (*Store)(nil)

// Owns reports whether bucket/key is something this store writes: with a prefix, any key under
// it; with none, the readiness object, failure records, copies and hashed names (_palleto/,
// _failed/, _copy/, _hashed/) and the results of objects of this same bucket (<bucket>/...).
func (s *Store) Owns(bucket, key string) bool {
	if bucket != s.bucket {
		return false
	}
	if s.prefix != "" {
		return strings.HasPrefix(key, s.prefix)
	}
	for _, dir := range []string{"_palleto/", failedDir, copyDir, hashedDir, bucket + "/"} {
		if strings.HasPrefix(key, dir) {
			return true
		}
	}
	return false
}

// Owned returns the bucket the store writes into and its prefix.
func (s *Store) Owned() (bucket, prefix string) { return s.bucket, s.prefix }

func unavailable(op, key string, err error) error {
	return fmt.Errorf("%w: s3 %s %s: %w", store.ErrUnavailable, op, key, err)
}

// get reads a JSON object into v; false when there is none (or it is not JSON).
func (s *Store) get(ctx context.Context, key string, v any) (bool, error) {
	data, _, found, err := s.getRaw(ctx, key)
	if !found || err != nil {
		return false, err
	}
	return json.Unmarshal(data, v) == nil, nil
}

// maxJSON bounds what is read of an object the store wrote: a result is a few hundred bytes.
const maxJSON = 64 << 20

// getRaw reads an object and its ETag; found is false when there is none.
func (s *Store) getRaw(ctx context.Context, key string) (data []byte, etag string, found bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	out, err := s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "NoSuchKey" || api.ErrorCode() == "NotFound") {
		return nil, "", false, nil
	}
	if err != nil {
		return nil, "", false, unavailable("GetObject", s.bucket+"/"+key, err)
	}
	defer out.Body.Close()
	data, err = io.ReadAll(io.LimitReader(out.Body, maxJSON))
	if err != nil {
		return nil, "", false, unavailable("GetObject", s.bucket+"/"+key, err)
	}
	return data, aws.ToString(out.ETag), true, nil
}

func (s *Store) put(ctx context.Context, key string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: s3 PutObject %s/%s: %w", store.ErrBadData, s.bucket, key, err)
	}
	return s.putIf(ctx, key, data, nil, nil)
}

// putIf writes data (JSON) at key; with ifMatch or ifNoneMatch, only under that condition.
func (s *Store) putIf(ctx context.Context, key string, data []byte, ifMatch, ifNoneMatch *string) error {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	_, err := s.api.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(append(data, '\n')),
		ContentType: aws.String("application/json"), IfMatch: ifMatch, IfNoneMatch: ifNoneMatch})
	if err != nil {
		return putErr(s.bucket, key, ifMatch != nil || ifNoneMatch != nil, err)
	}
	return nil
}

// Ready writes a small object under the prefix: the bucket exists and takes writes.
func (s *Store) Ready(ctx context.Context) error {
	return s.put(ctx, s.prefix+"_palleto/ready.json", map[string]any{"at": time.Now().UTC()})
}

// DecidesAtCommit is true: a lookup is a GET from S3, and Put reads the result there anyway
// (store.CommitDecider).
func (s *Store) DecidesAtCommit() bool { return true }

// Close does nothing: every result is durable when Put returns.
func (s *Store) Close() error { return nil }

// Result returns the stored result of bucket/key when it was written by processor.
func (s *Store) Result(ctx context.Context, bucket, key, processor string) (*store.Result, error) {
	var r store.Result
	ok, err := s.get(ctx, s.objectKey("", bucket, key, ".json"), &r)
	if !ok || r.Bucket != bucket || r.Key != key || r.Processor != processor {
		return nil, err
	}
	return &r, nil
}

// Failure returns the failure record of bucket/key, or of message messageID when bucket is "".
func (s *Store) Failure(ctx context.Context, bucket, key, messageID string) (*store.Failure, error) {
	var f store.Failure
	ok, err := s.get(ctx, s.failureKey(bucket, key, messageID), &f)
	if !ok {
		return nil, err
	}
	return &f, nil
}

// PutFailure writes f before it returns.
func (s *Store) PutFailure(ctx context.Context, f store.Failure) (string, error) {
	key := s.failureKey(f.Bucket, f.Key, f.MessageID)
	return "s3://" + s.bucket + "/" + key, s.put(ctx, key, f)
}

// CopyPath is where the copy processor's output of bucket/key goes: PREFIX/_copy/<bucket>/<key>.data.
func (s *Store) CopyPath(bucket, key string) string {
	return s.objectKey(copyDir, bucket, key, ".data")
}

// CopyKey is CopyPath, by its former name.
func (s *Store) CopyKey(bucket, key string) string { return s.CopyPath(bucket, key) }

// WriteFrom uploads what r yields to rel (a CopyKey), streamed in parts: memory stays bounded
// whatever the size. An error of r is returned as it is; an error of S3 wraps ErrUnavailable.
func (s *Store) WriteFrom(rel string, r io.Reader) (int64, error) {
	src := &counting{r: r}
	_, err := s.up.UploadObject(context.Background(), &transfermanager.UploadObjectInput{Bucket: &s.bucket, Key: &rel, Body: src})
	if src.err != nil {
		return src.n, src.err
	}
	if err != nil {
		return src.n, unavailable("upload", s.bucket+"/"+rel, err)
	}
	return src.n, nil
}

type counting struct {
	r   io.Reader
	n   int64
	err error
}

func (c *counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}
