package s3store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/palleto/palleto/store"
)

// Put writes r (calling done before it returns), unless the result there is a later event's or
// the same version's (done gets store.ErrSuperseded or store.ErrAlreadyStored), and removes the
// object's failure record.
func (s *Store) Put(ctx context.Context, r store.Result, done func(error)) string {
	key := s.objectKey("", r.Bucket, r.Key, ".json")
	data, err := store.Encode(r) // a result that cannot be encoded fails alone, before a call
	if err == nil {
		err = s.write(ctx, key, r, data)
	}
	done(err)
	return "s3://" + s.bucket + "/" + key
}

// maxRaces is how many times write reads, compares and writes again after another writer
// changed the result between its read and its write, before it gives up for now (the store's
// failure: the message comes back later).
const maxRaces = 10

// write stores r (JSON data) at key unless the result there is a later event's or the same
// version's. The rule holds across replicas: the write is conditional on what was read (If-Match
// its ETag, or If-None-Match: * when there was none), and when another writer came between (412,
// or 409 for conditional writes racing), it reads, compares and writes again.
func (s *Store) write(ctx context.Context, key string, r store.Result, data []byte) error {
	for race := 0; ; race++ {
		var ifMatch, ifNoneMatch *string
		old, etag, found, err := s.getRaw(ctx, key)
		if err != nil {
			return err
		}
		var prev store.Result
		if found && jsonInto(old, &prev) && prev.Bucket == r.Bucket && prev.Key == r.Key && prev.Processor == r.Processor {
			if store.Later(prev.Sequencer, r.Sequencer) {
				return store.ErrSuperseded // kept: a later event's result
			}
			if store.SameVersion(&prev, r.VersionID, r.ETag) {
				return store.ErrAlreadyStored
			}
		}
		switch {
		case s.unconditional.Load():
		case found && etag != "":
			ifMatch = aws.String(etag)
		case !found:
			ifNoneMatch = aws.String("*")
		}
		err = s.putIf(ctx, key, data, ifMatch, ifNoneMatch)
		switch {
		case errors.Is(err, errLostRace) && race < maxRaces:
			continue
		case errors.Is(err, errNoConditional): // the next write is unconditional
			if !s.unconditional.Swap(true) {
				s.log.Warn("the S3 server refuses conditional writes (If-Match, If-None-Match); results are written without them, and two replicas may put an older event's result over a newer one",
					"store", s.String(), "error", err)
			}
			continue
		case errors.Is(err, errLostRace):
			return fmt.Errorf("%w: s3 PutObject %s/%s: another writer changed the result %d times between read and write: %w", store.ErrUnavailable, s.bucket, key, race+1, err)
		case err != nil:
			return err
		}
		break
	}
	fk := s.failureKey(r.Bucket, r.Key, "")
	dctx, cancel := context.WithTimeout(ctx, s.callTimeout)
	defer cancel()
	if _, err := s.api.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &fk}); err != nil {
		return unavailable("DeleteObject", s.bucket+"/"+fk, err)
	}
	return nil
}

var (
	// errLostRace: a conditional write failed because the object changed since it was read.
	errLostRace = errors.New("the object changed since it was read")
	// errNoConditional: the server does not implement conditional writes.
	errNoConditional = errors.New("conditional writes not implemented")
)

// putErr classes the error of a PutObject: a lost race (412 PreconditionFailed, 409
// ConditionalRequestConflict) or a server without conditional writes (501) when the write was
// conditional, a key the server refuses (the result's own: store.ErrBadData), or else the store
// unavailable.
func putErr(bucket, key string, conditional bool, err error) error {
	status := 0
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	code := ""
	var api smithy.APIError
	if errors.As(err, &api) {
		code = api.ErrorCode()
	}
	switch {
	case !conditional:
	case status == 412 || status == 409 || code == "PreconditionFailed" || code == "ConditionalRequestConflict":
		return fmt.Errorf("s3 PutObject %s/%s: %w: %w", bucket, key, errLostRace, err)
	case status == 501 || code == "NotImplemented":
		return fmt.Errorf("s3 PutObject %s/%s: %w: %w", bucket, key, errNoConditional, err)
	}
	switch {
	case code == "KeyTooLongError" || code == "XMinioInvalidObjectName" || code == "InvalidObjectName":
		return fmt.Errorf("%w: s3 PutObject %s/%s: %w", store.ErrBadData, bucket, key, err)
	}
	return unavailable("PutObject", bucket+"/"+key, err)
}

// jsonInto decodes data into v; false when it is not JSON of v's form.
func jsonInto(data []byte, v any) bool { return json.Unmarshal(data, v) == nil }
