package main

import (
	"flag"
	"fmt"
	"io"

	"github.com/palleto/palleto/decode"
)

// version is stamped by `make build` from git (go build -ldflags "-X main.version=..."); a
// plain go build or go install says "dev".
var version = "dev"

func cmdVersion(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("palleto version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: palleto version

Prints the version of this build (from git with make build, "dev" otherwise) and the inflate
implementation gzip is decoded with (inflate=go, or inflate=isal for a build with -tags isal).
It takes no flags.
`)
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "palleto %s inflate=%s\n", version, decode.Inflater)
	return nil
}
