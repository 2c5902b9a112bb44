package status

import (
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Render writes s as one terminal screen of at most width columns (0: 100) and about 40
// lines: what the page shows, with the last failures that fit.
func Render(w io.Writer, s Status, width int) {
	if width <= 0 {
		width = 100
	}
	var b strings.Builder
	line := func(format string, args ...any) {
		l := fmt.Sprintf(format, args...)
		if utf8.RuneCountInString(l) > width {
			l = string([]rune(l)[:width-1]) + "…"
		}
		b.WriteString(l + "\n")
	}
	state := "working"
	for _, d := range s.Dependencies {
		if !d.Up {
			state = "DEGRADED"
		}
	}
	line("Palleto %s inflate=%s: %s, up for %s", s.Version, s.Inflate, state, HumanDuration(time.Duration(s.UptimeSeconds*float64(time.Second))))
	line("source  %s", s.Source)
	line("store   %s", s.Store)
	c := s.Counts
	line("counts  received %d · done %d · already done %d · failed %d · retried %d · dead-lettered %d · skipped %d",
		c.Received, c.Done, c.AlreadyDone, c.Failed, c.Retried, c.DeadLettered, c.Skipped)
	line("rate    %.1f objects/s · %.1f MB/s decompressed (last minute)", s.Rate.ObjectsPerSecond, s.Rate.BytesPerSecond/1e6)
	line("15 min  %s", spark(s.History, min(90, width-8)))
	q := s.Queue
	line("queue   waiting %s · in flight %s · oldest waited %s", orUnknown(q.Visible), orUnknown(q.InFlight), ageOrUnknown(q.OldestAgeSeconds))
	line("")
	line("DEPENDENCIES")
	for _, d := range s.Dependencies {
		if d.Up {
			line("  %-16s up    since %s", d.Name, d.Since.Local().Format("15:04:05"))
		} else {
			line("  %-16s DOWN  %s unreachable since %s: %s", d.Name, d.Name, d.Since.Local().Format("15:04:05"), d.Reason)
		}
	}
	line("")
	line("IN FLIGHT (%d)", len(s.InFlight))
	now := time.Now()
	for _, o := range s.InFlight {
		pct := 0.0
		if o.Size > 0 {
			pct = min(float64(o.BytesRead)/float64(o.Size), 1)
		}
		size := "?"
		if o.Size > 0 {
			size = HumanBytes(o.Size)
		}
		line("  w%-3d [%-20s] %3.0f%%  %s of %s  %s  %s/%s", o.Worker, strings.Repeat("#", int(pct*20)), 100*pct,
			HumanBytes(o.BytesRead), size, HumanDuration(now.Sub(o.StartedAt)), o.Bucket, o.Key)
	}
	line("")
	room := max(2, (40-strings.Count(b.String(), "\n"))/2) // two lines each
	line("LAST FAILURES (%d shown of the last %d, newest first)", min(room, len(s.Failures)), len(s.Failures))
	for i, f := range s.Failures {
		if i == room {
			break
		}
		whose := "object"
		if f.Class == "unavailable" {
			whose = "world"
		}
		line("  %s  %s/%s  %s: %s  -> %s", f.At.Local().Format("15:04:05"), f.Bucket, f.Key, whose, f.Class, f.Action)
		line("            %s", oneLine(f.Error))
	}
	io.WriteString(w, b.String())
}

// spark draws the history's objects per step as a line of n block characters.
func spark(h []Point, n int) string {
	if len(h) == 0 {
		return "(the first point comes after 10 s)"
	}
	if len(h) > n {
		h = h[len(h)-n:]
	}
	var top int64 = 1
	for _, p := range h {
		top = max(top, p.Objects)
	}
	blocks := []rune(" ▁▂▃▄▅▆▇█")
	var b strings.Builder
	for _, p := range h {
		b.WriteRune(blocks[int(p.Objects*int64(len(blocks)-1)/top)])
	}
	return fmt.Sprintf("%s  (top %d objects per step)", b.String(), top)
}

func orUnknown(v *int64) string {
	if v == nil {
		return "?"
	}
	return fmt.Sprint(*v)
}

func ageOrUnknown(v *float64) string {
	if v == nil {
		return "?"
	}
	return HumanDuration(time.Duration(*v * float64(time.Second)))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
