package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/palleto/palleto/internal/testenv"
)

// TestSmoke runs the whole harness at tiny sizes, so that it cannot rot: every scenario runs
// against the real servers and lands in the table, and the results section of a file is
// replaced, not appended.
func TestSmoke(t *testing.T) {
	env := testenv.Get(t)
	o := Quick
	o.Log = quiet
	o.Bin = ""
	// go build in Run needs the module root as working directory.
	wd, _ := os.Getwd()
	if err := os.Chdir(".."); err != nil {
		t.Fatal(err)
	}
	defer os.Chdir(wd)
	rep, err := Run(context.Background(), env, o)
	if err != nil {
		t.Fatal(err)
	}
	md := rep.Markdown()
	for _, want := range []string{"P1 big objects", "--workers 2", "P2 small objects", "P2 the disk alone", "files/s", "messages per receive", "P3 memory", "P4 latency", "MiB peak RSS", "objects/s", "p99"} {
		if !strings.Contains(md, want) {
			t.Errorf("the table lacks %q:\n%s", want, md)
		}
	}
	for _, r := range rep.Rows {
		if r.Target > 0 && r.Ratio <= 0 {
			t.Errorf("%s %s: no ratio measured", r.Scenario, r.Setting)
		}
	}
	file := filepath.Join(t.TempDir(), "PERFORMANCE.md")
	os.WriteFile(file, []byte("# Performance\n\nintro\n\n"+beginMark+"\nold\n"+endMark+"\n\n## Notes\nkept\n"), 0o644)
	if err := writeSection(file, md); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(file)
	if s := string(got); strings.Contains(s, "\nold\n") || !strings.Contains(s, "intro") || !strings.Contains(s, "kept") || strings.Count(s, beginMark) != 1 {
		t.Errorf("section not replaced in place:\n%s", s)
	}
}
