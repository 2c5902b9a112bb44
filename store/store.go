// Package store is the seam between the daemon and where results go: a Store of results and
// failure records, chosen by the form of --out through the drivers registered here (Register,
// Open: store/dir, store/sqlstore, store/s3store). Every Store passes the same conformance suite
// (storetest). The daemon decides what to store; a Store only keeps it, finds it again, and says
// when it is durable.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// ErrUnavailable is wrapped by the errors of a store that cannot take or give data (disk full,
// directory not writable, database unreachable): a failure of the world, never of an object.
var ErrUnavailable = errors.New("results store unavailable")

// ErrBadData is wrapped by the error of a result (or a failure record) that the store cannot
// hold for what it contains: a processor field JSON cannot encode (NaN, +Inf, a channel), data
// the database refuses (a NUL byte in a key for PostgreSQL, a \u0000 in its JSON). It is the
// object's own failure, never the store's: waiting does not fix it, and the other results are
// not held up by it. An error never wraps both ErrBadData and ErrUnavailable.
var ErrBadData = errors.New("result cannot be stored")

// ErrAlreadyStored is what Put gives done when the store already held a result of the same
// object version (the same version ID, else the same eTag; see SameVersion) for the same
// processor: r was not written, the one there is kept, and the object was done already. It is
// no failure: it wraps neither ErrUnavailable nor ErrBadData, and the message may be deleted.
// This is how the daemon learns at commit time, without a lookup before the work, that an
// object it processed was done already.
var ErrAlreadyStored = errors.New("a result of this object version is stored already")

// ErrSuperseded is what Put gives done when the store holds a result of a later event for the
// object and processor (by Sequencer), which it keeps: r was not written. It wraps
// ErrAlreadyStored (the object needs no more work), and is no failure either.
var ErrSuperseded error = superseded{}

type superseded struct{}

func (superseded) Error() string        { return "a later event's result is stored" }
func (superseded) Is(target error) bool { return target == ErrAlreadyStored }

// CommitDecider is implemented by a Store whose lookup before the work (Result) costs more than
// learning the same at commit time from Put's report (ErrAlreadyStored): a query of a database,
// a GET from S3. For such a store the daemon skips the lookup on a message's first delivery,
// where a result is rarely there yet; a duplicate first delivery then costs its GET and decode,
// never a second result. The directory store does not implement it: its lookup is one open of a
// local file, and keeping it lets a duplicate of an object already done skip the GET.
type CommitDecider interface {
	// DecidesAtCommit is true when the lookup before a first delivery's work is to be skipped.
	DecidesAtCommit() bool
}

// Encode returns r's JSON (the directory store's file format), or an error wrapping ErrBadData
// when r cannot be encoded. A store calls it (or checks the same) in Put, so that such a result
// fails alone and at once.
func Encode(r Result) ([]byte, error) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%w: s3://%s/%s (processor %s): %w", ErrBadData, r.Bucket, r.Key, r.Processor, err)
	}
	return data, nil
}

// Result is what Palleto stores for a processed object. Its JSON form is the directory store's
// file format and a contract: add fields, never rename them.
type Result struct {
	Bucket       string         `json:"bucket"`
	Key          string         `json:"key"`
	VersionID    string         `json:"version_id"`
	ETag         string         `json:"etag"`
	Sequencer    string         `json:"sequencer,omitempty"` // the S3 event's, to order events of one key
	Size         int64          `json:"size"`                // bytes fetched from S3
	Bytes        int64          `json:"bytes"`               // bytes after decompression
	Encoding     string         `json:"encoding"`
	Processor    string         `json:"processor"`
	MessageID    string         `json:"message_id"`
	ReceiveCount int            `json:"receive_count,omitempty"`
	EventTime    time.Time      `json:"event_time,omitzero"`
	StartedAt    time.Time      `json:"started_at"`
	FinishedAt   time.Time      `json:"finished_at"`
	Fields       map[string]any `json:"-"` // the processor's fields, e.g. "lines"
}

// MarshalJSON writes the result's own fields, then the processor's fields in key order; a
// processor field named like one of the result's own is dropped.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	own, err := json.Marshal(plain(r))
	if err != nil || len(r.Fields) == 0 {
		return own, err
	}
	keys := make([]string, 0, len(r.Fields))
	for k := range r.Fields {
		if !ownFields[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := own[:len(own)-1] // without the closing brace
	for _, k := range keys {
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(r.Fields[k])
		if err != nil {
			return nil, fmt.Errorf("result field %q: %w", k, err)
		}
		out = append(append(append(append(out, ','), kb...), ':'), vb...)
	}
	return append(out, '}'), nil
}

// UnmarshalJSON reads the result's own fields, and every other field into Fields.
func (r *Result) UnmarshalJSON(data []byte) error {
	type plain Result
	var p plain
	if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	var all map[string]any
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	for k := range all {
		if ownFields[k] {
			delete(all, k)
		}
	}
	*r = Result(p)
	if len(all) > 0 {
		r.Fields = all
	}
	return nil
}

// ownFields are the JSON names of Result's own fields.
var ownFields = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[Result]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			m[name] = true
		}
	}
	return m
}()

// Failure is the record of an object (or a message) that could not be processed.
type Failure struct {
	Bucket       string `json:"bucket,omitempty"`
	Key          string `json:"key,omitempty"`
	VersionID    string `json:"version_id,omitempty"`
	ETag         string `json:"etag,omitempty"`
	Sequencer    string `json:"sequencer,omitempty"`
	MessageID    string `json:"message_id"`
	Class        string `json:"class"` // "permanent" or "retryable"
	Error        string `json:"error"`
	ReceiveCount int    `json:"receive_count,omitempty"`
	// Attempts counts the failures that were the object's own fault (the poison guard's count):
	// failures of the world (S3 or the store down) never add to it.
	Attempts int       `json:"attempts,omitempty"`
	Action   string    `json:"action"` // what happened to the message: deleted, dead-lettered, retry in ..., kept
	At       time.Time `json:"at"`
	Body     string    `json:"body,omitempty"` // the message body, for a message that could not be parsed
}

// Store keeps results and failure records. Every method is safe for concurrent use.
type Store interface {
	// Result returns the result stored for the object and processor, or nil when there is none.
	Result(ctx context.Context, bucket, key, processor string) (*Result, error)
	// Failure returns the failure record of an object or, with bucket "", of the message
	// messageID; nil when there is none.
	Failure(ctx context.Context, bucket, key, messageID string) (*Failure, error)
	// Put stores r, unless the store holds a result for the same object and processor from a
	// later event (by Sequencer) or of the same object version: that one is kept. It removes the
	// object's failure record. It calls done exactly once: with nil once r is durable (or
	// replaced, by a result it cannot order before or after), with ErrAlreadyStored (or
	// ErrSuperseded) when the result kept is the store's own, or with the error that stopped
	// it; a synchronous store calls it before Put returns. Of several Puts of one object version
	// at once, exactly one gets nil. where names the result for the log (a path, a row). A result
	// the store cannot hold for its content gets an error wrapping ErrBadData, and only that
	// result: the others are stored as if it were not there.
	Put(ctx context.Context, r Result, done func(error)) (where string)
	// PutFailure stores f durably before it returns.
	PutFailure(ctx context.Context, f Failure) (where string, err error)
	// Ready reports why the store cannot take a write, or nil.
	Ready(ctx context.Context) error
	// String says where the store is, for the log.
	String() string
	// Close commits what is pending and releases the store.
	Close() error
}

// Later reports whether sequencer a is later than b, as S3 orders the events of one key: the
// greater hexadecimal value is the later event (the shorter one left-padded with zeros). An
// empty sequencer is never later than another.
func Later(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	a, b = strings.ToUpper(a), strings.ToUpper(b)
	if n := max(len(a), len(b)); len(a) < n {
		a = strings.Repeat("0", n-len(a)) + a
	} else if len(b) < n {
		b = strings.Repeat("0", n-len(b)) + b
	}
	return a > b
}

// SameVersion reports whether a stored result is of the object version an event names: the same
// version ID when both have one, else the same eTag.
func SameVersion(r *Result, versionID, etag string) bool {
	if r == nil {
		return false
	}
	if versionID != "" && r.VersionID != "" {
		return versionID == r.VersionID
	}
	etag = strings.Trim(etag, `"`)
	return etag != "" && strings.Trim(r.ETag, `"`) == etag
}

// Owner is a store that writes into S3 buckets the daemon may also read (the s3:// store): it
// says what is its own, so that the events of its own writes (results, failure records, copies,
// the readiness object) are never processed again. A store that implements it must own
// everything it writes.
type Owner interface {
	// Owns reports whether bucket/key is under the store's own prefix.
	Owns(bucket, key string) bool
	// Owned returns the bucket the store writes into and its prefix ("" or ending in "/").
	Owned() (bucket, prefix string)
}
