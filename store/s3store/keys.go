package s3store

import (
	"crypto/sha256"
	"encoding/hex"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Where things go under PREFIX, besides results at <bucket>/<key>.json.
const (
	failedDir  = "_failed/"           // failure records: _failed/<bucket>/<key>.json
	messageDir = "_failed/_messages/" // failures of messages with no object: _failed/_messages/<id>.json
	copyDir    = "_copy/"             // the copy processor's files: _copy/<bucket>/<key>.data
	hashedDir  = "_hashed/"           // see objectKey
	maxKey     = 1024                 // S3's limit on a key, in bytes of UTF-8
	maxSegment = 255                  // what file-backed servers (MinIO) take between two '/'
)

// objectKey is where the JSON (suffix ".json") or copy (".data") of bucket/key goes under sub
// ("", "_failed/" or "_copy/"): PREFIX/sub/<bucket>/<key><suffix>, the key as it is, so that a
// user finds a result by its key (aws s3 cp s3://B/PREFIX/<bucket>/<key>.json -).
//
// A name that S3 or an S3-compatible server would refuse takes the hashed form
// PREFIX/sub/_hashed/<bucket>/<sha256 of the key, hex>.json: a name over S3's 1,024 bytes, a key
// that is not UTF-8 or holds a NUL, an empty, "." or ".." path segment (a leading or doubled
// '/', "a/../b": MinIO refuses them), or a segment over 255 bytes (file-backed servers refuse
// it). A bucket name that no S3 bucket can have (from a forged event) is hashed too, as
// "_" and its SHA-256. Names starting with '_' are Palleto's: no bucket's name starts so, so a
// literal name never meets a hashed one or _failed/, _copy/ or _palleto/.
func (s *Store) objectKey(sub, bucket, key, suffix string) string {
	if k := s.prefix + sub + bucket + "/" + key + suffix; safeBucket(bucket) && len(k) <= maxKey && safeKey(key+suffix) {
		return k
	}
	b := bucket
	if !safeBucket(bucket) {
		b = "_" + sha(bucket)
	}
	return s.prefix + sub + hashedDir + b + "/" + sha(key) + suffix
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// safeBucket reports whether b can be an S3 bucket's name (legacy names included: letters,
// digits, '.', '-', '_', starting with a letter or a digit, at most 255 bytes).
func safeBucket(b string) bool {
	if b == "" || len(b) > maxSegment || !isAlnum(b[0]) {
		return false
	}
	for i := range len(b) {
		if c := b[i]; !isAlnum(c) && c != '.' && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// safeKey reports whether k (a key with its suffix) is a name S3-compatible servers take after
// a bucket's '/': UTF-8 with no NUL, no empty, "." or ".." segment, none over 255 bytes.
func safeKey(k string) bool {
	if !utf8.ValidString(k) || strings.IndexByte(k, 0) >= 0 {
		return false
	}
	for seg := range strings.SplitSeq(k, "/") {
		if seg == "" || seg == "." || seg == ".." || len(seg) > maxSegment {
			return false
		}
	}
	return true
}

func (s *Store) failureKey(bucket, key, messageID string) string {
	if bucket == "" {
		return s.prefix + messageDir + url.PathEscape(messageID) + ".json"
	}
	return s.objectKey(failedDir, bucket, key, ".json")
}
