package faultproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
)

// Exchange is called with each request and the server's answer to it (its body not yet read),
// and returns the answer the client gets: resp itself, changed or not, or another one. A
// request cannot be changed (S3 requests are signed, their Range and If-Match headers too):
// a test that wants the server to seem to ignore a header answers as if it had. It is called
// from the connection's goroutine, several connections at once.
//
// The answer is written with (*http.Response).Write: its ContentLength (not the header) says
// how many body bytes follow, and a body shorter than it cuts the connection there.
type Exchange func(req *http.Request, resp *http.Response) *http.Response

// serveHTTP forwards one request at a time from client to server, and each answer, through
// the Exchange, back. 1xx answers (100 Continue) pass as they are.
func (p *Proxy) serveHTTP(client, server net.Conn) {
	defer client.Close()
	defer server.Close()
	cr, sr := bufio.NewReader(client), bufio.NewReader(server)
	for {
		req, err := http.ReadRequest(cr)
		if err != nil {
			return
		}
		if err := req.Write(server); err != nil {
			return
		}
		resp, err := http.ReadResponse(sr, req)
		for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 {
			if resp.Write(client) != nil {
				return
			}
			resp, err = http.ReadResponse(sr, req)
		}
		if err != nil {
			return
		}
		body := resp.Body // the server's, whatever the Exchange makes of resp
		out := p.cfg.Exchange(req, resp)
		werr := out.Write(client) // closes out.Body
		var cerr error
		if out.Body != body { // the server's body is read to its end: its next answer is where sr reads next
			_, cerr = io.Copy(io.Discard, body)
			body.Close()
		}
		if werr != nil || cerr != nil || req.Close || resp.Close || out.Close {
			return
		}
	}
}

// Body makes resp's body b, with the Content-Length of b.
func Body(resp *http.Response, b []byte) {
	resp.Body = io.NopCloser(bytes.NewReader(b))
	resp.ContentLength = int64(len(b))
	resp.Header.Del("Content-Length")
}

// ContentRange parses an answer's "Content-Range: bytes START-END/TOTAL" (TOTAL -1 for "*").
func ContentRange(resp *http.Response) (start, end, total int64, ok bool) {
	cr, found := strings.CutPrefix(resp.Header.Get("Content-Range"), "bytes ")
	if !found {
		return 0, 0, 0, false
	}
	rng, tot, found := strings.Cut(cr, "/")
	a, b, found2 := strings.Cut(rng, "-")
	if !found || !found2 {
		return 0, 0, 0, false
	}
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	total, err3 := strconv.ParseInt(tot, 10, 64)
	if tot == "*" {
		total, err3 = -1, nil
	}
	return start, end, total, err1 == nil && err2 == nil && err3 == nil
}

// SetContentRange sets an answer's Content-Range to bytes start-end/total.
func SetContentRange(resp *http.Response, start, end, total int64) {
	resp.Header.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, end, total))
}

// Partial returns a 206 answer to req carrying b as the bytes start.. of an object of total
// bytes with the eTag etag (quoted as S3 quotes it): a server answering what it chose.
func Partial(req *http.Request, b []byte, start, total int64, etag string) *http.Response {
	resp := &http.Response{StatusCode: http.StatusPartialContent, ProtoMajor: 1, ProtoMinor: 1, Request: req, Header: http.Header{}}
	resp.Header.Set("ETag", `"`+strings.Trim(etag, `"`)+`"`)
	resp.Header.Set("Accept-Ranges", "bytes")
	SetContentRange(resp, start, start+int64(len(b))-1, total)
	Body(resp, b)
	return resp
}
