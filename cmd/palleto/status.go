package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	statuspage "github.com/palleto/palleto/status"
	"golang.org/x/sys/unix"
)

// cmdStatus is `palleto status`: the status page of a running daemon, in the terminal.
func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("palleto status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9090", "the --metrics-addr of the daemon to ask (HOST:PORT, :PORT, or an http:// URL)")
	asJSON := fs.Bool("json", false, "print /status.json once, as the daemon sends it, and exit")
	every := fs.Duration("every", 2*time.Second, "refresh the screen this often")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: palleto status [--addr HOST:PORT] [--json]

Shows what a running palleto does, from its status page (/status.json on its --metrics-addr):
counts, throughput over the last 15 minutes, the objects in flight and how far they are read,
the queue, the dependencies (and why one is down), the last failures. One screen, refreshed
until interrupted; printed once when stdout is not a terminal. For hosts without a browser.
`)
		printFlags(fs, fs.Output())
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *every < 100*time.Millisecond {
		return usageError{fmt.Errorf("every: %s is under the least, 100ms", *every)}
	}
	url := strings.TrimRight(*addr, "/")
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		if strings.HasPrefix(url, ":") {
			url = "127.0.0.1" + url
		}
		url = "http://" + url
	}
	url += "/status.json"
	client := &http.Client{Timeout: 5 * time.Second}
	get := func() ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, fmt.Errorf("addr: %q: %v", *addr, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("status %s: %w (is `palleto run --metrics-addr %s` running?)", url, err, *addr)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		if err != nil {
			return nil, fmt.Errorf("status %s: %w", url, err)
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("status %s: HTTP %d: %s (a palleto older than the status page?)", url, resp.StatusCode, bytes.TrimSpace(body[:min(len(body), 200)]))
		}
		return body, nil
	}
	parse := func(body []byte) (statuspage.Status, error) {
		var s statuspage.Status
		if err := json.Unmarshal(body, &s); err != nil {
			return s, fmt.Errorf("status %s: not the status JSON: %w", url, err)
		}
		return s, nil
	}
	body, err := get()
	if err != nil {
		return err
	}
	s, err := parse(body)
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := stdout.Write(body)
		return err
	}
	if !isTerminal(stdout) {
		statuspage.Render(stdout, s, 0)
		return nil
	}
	tick := time.NewTicker(*every)
	defer tick.Stop()
	for {
		var screen bytes.Buffer
		screen.WriteString("\033[H\033[2J") // home, clear
		if err != nil {
			fmt.Fprintf(&screen, "!! %v; showing what it said last\n", err)
		}
		statuspage.Render(&screen, s, termWidth(stdout))
		stdout.Write(screen.Bytes())
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if body, err = get(); err == nil {
			var next statuspage.Status
			if next, err = parse(body); err == nil {
				s = next
			}
		}
	}
}

// termWidth is w's width in columns when it is a terminal, else 0.
func termWidth(w io.Writer) int {
	if f, ok := w.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			return int(ws.Col)
		}
	}
	return 0
}
