package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/palleto/palleto"
)

// wantProgress decides --progress: auto shows the live line only when w is a terminal.
func wantProgress(mode string, w io.Writer) (bool, error) {
	switch mode {
	case "always":
		return true, nil
	case "never":
		return false, nil
	case "auto":
		return isTerminal(w), nil
	}
	return false, fmt.Errorf("progress: %q is not one of auto, always, never", mode)
}

// isTerminal reports whether w is a terminal (for text logs and the live progress line).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// startProgress rewrites one status line on w every second: objects/s and MB/s over the last
// second, totals, in flight, and the queue's depth (asked of SQS every 5 seconds). It returns
// the function that stops it.
func startProgress(d *palleto.Daemon, w *progressOut) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		prev, prevAt := d.Stats(), time.Now()
		depth, lastDepth := "?", time.Time{}
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				if now.Sub(lastDepth) >= 5*time.Second {
					qctx, qcancel := context.WithTimeout(ctx, 2*time.Second)
					if v, f, err := d.QueueDepth(qctx); err == nil {
						depth = fmt.Sprintf("%d waiting, %d in flight", v, f)
					}
					qcancel()
					lastDepth = now
				}
				s := d.Stats()
				secs := now.Sub(prevAt).Seconds()
				w.show(fmt.Sprintf("palleto: %.1f objects/s, %s | %d done, %d failed, %d in flight | queue: %s",
					float64(s.Objects+s.AlreadyDone-prev.Objects-prev.AlreadyDone)/secs, rate(s.Bytes-prev.Bytes, now.Sub(prevAt)),
					s.Objects+s.AlreadyDone, s.Failed, d.InFlight(), depth))
				prev, prevAt = s, now
			}
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// progressOut is the stderr that the log and the live progress line share: a log line first
// clears the progress line, so that the two never share a line; the progress line is drawn
// again at its next tick. Without a progress line, writes pass through.
type progressOut struct {
	mu    sync.Mutex
	w     io.Writer
	shown bool // a progress line is on the terminal's last line
}

// Write writes log output, after clearing the progress line.
func (p *progressOut) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		io.WriteString(p.w, "\r\033[K")
		p.shown = false
	}
	return p.w.Write(b)
}

// show draws line as the progress line, in place of the one before.
func (p *progressOut) show(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	io.WriteString(p.w, "\r\033[K"+line)
	p.shown = true
}

// clear removes the progress line, if one is shown.
func (p *progressOut) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		io.WriteString(p.w, "\r\033[K")
		p.shown = false
	}
}
