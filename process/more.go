package process

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"regexp"
	"time"
)

// Options configure the processors that need it.
type Options struct {
	// Grep is the regular expression (RE2 syntax) of the grep processor.
	Grep string
	// Exec is the command line of the exec processor, run by /bin/sh -c; ExecTimeout bounds
	// each run (0: DefaultExecTimeout).
	Exec        string
	ExecTimeout time.Duration
	// Store and CopyPath tell the copy processor where to write; the daemon sets them.
	Store    Store
	CopyPath func(bucket, key string) string
}

// SHA256 hashes the decompressed content.
type SHA256 struct{}

func (SHA256) Name() string { return "sha256" }

// Process returns {"sha256": hex digest, "lines": line count}.
func (SHA256) Process(ctx context.Context, o Object, r io.Reader) (Fields, error) {
	h := sha256.New()
	lines, err := CountLines(ctx, io.TeeReader(r, h))
	if err != nil {
		return nil, err
	}
	return Fields{"sha256": hex.EncodeToString(h.Sum(nil)), "lines": lines}, nil
}

// Grep counts the lines matching a regular expression.
type Grep struct{ re *regexp.Regexp }

// NewGrep compiles pattern.
func NewGrep(pattern string) (*Grep, error) {
	if pattern == "" {
		return nil, fmt.Errorf("grep: a pattern is required (--grep REGEXP)")
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("grep: %q is not a regular expression: %v", pattern, err)
	}
	return &Grep{re: re}, nil
}

func (g *Grep) Name() string { return "grep" }

// Process returns {"matches": lines matching, "lines": all lines, "pattern": the expression}.
// Lines longer than 16 MiB are matched on their first 16 MiB.
func (g *Grep) Process(ctx context.Context, o Object, r io.Reader) (Fields, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	var lines, matches int64
	var long []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			line := chunk
			if err == bufio.ErrBufferFull || long != nil {
				if len(long) < 16<<20 {
					long = append(long, chunk...)
				}
				if err == bufio.ErrBufferFull {
					continue
				}
				line = long
			}
			lines++
			if g.re.Match(bytes.TrimSuffix(line, []byte{'\n'})) {
				matches++
			}
			long = nil
		}
		if err == io.EOF {
			break
		}
		if err != nil && err != bufio.ErrBufferFull {
			return nil, err
		}
		if lines%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	return Fields{"matches": matches, "lines": lines, "pattern": g.re.String()}, nil
}
