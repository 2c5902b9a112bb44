package localsqs

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is an in-memory SQS endpoint. Create it with New, serve it with Serve or ListenAndServe
// (or use it as an http.Handler).
type Server struct {
	mu      sync.Mutex
	queues  map[string]*queue // by name
	baseURL string
	region  string
	account string
}

// New returns an empty server whose queue URLs start with baseURL (e.g. http://127.0.0.1:9324).
func New(baseURL string) *Server {
	return &Server{queues: map[string]*queue{}, baseURL: strings.TrimRight(baseURL, "/"), region: "us-east-1", account: "000000000000"}
}

// Listen starts serving on addr (e.g. "127.0.0.1:0") and returns the server, its base URL and a
// function that stops it.
func Listen(addr string) (*Server, string, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", nil, err
	}
	base := "http://" + ln.Addr().String()
	s := New(base)
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); hs.Serve(ln) }()
	return s, base, func() { hs.Close(); <-done }, nil
}

type apiError struct {
	status     int
	code, text string
	queryCode  string // the old Query protocol's code, sent in x-amzn-query-error
}

func (e *apiError) Error() string { return e.code + ": " + e.text }

func errBadRequest(code, format string, args ...any) *apiError {
	return &apiError{status: 400, code: code, text: fmt.Sprintf(format, args...)}
}

func errNoQueue(name string) *apiError {
	return &apiError{status: 400, code: "QueueDoesNotExist", queryCode: "AWS.SimpleQueueService.NonExistentQueue", text: "The specified queue does not exist: " + name}
}

// ServeHTTP answers one call: of the JSON protocol (POST, X-Amz-Target: AmazonSQS.<Action>), or
// of the older Query protocol (Action=<Action>, form-encoded; see query.go).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isQuery(r) {
		s.serveQuery(w, r)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	action, ok := strings.CutPrefix(target, "AmazonSQS.")
	if r.Method != http.MethodPost || !ok {
		if r.Method == http.MethodGet { // a health probe
			w.Write([]byte("palleto localsqs (development only)\n"))
			return
		}
		writeErr(w, errBadRequest("InvalidAction", "neither the JSON protocol (X-Amz-Target: AmazonSQS.*) nor the Query protocol (Action=...)"))
		return
	}
	var in map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeErr(w, errBadRequest("MalformedInput", "body is not JSON: %v", err))
		return
	}
	h, ok := handlers[action]
	if !ok {
		writeErr(w, errBadRequest("InvalidAction", "%s is not implemented by this development server", action))
		return
	}
	out, err := h(s, r, in)
	if err != nil {
		writeErr(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	json.NewEncoder(w).Encode(out)
}

func writeErr(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	if e.queryCode != "" {
		w.Header().Set("x-amzn-query-error", e.queryCode+";Sender")
	}
	w.WriteHeader(e.status)
	json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + e.code, "message": e.text})
}

func (s *Server) queueByURL(raw json.RawMessage) (*queue, *apiError) {
	var url string
	if json.Unmarshal(raw, &url) != nil || url == "" {
		return nil, errBadRequest("MissingParameter", "QueueUrl is required")
	}
	return s.lookup(url[strings.LastIndex(url, "/")+1:])
}

// lookup returns the queue called name, or QueueDoesNotExist.
func (s *Server) lookup(name string) (*queue, *apiError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.queues[name]
	if !ok {
		return nil, errNoQueue(name)
	}
	return q, nil
}

// Queue returns the URL of the queue called name, creating it if needed.
func (s *Server) Queue(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createLocked(name).url
}

// Send puts a message on the named queue (used for the embedded S3's notifications).
func (s *Server) Send(name, body string) error {
	q, err := s.lookup(name)
	if err != nil {
		return err
	}
	q.send(body, nil, 0)
	return nil
}

func (s *Server) createLocked(name string) *queue {
	if q, ok := s.queues[name]; ok {
		return q
	}
	q := newQueue(name, s.baseURL+"/"+s.account+"/"+name, fmt.Sprintf("arn:aws:sqs:%s:%s:%s", s.region, s.account, name))
	s.queues[name] = q
	return q
}

// QueueARN returns the ARN of the queue called name, creating it if needed.
func (s *Server) QueueARN(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createLocked(name).arn
}

// QueueNameByARN returns the name of the queue whose ARN is arn, if there is one.
func (s *Server) QueueNameByARN(arn string) (string, bool) {
	if q := s.queueByARN(arn); q != nil {
		return q.name, true
	}
	return "", false
}

func (s *Server) queueByARN(arn string) *queue {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.queues {
		if q.arn == arn {
			return q
		}
	}
	return nil
}

func setAttributes(q *queue, attrs map[string]string) *apiError {
	q.mu.Lock()
	defer q.mu.Unlock()
	for k, v := range attrs {
		switch k {
		case "VisibilityTimeout", "DelaySeconds":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 43200 {
				return errBadRequest("InvalidAttributeValue", "%s: %q is not a number of seconds in [0, 43200]", k, v)
			}
			if k == "VisibilityTimeout" {
				q.visibility = time.Duration(n) * time.Second
			} else {
				q.delay = time.Duration(n) * time.Second
			}
		case "RedrivePolicy":
			var p struct {
				ARN string `json:"deadLetterTargetArn"`
				Max any    `json:"maxReceiveCount"`
			}
			if err := json.Unmarshal([]byte(v), &p); err != nil || p.ARN == "" {
				return errBadRequest("InvalidAttributeValue", "RedrivePolicy: %q is not {\"deadLetterTargetArn\":...,\"maxReceiveCount\":...}", v)
			}
			n, err := strconv.Atoi(strings.Trim(fmt.Sprint(p.Max), `"`))
			if err != nil || n < 1 || n > 1000 {
				return errBadRequest("InvalidAttributeValue", "RedrivePolicy: maxReceiveCount %v is not in [1, 1000]", p.Max)
			}
			q.dlqARN, q.maxRecv = p.ARN, n
		default:
			q.attrs[k] = v
		}
	}
	return nil
}

// SetRedrive gives queue a redrive policy to dlq after maxReceives receipts.
func (s *Server) SetRedrive(queue, dlq string, maxReceives int) error {
	q, err := s.lookup(queue)
	if err != nil {
		return err
	}
	d, err := s.lookup(dlq)
	if err != nil {
		return err
	}
	if err := setAttributes(q, map[string]string{"RedrivePolicy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":%d}`, d.arn, maxReceives)}); err != nil {
		return err
	}
	return nil
}
