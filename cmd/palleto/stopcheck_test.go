package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// waitStopped waits for cmd to exit after a stop signal, and fails the test if the stop needed
// the shutdown timeout to cut work short: a prompt stop is what the log shows (no "shutdown
// timeout reached" line), not a measure of the clock. The watchdog only keeps a stuck process
// from holding the test for ever.
func waitStopped(t *testing.T, cmd *exec.Cmd, stderr *syncBuffer) error {
	t.Helper()
	watchdog := time.AfterFunc(3*time.Minute, func() { cmd.Process.Kill() })
	defer watchdog.Stop()
	err := cmd.Wait()
	if strings.Contains(stderr.String(), "shutdown timeout reached") {
		t.Errorf("the stop waited out --shutdown-timeout and cut in-flight work:\n%s", tail(stderr.String(), 3000))
	}
	return err
}

// receiveRecorder is an SQS endpoint in front of another that notes, for each ReceiveMessage
// (the JSON protocol the SDK speaks), the wait it asked for and whether its answer was empty.
type receiveRecorder struct {
	srv *httptest.Server
	mu  sync.Mutex
	// heldEmpty counts the receives that asked for a wait over 1s and whose answer, empty at the
	// end of that wait, was given to the client: a consumer that waited a long poll out.
	heldEmpty, receives int
}

func newReceiveRecorder(t *testing.T, target string) *receiveRecorder {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiveRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.ModifyResponse = func(resp *http.Response) error {
		wait, ok := resp.Request.Context().Value(waitKey{}).(int)
		if !ok {
			return nil
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return err
		}
		var out struct{ Messages []json.RawMessage }
		json.Unmarshal(body, &out)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.receives++
		if wait > 1 && len(out.Messages) == 0 && resp.StatusCode == http.StatusOK {
			r.heldEmpty++
		}
		return nil
	}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.Header.Get("X-Amz-Target"), ".ReceiveMessage") {
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			var in struct{ WaitTimeSeconds int }
			json.Unmarshal(body, &in)
			req = req.WithContext(context.WithValue(req.Context(), waitKey{}, in.WaitTimeSeconds))
		}
		proxy.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

type waitKey struct{}

func (r *receiveRecorder) counts() (receives, heldEmpty int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.receives, r.heldEmpty
}
