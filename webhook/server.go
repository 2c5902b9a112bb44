package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// testHookSpooled, when set by a test, is called once an event is committed to the spool and
// before it is answered: a crash there (the sender then sends it again) is forced with it.
var testHookSpooled func(w http.ResponseWriter, id int64)

// ServeHTTP answers the sender: see the package comment for what each answer means.
func (s *Source) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != s.cfg.Path {
		http.Error(w, fmt.Sprintf("webhook: no such path %q: events are POSTed to %s", r.URL.Path, s.cfg.Path), http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodGet, http.MethodHead: // a sender's reachability probe
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "palleto webhook: POST S3 event notifications here\n")
		return
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		http.Error(w, "webhook: "+r.Method+" is not allowed: POST S3 event notifications", http.StatusMethodNotAllowed)
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="palleto"`)
		http.Error(w, "webhook: bearer token missing or wrong (Authorization: Bearer TOKEN, or ?token=TOKEN)", http.StatusUnauthorized)
		return
	}
	if r.ContentLength > MaxBody {
		http.Error(w, fmt.Sprintf("webhook: the body of %d bytes is over the limit of %d", r.ContentLength, MaxBody), http.StatusRequestEntityTooLarge)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.CallTimeout)
	defer cancel()
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		busy(w, 1, "webhook: too many events arriving at once; try again")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		http.Error(w, fmt.Sprintf("webhook: the body is over the limit of %d bytes", MaxBody), http.StatusRequestEntityTooLarge)
		return
	case err != nil:
		http.Error(w, "webhook: reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	test, err := check(body)
	if err != nil {
		s.log.Debug("webhook: event refused", "error", err, "remote", r.RemoteAddr)
		http.Error(w, "webhook: "+err.Error(), http.StatusBadRequest)
		return
	}
	if test {
		io.WriteString(w, `{"spooled":false,"reason":"s3:TestEvent: nothing to do"}`+"\n")
		return
	}
	id, err := s.insert(ctx, body)
	switch {
	case errors.Is(err, errSpoolFull):
		busy(w, 30, fmt.Sprintf("webhook: the spool holds its limit of %d messages (--spool-max-messages); try again later", s.cfg.MaxMessages))
		return
	case err != nil:
		if s.down.CompareAndSwap(false, true) {
			s.log.Error("webhook spool not writable: events are answered 503 (the sender keeps them and sends them again)", "spool", s.cfg.Spool, "error", err)
		}
		why := "cannot write the spool"
		if isFull(err) {
			why = "the spool's disk is full"
		}
		busy(w, 5, fmt.Sprintf("webhook: %s; try again: %v", why, err))
		return
	}
	if s.down.CompareAndSwap(true, false) {
		s.log.Warn("webhook spool writable again", "spool", s.cfg.Spool)
	}
	s.trace("webhook: spooled message %d (%d bytes)", id, len(body))
	if testHookSpooled != nil {
		testHookSpooled(w, id)
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"spooled":true,"id":"%d"}`+"\n", id)
}

// busy answers 503 with Retry-After: the sender keeps the event and sends it again.
func busy(w http.ResponseWriter, retryAfter int, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	http.Error(w, msg, http.StatusServiceUnavailable)
}

// authorized checks the bearer token (constant time), when one is configured.
func (s *Source) authorized(r *http.Request) bool {
	if s.cfg.Token == "" {
		return true
	}
	want := sha256.Sum256([]byte(s.cfg.Token))
	ok := 0
	try := func(got string) {
		h := sha256.Sum256([]byte(got))
		ok |= subtle.ConstantTimeCompare(h[:], want[:])
	}
	if scheme, tok, found := strings.Cut(r.Header.Get("Authorization"), " "); found && strings.EqualFold(scheme, "Bearer") {
		try(strings.TrimSpace(tok))
	}
	if _, pass, found := r.BasicAuth(); found {
		try(pass)
	}
	if t := r.URL.Query().Get("token"); t != "" {
		try(t)
	}
	return ok == 1
}

// check says whether body is an event to spool: a JSON object with a non-empty Records array
// (the records themselves are the daemon's to read: a bad one is dead-lettered with its
// cause), or an s3:TestEvent (test: answered and not spooled).
func check(body []byte) (test bool, err error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' {
		return false, errors.New("not a JSON object: an S3 event notification ({\"Records\":[...]}) is expected")
	}
	var probe struct {
		Records json.RawMessage `json:"Records"`
		Event   string          `json:"Event"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return false, fmt.Errorf("not JSON: %v", err)
	}
	if len(probe.Records) == 0 || string(probe.Records) == "null" {
		if probe.Event == "s3:TestEvent" {
			return true, nil
		}
		return false, errors.New("no Records: not an S3 event notification")
	}
	var recs []json.RawMessage
	if err := json.Unmarshal(probe.Records, &recs); err != nil {
		return false, errors.New("Records is not an array")
	}
	if len(recs) == 0 {
		return false, errors.New("Records is empty")
	}
	return false, nil
}

// insert spools body and returns its row ID once the transaction committed.
func (s *Source) insert(ctx context.Context, body []byte) (int64, error) {
	var id int64
	o := &op{committed: s.broadcast}
	o.run = func(g *group) error {
		if s.sp.count.Load()+g.inserted >= s.sp.max {
			o.refused = errSpoolFull
			return nil
		}
		now := g.now.UnixNano()
		res, err := g.tx.ExecContext(g.ctx, `INSERT INTO messages (body, spooled_at, not_before) VALUES (?, ?, ?)`, body, now, now)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		if id, err = res.LastInsertId(); err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		g.inserted++
		return nil
	}
	err := s.sp.submit(ctx, o)
	return id, err
}
