package palleto

import (
	"context"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/palleto/palleto/process"
)

// nanProc is a user's Go processor that reports NaN for keys starting "nan".
type nanProc struct{}

func (nanProc) Name() string { return "lines" }
func (nanProc) Process(ctx context.Context, o process.Object, r io.Reader) (process.Fields, error) {
	f, err := process.Lines{}.Process(ctx, o, r)
	if strings.HasPrefix(o.Key, "nan") {
		f["ratio"] = math.NaN()
	}
	return f, err
}

// TestResultThatCannotBeStoredFailsAlone: a result the store cannot encode (a NaN field) is
// its object's own permanent failure: recorded, its message ended (deleted), never waiting for
// the store as if it were down; the other object of the same message is stored.
func TestResultThatCannotBeStoredFailsAlone(t *testing.T) {
	r := newRig(t, map[string]fakeObject{"nan.log": {body: "a\n"}, "good.log": {body: "a\nb\n"}}, nil)
	r.d.proc = nanProc{}
	r.src.Send(event("nan.log", "good.log"))
	r.deliver(t, context.Background())
	if res, _ := r.st.Result(context.Background(), "b", "good.log", "lines"); res == nil || fmt.Sprint(res.Fields["lines"]) != "2" {
		t.Errorf("the healthy object's result: %+v", res)
	}
	if f := r.failure(t, "nan.log"); f == nil || f.Class != ClassPermanent || f.Action != "deleted" || !strings.Contains(f.Error, "NaN") {
		t.Errorf("record of nan.log: %+v; want permanent, deleted, naming the NaN", f)
	}
	if got := r.src.Events(); fmt.Sprint(got) != "[delete m1]" {
		t.Errorf("events %v; want the message deleted", got)
	}
}
