// Package s3store is the results store in S3 (`--out s3://BUCKET/PREFIX`): one JSON object per
// result at PREFIX/<bucket>/<key>.json (the key escaped as the directory store escapes it, so
// that the layout is the same), failure records under PREFIX/_failed/, the same JSON the
// directory store writes. Every replica of a scaled-out deployment writes to one place, next to
// the data. A result is durable when PutObject returns (S3 is strongly consistent), so Put is
// synchronous; an older event's result never replaces a newer one's (by sequencer, read back
// before the write).
package s3store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/palleto/palleto/sink"
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
	return &Store{api: api, bucket: bucket, prefix: prefix, callTimeout: 30 * time.Second,
		up: transfermanager.New(api, func(o *transfermanager.Options) { o.Concurrency = 2 })}, nil
}

func (s *Store) String() string { return "s3://" + s.bucket + "/" + s.prefix }

var _ store.Owner = (*Store)(nil)

// Owns reports whether bucket/key is something this store writes: with a prefix, any key under
// it; with none, the readiness object, failure records and copies (_palleto/, _failed/, _copy/)
// and the results of objects of this same bucket (<bucket>/...).
func (s *Store) Owns(bucket, key string) bool {
	if bucket != s.bucket {
		return false
	}
	if s.prefix != "" {
		return strings.HasPrefix(key, s.prefix)
	}
	results := sink.Path(bucket, "x") // "<escaped bucket>/x.json"
	results = results[:strings.LastIndex(results, "/")+1]
	for _, dir := range []string{"_palleto/", "_failed/", sink.CopyDir + "/", results} {
		if strings.HasPrefix(key, dir) {
			return true
		}
	}
	return false
}

// Owned returns the bucket the store writes into and its prefix.
func (s *Store) Owned() (bucket, prefix string) { return s.bucket, s.prefix }

// objectKey is where the JSON of bucket/key goes under dir ("", "_failed/" or "_copy/"): the
// directory store's path of the object (sink.Path: each key component escaped, so that "..",
// "." and empty components, which S3-compatible servers refuse, cannot occur, and injective),
// under the prefix. A path too long for S3 (1,024 bytes) is named by the key's SHA-256.
func (s *Store) objectKey(dir, bucket, key, suffix string) string {
	p := sink.Path(bucket, key)
	p = strings.TrimSuffix(p, ".json") + suffix
	k := s.prefix + dir + p
	if len(k) > 1024 {
		sum := sha256.Sum256([]byte(key))
		k = s.prefix + dir + sink.Path(bucket, "%long/"+hex.EncodeToString(sum[:])) // "%" is escaped in keys: no clash
		k = strings.TrimSuffix(k, ".json") + suffix
	}
	return k
}

func (s *Store) failureKey(bucket, key, messageID string) string {
	if bucket == "" {
		return s.prefix + "_failed/_messages/" + url.PathEscape(messageID) + ".json"
	}
	return s.objectKey("_failed/", bucket, key, ".json")
}

func unavailable(op, key string, err error) error {
	return fmt.Errorf("%w: s3 %s %s: %w", store.ErrUnavailable, op, key, err)
}

// get reads a JSON object into v; false when there is none.
func (s *Store) get(ctx context.Context, key string, v any) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	out, err := s.api.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "NoSuchKey" || api.ErrorCode() == "NotFound") {
		return false, nil
	}
	if err != nil {
		return false, unavailable("GetObject", s.bucket+"/"+key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, 64<<20))
	if err != nil {
		return false, unavailable("GetObject", s.bucket+"/"+key, err)
	}
	return json.Unmarshal(data, v) == nil, nil
}

func (s *Store) put(ctx context.Context, key string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	_, err = s.api.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(append(data, '\n')),
		ContentType: aws.String("application/json")})
	if err != nil {
		return unavailable("PutObject", s.bucket+"/"+key, err)
	}
	return nil
}

// Ready writes a small object under the prefix: the bucket exists and takes writes.
func (s *Store) Ready(ctx context.Context) error {
	return s.put(ctx, s.prefix+"_palleto/ready.json", map[string]any{"at": time.Now().UTC()})
}

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

// Put writes r (calling done before it returns), unless the result there is a later event's,
// and removes the object's failure record.
func (s *Store) Put(ctx context.Context, r store.Result, done func(error)) string {
	key := s.objectKey("", r.Bucket, r.Key, ".json")
	done(s.write(ctx, key, r))
	return "s3://" + s.bucket + "/" + key
}

func (s *Store) write(ctx context.Context, key string, r store.Result) error {
	if r.Sequencer != "" {
		old, err := s.Result(ctx, r.Bucket, r.Key, r.Processor)
		if err != nil {
			return err
		}
		if old != nil && store.Later(old.Sequencer, r.Sequencer) {
			return nil
		}
	}
	if err := s.put(ctx, key, r); err != nil {
		return err
	}
	fk := s.failureKey(r.Bucket, r.Key, "")
	dctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	if _, err := s.api.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &fk}); err != nil {
		return unavailable("DeleteObject", s.bucket+"/"+fk, err)
	}
	return nil
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

// CopyKey is where the copy processor's output of bucket/key goes: PREFIX/_copy/<bucket>/<key>.data.
func (s *Store) CopyKey(bucket, key string) string {
	return s.objectKey("_copy/", bucket, key, ".data")
}

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
