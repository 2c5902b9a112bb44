package process_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/palleto/palleto/process"
)

// statusCount counts HTTP status codes in access-log lines: a team's own processor. It streams
// (one line at a time), reads r to its end and returns its error, as Processor requires.
type statusCount struct{}

func (statusCount) Name() string { return "status" }

func (statusCount) Process(ctx context.Context, o process.Object, r io.Reader) (process.Fields, error) {
	counts := map[string]int{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 {
			counts[f[len(f)-1]]++
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return process.Fields{"status": counts}, nil
}

// A processor of your own, registered so that `--processor status` (or Config.Processor) finds
// it. Pass it in palleto.Deps.Processor to use it directly instead.
func Example() {
	process.Register("status", func(process.Options) (process.Processor, error) { return statusCount{}, nil })
	p, _ := process.New("status", process.Options{})
	f, _ := p.Process(context.Background(), process.Object{Key: "access.log"}, strings.NewReader("GET / 200\nGET /x 404\nGET /y 200\n"))
	fmt.Println(f["status"])
	// Output: map[200:2 404:1]
}

// The exec processor runs any program with the decompressed object on its stdin.
func Example_exec() {
	p, _ := process.New("exec", process.Options{Exec: "grep -c ' 200$'"})
	f, _ := p.Process(context.Background(), process.Object{}, strings.NewReader("GET / 200\nGET /x 404\nGET /y 200\n"))
	fmt.Printf("%s matching of %d lines\n", f["output"], f["lines"])
	// Output: 2 matching of 3 lines
}
