package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// Row is one line of the results table. Target > 0 is a ratio to reach (Ratio >= Target); Max > 0
// a ratio not to exceed (Ratio <= Max); Target -1 is reported without a ratio target (P3's bound
// is in Limit: Ratio <= 1 passes).
type Row struct {
	Scenario, Setting, Value, Limit string
	Ratio, Target, Max              float64
}

// Report is a whole benchmark run.
type Report struct {
	Machine string
	Options Options
	Started time.Time
	Elapsed time.Duration
	Rows    []Row
}

const beginMark, endMark = "<!-- bench:begin -->", "<!-- bench:end -->"

// Markdown renders the results section, markers included.
func (r *Report) Markdown() string {
	var b strings.Builder
	p2 := r.Options.P2Runs
	if p2 <= 0 {
		p2 = r.Options.Runs
	}
	fmt.Fprintf(&b, "%s\nMeasured %s on %s; %d run(s) per scenario (P2: %d, each store's Palleto run next to a bare loop of its own); values are medians, ratios the median of each run's ratio to its own limit; `go run ./bench` took %s.\n\n",
		beginMark, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Machine, r.Options.Runs, p2, r.Elapsed.Round(time.Second))
	b.WriteString("| scenario | setting | Palleto | limit, same run | ratio | target | |\n|---|---|---|---|---|---|---|\n")
	for _, row := range r.Rows {
		ratio, target, verdict := "", "", ""
		switch {
		case row.Target > 0:
			ratio, target = fmt.Sprintf("%.2f", row.Ratio), fmt.Sprintf("≥ %.2f", row.Target)
			if ratio == fmt.Sprintf("%.2f", row.Target) && row.Ratio < row.Target {
				ratio = fmt.Sprintf("%.3f", row.Ratio) // 0.895 is not 0.90: show why it falls short
			}
			verdict = pass(row.Ratio >= row.Target)
		case row.Max > 0:
			ratio, target = fmt.Sprintf("%.2f", row.Ratio), fmt.Sprintf("≤ %.2f", row.Max)
			if ratio == fmt.Sprintf("%.2f", row.Max) && row.Ratio > row.Max {
				ratio = fmt.Sprintf("%.3f", row.Ratio)
			}
			verdict = pass(row.Ratio <= row.Max)
		case row.Scenario == "P3 memory":
			target = "≤ 100 MiB"
			verdict = pass(row.Ratio <= 1)
		case row.Ratio > 0: // a figure that explains another, with no target of its own
			ratio = fmt.Sprintf("%.2f", row.Ratio)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", row.Scenario, row.Setting, row.Value, row.Limit, ratio, target, verdict)
	}
	b.WriteString(endMark + "\n")
	return b.String()
}

func pass(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// writeSection replaces the results section of path (between the markers), or creates the file.
func writeSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	i, j := strings.Index(text, beginMark), strings.Index(text, endMark)
	if i < 0 || j < i {
		text = "# Performance\n\n" + section
	} else {
		text = text[:i] + section + text[j+len(endMark)+1:]
	}
	return os.WriteFile(path, []byte(text), 0o644)
}
