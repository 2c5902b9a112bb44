package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/palleto/palleto/store"
)

// subject identifies a failure record: the object, or the message when the object is unknown:
// "s3://BUCKET/KEY" or "message:ID". A subject that holds what a database cannot hold in text
// (a NUL byte, invalid UTF-8: PostgreSQL refuses both) is named by its SHA-256 instead,
// "sha256:HEX", so that the record of such an object can still be written and found.
func subject(bucket, key, messageID string) string {
	s := "s3://" + bucket + "/" + key
	if bucket == "" {
		s = "message:" + messageID
	}
	if holdable(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// holdable reports whether s can be a text value in both databases.
func holdable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// clean is s as a text value of a failure record: a NUL written `\x00`, invalid UTF-8 as U+FFFD.
// A failure record is for people to read; its subject (above) is what finds it.
func clean(s string) string {
	if holdable(s) {
		return s
	}
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", `\x00`), "\uFFFD")
}

// Failure returns the failure record of bucket/key, or of message messageID when bucket is "".
func (s *Store) Failure(ctx context.Context, bucket, key, messageID string) (*store.Failure, error) {
	var f store.Failure
	err := s.selectFailure.QueryRowContext(ctx, subject(bucket, key, messageID)).Scan(&f.Bucket, &f.Key, &f.VersionID, &f.ETag,
		&f.Sequencer, &f.MessageID, &f.Class, &f.Error, &f.Action, &f.ReceiveCount, &f.Attempts, &f.At, &f.Body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable(s.where+" select failure", err)
	}
	return &f, nil
}

// PutFailure stores f in its own transaction before it returns. Text the database cannot hold
// is cleaned (see clean): a failure record is always written, whatever the object's key.
func (s *Store) PutFailure(ctx context.Context, f store.Failure) (string, error) {
	sub := subject(f.Bucket, f.Key, f.MessageID)
	_, err := s.db.ExecContext(ctx, s.d.upsertFailure, sub, clean(f.Bucket), clean(f.Key), clean(f.VersionID), clean(f.ETag),
		clean(f.Sequencer), clean(f.MessageID), f.Class, clean(f.Error), clean(f.Action), f.ReceiveCount, f.Attempts, f.At.UTC(), clean(f.Body))
	return s.where + " failures " + sub, dbErr(s.where+" insert failure", err)
}
