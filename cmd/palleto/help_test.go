package main

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/palleto/palleto"
)

// TestEveryCommandsHelpIsOneStyle: every command's --help exits 0 and lists its flags as run's
// does, `--name`, each with its PALLETO_ environment variable; none prints Go's `-name` list.
func TestEveryCommandsHelpIsOneStyle(t *testing.T) {
	goStyle := regexp.MustCompile(`(?m)^  -[a-z]`)
	for _, cmd := range []string{"run", "backfill", "devstack", "demo", "version", "status"} {
		code, stdout, stderr := runPalleto(t, nil, time.Minute, cmd, "--help")
		help := stdout + stderr
		if code != 0 || !strings.Contains(help, "Usage: palleto "+cmd) {
			t.Errorf("palleto %s --help: exit %d\n%s", cmd, code, help)
			continue
		}
		if goStyle.MatchString(help) {
			t.Errorf("palleto %s --help prints Go's -flag list:\n%s", cmd, help)
		}
		flags := regexp.MustCompile(`(?m)^  --([a-z0-9-]+)`).FindAllStringSubmatch(help, -1)
		if cmd != "version" && len(flags) == 0 {
			t.Errorf("palleto %s --help lists no --flag:\n%s", cmd, help)
		}
		for _, f := range flags {
			if env := "env PALLETO_" + envName(f[1]); !strings.Contains(help, env) {
				t.Errorf("palleto %s --help: --%s without %q", cmd, f[1], env)
			}
		}
	}
}

func TestSizesAndCountsReadAsWords(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 999: "999 B", 1000: "1.0 kB", 93_100: "93.1 kB", 658_177: "658.2 kB",
		2_500_000: "2.5 MB", 10_700_000_000: "10.7 GB"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
	if count(1, "object") != "1 object" || count(0, "object") != "0 objects" || count(2, "message") != "2 messages" {
		t.Errorf("count: %q %q %q", count(1, "object"), count(0, "object"), count(2, "message"))
	}
}

// TestSummaryWording: the exit summary says sizes by magnitude, "1 object" in the singular, and
// gives a busy time and rates only when objects were processed.
func TestSummaryWording(t *testing.T) {
	var b bytes.Buffer
	printSummary(&b, palleto.Summary{Objects: 1, Lines: 834, Bytes: 97_634, Fetched: 13_525, Deleted: 1, Elapsed: 2 * time.Second, Busy: 20 * time.Millisecond, OutDir: "out"})
	one := b.String()
	for _, want := range []string{"1 object processed", "834 lines", "97.6 kB decompressed from 13.5 kB fetched", "(20ms busy)", "1 message deleted"} {
		if !strings.Contains(one, want) {
			t.Errorf("summary %q lacks %q", one, want)
		}
	}
	b.Reset()
	printSummary(&b, palleto.Summary{Elapsed: 2005 * time.Millisecond, Busy: 2005 * time.Millisecond, OutDir: "out"})
	none := b.String()
	if !strings.Contains(none, "0 objects processed") || strings.Contains(none, "busy") || strings.Contains(none, "/s") {
		t.Errorf("summary of no object gives a busy time or rates: %q", none)
	}
}
