package localsqs

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// The Query protocol: form-encoded requests (Action=ReceiveMessage&QueueUrl=...&
// AttributeName.1=All) and XML answers. The AWS CLI up to 2.13 (Debian 12 ships 2.9.19), boto3
// before 2023, aws-sdk-go v1 and the Java v1 SDK speak it. The same handlers serve both
// protocols: a Query call is turned into the input a JSON call would have, and the answer into
// the XML SQS gives.

const queryNS = "http://queue.amazonaws.com/doc/2012-11-05/"

// isQuery reports whether r is a Query-protocol call.
func isQuery(r *http.Request) bool {
	if r.Header.Get("X-Amz-Target") != "" {
		return false
	}
	if r.Method == http.MethodGet {
		return r.URL.Query().Get("Action") != ""
	}
	return r.Method == http.MethodPost && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded")
}

func (s *Server) serveQuery(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeQueryErr(w, errBadRequest("MalformedQueryString", "%v", err))
		return
	}
	flat := map[string]string{}
	for k, v := range r.Form {
		if len(v) > 0 {
			flat[k] = v[0]
		}
	}
	action := flat["Action"]
	h, ok := handlers[action]
	if !ok {
		writeQueryErr(w, errBadRequest("InvalidAction", "%q is not implemented by this development server", action))
		return
	}
	delete(flat, "Action")
	delete(flat, "Version")
	in := queryInput(flat)
	if _, ok := in["QueueUrl"]; !ok && strings.Count(strings.Trim(r.URL.Path, "/"), "/") == 1 {
		// Older clients post to the queue's own URL instead of naming it.
		in["QueueUrl"] = s.baseURL + r.URL.Path
	}
	raw := map[string]json.RawMessage{}
	for k, v := range in {
		b, _ := json.Marshal(v)
		raw[k] = b
	}
	out, err := h(s, r, raw)
	if err != nil {
		writeQueryErr(w, err)
		return
	}
	var generic any
	b, _ := json.Marshal(out)
	json.Unmarshal(b, &generic)
	var body bytes.Buffer
	fmt.Fprintf(&body, `<?xml version="1.0"?><%sResponse xmlns="%s"><%sResult>`, action, queryNS, action)
	if m, ok := generic.(map[string]any); ok {
		writeElems(&body, action, m)
	}
	fmt.Fprintf(&body, `</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>`, action, newID(), action)
	w.Header().Set("Content-Type", "text/xml")
	w.Write(body.Bytes())
}

// numericParams are the parameters given as numbers in the JSON protocol.
var numericParams = map[string]bool{"MaxNumberOfMessages": true, "WaitTimeSeconds": true, "VisibilityTimeout": true,
	"DelaySeconds": true, "MaxResults": true}

// queryInput turns flattened Query parameters into the JSON protocol's input:
//
//	AttributeName.1=All                     -> "AttributeNames": ["All"]
//	Attribute.1.Name=X&Attribute.1.Value=Y  -> "Attributes": {"X": "Y"}
//	MessageAttribute.1.Name=A&MessageAttribute.1.Value.DataType=String&...StringValue=v
//	                                        -> "MessageAttributes": {"A": {"DataType": ..., "StringValue": ...}}
//	DeleteMessageBatchRequestEntry.1.Id=0&...ReceiptHandle=r -> "Entries": [{"Id": "0", "ReceiptHandle": "r"}]
func queryInput(flat map[string]string) map[string]any {
	out := map[string]any{}
	lists := map[string]map[int]map[string]string{}
	for k, v := range flat {
		parts := strings.SplitN(k, ".", 3)
		if len(parts) >= 2 {
			if i, err := strconv.Atoi(parts[1]); err == nil {
				rest := ""
				if len(parts) == 3 {
					rest = parts[2]
				}
				if lists[parts[0]] == nil {
					lists[parts[0]] = map[int]map[string]string{}
				}
				if lists[parts[0]][i] == nil {
					lists[parts[0]][i] = map[string]string{}
				}
				lists[parts[0]][i][rest] = v
				continue
			}
		}
		if n, err := strconv.Atoi(v); err == nil && numericParams[k] {
			out[k] = n
		} else {
			out[k] = v
		}
	}
	for base, items := range lists {
		idx := make([]int, 0, len(items))
		for i := range items {
			idx = append(idx, i)
		}
		sort.Ints(idx)
		switch {
		case base == "Attribute":
			m := map[string]string{}
			for _, i := range idx {
				m[items[i]["Name"]] = items[i]["Value"]
			}
			out["Attributes"] = m
		case base == "MessageAttribute":
			m := map[string]map[string]string{}
			for _, i := range idx {
				v := map[string]string{}
				for rest, val := range items[i] {
					if f, ok := strings.CutPrefix(rest, "Value."); ok {
						v[f] = val
					}
				}
				m[items[i]["Name"]] = v
			}
			out["MessageAttributes"] = m
		case strings.HasSuffix(base, "RequestEntry"):
			entries := make([]any, 0, len(idx))
			for _, i := range idx {
				entries = append(entries, queryInput(items[i]))
			}
			out["Entries"] = entries
		case base == "Tag":
		default: // a list of values: AttributeName.1, MessageAttributeName.1, ...
			vals := make([]string, 0, len(idx))
			for _, i := range idx {
				vals = append(vals, items[i][""])
			}
			out[base+"s"] = vals
		}
	}
	return out
}

// writeElems writes the XML of one JSON answer object, as SQS's Query protocol shapes it.
func writeElems(b *bytes.Buffer, action string, m map[string]any) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch v := m[k].(type) {
		case map[string]any:
			switch k {
			case "Attributes":
				for _, name := range sortedKeys(v) {
					fmt.Fprintf(b, "<Attribute><Name>%s</Name><Value>%s</Value></Attribute>", esc(name), esc(fmt.Sprint(v[name])))
				}
			case "MessageAttributes":
				for _, name := range sortedKeys(v) {
					fmt.Fprintf(b, "<MessageAttribute><Name>%s</Name><Value>", esc(name))
					if attr, ok := v[name].(map[string]any); ok {
						writeElems(b, action, attr)
					}
					b.WriteString("</Value></MessageAttribute>")
				}
			}
		case []any:
			elem := strings.TrimSuffix(k, "s")
			switch k {
			case "Successful":
				elem = action + "ResultEntry"
			case "Failed":
				elem = "BatchResultErrorEntry"
			}
			for _, item := range v {
				fmt.Fprintf(b, "<%s>", elem)
				if im, ok := item.(map[string]any); ok {
					writeElems(b, action, im)
				} else {
					b.WriteString(esc(fmt.Sprint(item)))
				}
				fmt.Fprintf(b, "</%s>", elem)
			}
		case nil:
		default:
			fmt.Fprintf(b, "<%s>%s</%s>", k, esc(fmt.Sprint(v)), k)
		}
	}
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func writeQueryErr(w http.ResponseWriter, e *apiError) {
	code := e.code
	if e.queryCode != "" {
		code = e.queryCode
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, `<?xml version="1.0"?><ErrorResponse xmlns="%s"><Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message><Detail/></Error><RequestId>%s</RequestId></ErrorResponse>`,
		queryNS, esc(code), esc(e.text), newID())
}
