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
	for _, want := range []string{"P1 big objects", "P1 plain SDK reader", "P1 without the engine", "--workers 2", "P2 small objects", "P2 CPU per object, SQLite", "P2 small objects, Kafka source", "P2 small objects, RabbitMQ source", "P2 the disk alone", "files/s", "messages per receive", "P3 memory", "P4 latency", "MiB peak RSS", "objects/s", "p99"} {
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

// TestRatios: a ratio is the median of the runs' own ratios, and a ratio just short of its
// target is not shown rounded up to it.
func TestRatios(t *testing.T) {
	// The second run is slower in both figures: its ratio (0.9) is the median, whereas the
	// ratio of the medians would be 100/300.
	if got := ratio([]float64{100, 90, 300}, []float64{400, 100, 300}); got != 0.9 {
		t.Errorf("ratio = %v, want 0.9", got)
	}
	if got := ratio(nil, nil); got != 0 {
		t.Errorf("ratio of no runs = %v", got)
	}
	rep := Report{Rows: []Row{
		{Scenario: "short", Ratio: 0.8951, Target: 0.90},
		{Scenario: "reached", Ratio: 0.9, Target: 0.90},
	}}
	md := rep.Markdown()
	if !strings.Contains(md, "| short |  |  |  | 0.895 | ≥ 0.90 | **not met** |") || !strings.Contains(md, "| reached |  |  |  | 0.90 | ≥ 0.90 | met |") {
		t.Errorf("rows:\n%s", md)
	}
}
