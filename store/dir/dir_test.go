package dir

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/palleto/palleto/store"
)

func TestPathTable(t *testing.T) {
	for _, tt := range []struct{ bucket, key, want string }{
		{"logs", "packrat/data/20160721.gz", "logs/packrat/data/20160721.gz.json"},
		{"logs", "a b+c%d", "logs/a%20b%2Bc%25d.json"},
		{"logs", "../../etc/passwd", "logs/%2E%2E/%2E%2E/etc/passwd.json"},
		{"logs", "/abs", "logs/%empty/abs.json"},
		{"logs", "dir/", "logs/dir/%empty.json"},
		{"logs", "x.json/y", "logs/x%2Ejson/y.json"},
		{"logs", "a\\b\x00c", "logs/a%5Cb%00c.json"},
		{"logs", "été/日本", "logs/été/日本.json"},
		{"logs", "bad\xffutf8", "logs/bad%FFutf8.json"},
		{"_failed", "k", "%5Ffailed/k.json"},
		{"..", "k", "%2E%2E/k.json"},
	} {
		if got := Path(tt.bucket, tt.key); got != tt.want {
			t.Errorf("Path(%q, %q) = %q, want %q", tt.bucket, tt.key, got, tt.want)
		}
	}
}

func checkPath(t *testing.T, bucket, key string) string {
	checkLocal(t, bucket, key, CopyPath(bucket, key))
	return checkLocal(t, bucket, key, Path(bucket, key))
}

func checkLocal(t *testing.T, bucket, key, p string) string {
	if !filepath.IsLocal(p) || path.Clean(p) != p {
		t.Fatalf("Path(%q, %q) = %q is not local", bucket, key, p)
	}
	for _, c := range strings.Split(p, "/") {
		if len(c) > 255 || c == "" || c == "." || c == ".." || strings.ContainsAny(c, "\x00\\") {
			t.Fatalf("Path(%q, %q) has bad component %q", bucket, key, c)
		}
	}
	return p
}

func TestPathLongKeysStayWithinLimits(t *testing.T) {
	seen := map[string]string{}
	for _, key := range []string{
		strings.Repeat("a", 1024),
		strings.Repeat("a", 1023) + "b",
		strings.Repeat("%", 300),
		strings.Repeat("%", 299) + "x",
		strings.Repeat("日", 300),
		strings.Repeat("x/", 500),
		strings.Repeat(".", 84), // only dots, every one escaped to 3 bytes: found by FuzzPath
		strings.Repeat(".", 85),
		strings.Repeat(".", 1000) + "/" + strings.Repeat(".", 999),
	} {
		p := checkPath(t, "b", key)
		if other, dup := seen[p]; dup {
			t.Fatalf("keys %q and %q both map to %q", other, key, p)
		}
		seen[p] = key
	}
}

func FuzzPath(f *testing.F) {
	for _, s := range []string{"a/b", "../x", "/", "", "a%2Fb", "x.json/y", "\x00", strings.Repeat("z", 400)} {
		f.Add("bucket", s, s+"/")
	}
	f.Fuzz(func(t *testing.T, bucket, k1, k2 string) {
		p1 := checkPath(t, bucket, k1)
		p2 := checkPath(t, bucket, k2)
		if k1 != k2 && p1 == p2 {
			t.Fatalf("keys %q and %q both map to %q", k1, k2, p1)
		}
		// A result file must never be a directory of another key's path, nor the reverse.
		if k1 != k2 && (strings.HasPrefix(p2, p1+"/") || strings.HasPrefix(p1, p2+"/")) {
			t.Fatalf("%q and %q nest", p1, p2)
		}
		c1, c2 := CopyPath(bucket, k1), CopyPath(bucket, k2)
		if k1 != k2 && (c1 == c2 || strings.HasPrefix(c2, c1+"/") || strings.HasPrefix(c1, c2+"/")) {
			t.Fatalf("copies of %q and %q clash: %q, %q", k1, k2, c1, c2)
		}
	})
}

func TestWriteFromIsAtomic(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rel := CopyPath("b", "../x.gz")
	if n, err := d.WriteFrom(rel, strings.NewReader("hello\n")); err != nil || n != 6 {
		t.Fatalf("WriteFrom = %d, %v", n, err)
	}
	if got, _ := os.ReadFile(filepath.Join(d.Dir(), rel)); string(got) != "hello\n" {
		t.Fatalf("%s holds %q", rel, got)
	}
	// A failing reader leaves the previous content and no temp file.
	if _, err := d.WriteFrom(rel, iotest.ErrReader(errors.New("cut"))); err == nil {
		t.Fatal("a failing reader was stored")
	}
	entries, _ := os.ReadDir(filepath.Dir(filepath.Join(d.Dir(), rel)))
	if got, _ := os.ReadFile(filepath.Join(d.Dir(), rel)); string(got) != "hello\n" || len(entries) != 1 {
		t.Fatalf("after a failed write: %q, %d entries", got, len(entries))
	}
	for _, bad := range []string{"../x", "/abs", "_failed/b/x.json", "."} {
		if _, err := d.WriteFrom(bad, strings.NewReader("x")); err == nil {
			t.Errorf("WriteFrom(%q) was allowed", bad)
		}
	}
}

func TestWriteResultAtomicAndIdempotent(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := Result{Bucket: "b", Key: "k/x.gz", ETag: "\"e1\"", Size: 10, Bytes: 20, Processor: "lines",
		StartedAt: time.Now(), FinishedAt: time.Now(), Fields: map[string]any{"lines": 3}}
	if _, err := d.PutFailure(context.Background(), Failure{Bucket: "b", Key: "k/x.gz", Class: "retryable", Error: "x"}); err != nil {
		t.Fatal(err)
	}
	p, err := d.WriteResult(r)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, p))
	if err != nil || !strings.Contains(string(data), `"lines": 3`) || !strings.Contains(string(data), `"key": "k/x.gz"`) {
		t.Fatalf("result %s: %s %v", p, data, err)
	}
	if _, err := os.Stat(filepath.Join(dir, FailedDir, p)); !os.IsNotExist(err) {
		t.Fatalf("stale failure record still there: %v", err)
	}
	if got, err := d.Result(context.Background(), "b", "k/x.gz", "lines"); err != nil || !store.SameVersion(got, "", "\"e1\"") {
		t.Fatalf("Result did not find the same eTag: %+v, %v", got, err)
	}
	if got, _ := d.Result(context.Background(), "b", "k/x.gz", "lines"); store.SameVersion(got, "", "\"e2\"") {
		t.Fatal("Result matched another eTag")
	}
	if got, _ := d.Result(context.Background(), "b", "k/x.gz", "grep"); got != nil {
		t.Fatalf("a result of lines was found for grep: %+v", got)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "b", "k"))
	if len(entries) != 1 {
		t.Fatalf("leftover files: %v", entries)
	}
}

func TestPlantedSymlinkIsNotFollowedOut(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	d, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = d.WriteResult(Result{Bucket: "b", Key: "x"})
	if err == nil {
		t.Fatal("write through a symlink out of the output directory succeeded")
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Fatalf("wrote outside the output directory: %v", entries)
	}
}

func TestFailureWithoutKeyGoesUnderMessages(t *testing.T) {
	dir := t.TempDir()
	d, _ := Open(dir)
	defer d.Close()
	p, err := d.PutFailure(context.Background(), Failure{MessageID: "m/../1", Class: "permanent", Error: "malformed"})
	if err != nil || p != "_failed/_messages/m%2F..%2F1.json" {
		t.Fatalf("path %q, %v", p, err)
	}
}

func TestWriteAfterTheDirectoryWasRemoved(t *testing.T) {
	d, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r := Result{Bucket: "b", Key: "dir/k1", ETag: "e"}
	if _, err := d.WriteResult(r); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(d.Dir(), "b")); err != nil { // an operator cleaning up
		t.Fatal(err)
	}
	r.Key = "dir/k2"
	p, err := d.WriteResult(r)
	if err != nil {
		t.Fatalf("write after the directory was removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(d.Dir(), p)); err != nil {
		t.Fatal(err)
	}
}

func TestResultJSONMergesProcessorFields(t *testing.T) {
	r := Result{Bucket: "b", Key: "k", Processor: "grep", Fields: map[string]any{"matches": 3, "lines": int64(5), "bucket": "clash", "output": json.RawMessage(`{"a":1}`)}}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	if m["bucket"] != "b" || m["matches"] != 3.0 || m["lines"] != 5.0 || fmt.Sprint(m["output"]) != "map[a:1]" || m["processor"] != "grep" {
		t.Fatalf("merged result: %s", data)
	}
}
