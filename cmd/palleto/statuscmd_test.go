package main

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	statuspage "github.com/palleto/palleto/status"
)

// TestStatusCommand: `palleto status --json` prints /status.json as the daemon sends it;
// without --json, when stdout is not a terminal, one screen of the same; with no daemon, exit 1
// and what to check.
func TestStatusCommand(t *testing.T) {
	tr := statuspage.New(statuspage.Config{Version: "v9", Inflate: "go", Source: "https://sqs.eu-west-1.amazonaws.com/1/q", Store: "out",
		Dependencies: []string{"S3"}, Counts: func() statuspage.Counts { return statuspage.Counts{Received: 4, Done: 3, Failed: 1} }})
	tr.ObjectBegan(1, "logs", "2026/12/03/big.gz", 1000)
	tr.ObjectReading(1, 0).Store(250)
	tr.Failure("logs", "bad.gz", "permanent", "corrupt compressed data: flate: corrupt input", "deleted")
	srv := httptest.NewServer(tr.Handler())
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	code, stdout, stderr := runPalleto(t, nil, time.Minute, "status", "--addr", addr, "--json")
	var s statuspage.Status
	if err := json.Unmarshal([]byte(stdout), &s); code != 0 || err != nil {
		t.Fatalf("status --json: exit %d, %v\n%s%s", code, err, stdout, stderr)
	}
	if s.Counts.Done != 3 || len(s.InFlight) != 1 || s.InFlight[0].BytesRead != 250 || s.Failures[0].Key != "bad.gz" {
		t.Errorf("status --json: %+v", s)
	}
	code, stdout, stderr = runPalleto(t, nil, time.Minute, "status", "--addr", srv.URL)
	for _, want := range []string{"Palleto v9 inflate=go: working", "received 4 · done 3", "25%", "logs/2026/12/03/big.gz", "logs/bad.gz", "object: permanent", "corrupt compressed data"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("palleto status: no %q in:\n%s%s", want, stdout, stderr)
		}
	}
	if code != 0 || strings.Contains(stdout, "\033[") {
		t.Errorf("palleto status to a pipe: exit %d, escape codes %v", code, strings.Contains(stdout, "\033["))
	}
	code, _, stderr = runPalleto(t, nil, time.Minute, "status", "--addr", freeAddr(t))
	if code != 1 || !strings.Contains(stderr, "is `palleto run --metrics-addr") {
		t.Errorf("no daemon: exit %d, %s", code, stderr)
	}
}
