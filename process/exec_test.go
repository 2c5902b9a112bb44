package process

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestExec(t *testing.T) {
	obj := Object{Bucket: "b", Key: "logs/a b.gz", ETag: "e1", Encoding: "gzip"}
	in := strings.Repeat("GET /x 200\n", 50000) + "tail"
	for _, tt := range []struct {
		name, command string
		timeout       time.Duration
		output        string // JSON of the "output" field
		err           string // substring of the error
		permanent     bool
	}{
		{name: "wc", command: "wc -l", output: `50000`},
		{name: "json output", command: `printf '{"n": %d, "key": "%s"}' $(wc -l) "$PALLETO_KEY"`, output: `{"n": 50000, "key": "logs/a b.gz"}`},
		{name: "text output", command: "head -c 7", output: `"GET /x "`},
		{name: "reads nothing", command: "echo $PALLETO_BUCKET $PALLETO_ENCODING", output: `"b gzip\n"`},
		{name: "non-zero exit", command: "cat >/dev/null; echo boom >&2; exit 3", err: "exit status 3; stderr: boom"},
		{name: "data error", command: "cat >/dev/null; exit 65", err: "exit status 65", permanent: true},
		{name: "timeout", command: "sleep 30", timeout: 300 * time.Millisecond, err: "still running after --exec-timeout 300ms"},
		{name: "timeout in a pipeline", command: "sleep 30 | cat", timeout: 300 * time.Millisecond, err: "killed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New("exec", Options{Exec: tt.command, ExecTimeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			f, err := p.Process(context.Background(), obj, strings.NewReader(in))
			if time.Since(start) > 10*time.Second {
				t.Errorf("took %s: the process group was not killed", time.Since(start))
			}
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || errors.Is(err, ErrPermanent) != tt.permanent {
					t.Fatalf("err = %v, want %q (permanent %v)", err, tt.err, tt.permanent)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(f["output"])
			want, _ := json.Marshal(json.RawMessage(tt.output))
			if string(got) != string(want) || f["lines"] != int64(50001) {
				t.Fatalf("fields = %s lines %v; want output %s, 50001 lines", got, f["lines"], want)
			}
		})
	}
}

func TestExecInputErrorWinsOverTheProgramsReaction(t *testing.T) {
	p, _ := New("exec", Options{Exec: "cat >/dev/null; exit 1"})
	cut := errors.New("object over the size limit")
	_, err := p.Process(context.Background(), Object{}, io.MultiReader(strings.NewReader("abc\n"), iotest.ErrReader(cut)))
	if !errors.Is(err, cut) {
		t.Fatalf("err = %v, want the input's error", err)
	}
	if _, err := New("exec", Options{}); err == nil {
		t.Fatal("exec without a command was accepted")
	}
}

type dirStore string

func (d dirStore) WriteFrom(rel string, r io.Reader) (int64, error) {
	os.MkdirAll(filepath.Dir(filepath.Join(string(d), rel)), 0o755)
	f, err := os.Create(filepath.Join(string(d), rel))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return io.Copy(f, r)
}

func TestCopy(t *testing.T) {
	dir := t.TempDir()
	p, _ := New("copy", Options{Store: dirStore(dir), CopyPath: func(b, k string) string { return b + "/" + k + ".data" }})
	f, err := p.Process(context.Background(), Object{Bucket: "b", Key: "k"}, iotest.HalfReader(strings.NewReader("a\nb\nc")))
	if err != nil || f["copy"] != "b/k.data" || f["lines"] != int64(3) {
		t.Fatalf("fields %v, err %v", f, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "b/k.data")); string(got) != "a\nb\nc" {
		t.Fatalf("copy holds %q", got)
	}
	if _, err := (Copy{}).Process(context.Background(), Object{}, strings.NewReader("x")); !errors.Is(err, ErrPermanent) {
		t.Fatalf("copy without a store: %v", err)
	}
}
