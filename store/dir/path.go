package dir

import (
	"crypto/sha256"
	"encoding/hex"
	"path"
	"strings"
	"unicode/utf8"
)

// maxComponent is the longest name component we write: under the usual 255-byte limit, with
// room for the ".json" (or ".data") suffix.
const maxComponent = 240

// Path maps a bucket and key to the relative path of the object's result: bucket/dirs.../name.json.
//
// The mapping is deterministic and injective, and the path never leaves the output directory:
//   - the key is split on '/'; each component is escaped on its own: bytes outside
//     [A-Za-z0-9._-] and valid non-ASCII UTF-8 become %XX (uppercase hex), so '/', '\', NUL,
//     '%' and invalid UTF-8 can never act as separators or clash;
//   - components made only of dots ("." and "..") have every dot escaped; an empty component
//     (leading, trailing or doubled '/') becomes "%empty";
//   - the last component gets ".json"; a directory component ending in ".json" has that dot
//     escaped, so a file can never clash with a directory;
//   - a component longer than 240 bytes once escaped is cut and ends in "%h" and 32 hex digits of
//     the SHA-256 of the raw component ("%h" and "%empty" are not producible by escaping);
//   - the bucket is escaped the same way, with a leading '_' escaped too, so that names Palleto
//     keeps for itself ("_failed") are never a bucket's.
func Path(bucket, key string) string { return pathWith(bucket, key, ".json") }

// CopyDir is the subdirectory of the output directory that holds the copy processor's files.
const CopyDir = "_copy"

// CopyPath is where the copy processor stores an object's decompressed content:
// _copy/bucket/dirs.../name.data, escaped as Path escapes (".data" in place of ".json").
func CopyPath(bucket, key string) string { return path.Join(CopyDir, pathWith(bucket, key, ".data")) }

func pathWith(bucket, key, suffix string) string {
	parts := strings.Split(key, "/")
	out := make([]string, 0, len(parts)+1)
	b := escape(bucket)
	if strings.HasPrefix(b, "_") {
		b = "%5F" + b[1:]
	}
	out = append(out, b)
	for i, p := range parts {
		e := escape(p)
		if i == len(parts)-1 {
			e += suffix
		} else if strings.HasSuffix(e, suffix) {
			e = e[:len(e)-len(suffix)] + "%2E" + suffix[1:]
		}
		out = append(out, e)
	}
	return path.Join(out...)
}

func escape(s string) string {
	if s == "" {
		return "%empty"
	}
	var b strings.Builder
	cuts := []int{} // lengths of b after each whole escaped rune: where it may be cut
	// "." and "..", and longer runs of dots too, have every dot escaped.
	onlyDots := strings.Trim(s, ".") == ""
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '.' && onlyDots:
			writeHex(&b, c)
			i++
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
			b.WriteByte(c)
			i++
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size <= 1 {
				writeHex(&b, c)
				i++
			} else {
				b.WriteString(s[i : i+size])
				i += size
			}
		default:
			writeHex(&b, c)
			i++
		}
		cuts = append(cuts, b.Len())
	}
	e := b.String()
	if len(e) <= maxComponent-5 {
		return e
	}
	sum := sha256.Sum256([]byte(s))
	tag := "%h" + hex.EncodeToString(sum[:16])
	keep := 0
	for _, c := range cuts {
		if c+len(tag) > maxComponent-5 {
			break
		}
		keep = c
	}
	return e[:keep] + tag
}

func writeHex(b *strings.Builder, c byte) {
	const digits = "0123456789ABCDEF"
	b.WriteByte('%')
	b.WriteByte(digits[c>>4])
	b.WriteByte(digits[c&15])
}
