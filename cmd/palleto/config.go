package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// flagGroups orders and explains `palleto run --help`. Every flag of run is in exactly one
// group (TestEveryRunFlagIsInAHelpGroup).
var flagGroups = []struct {
	title string
	names []string
}{
	{"Queue and output", []string{"source", "queue-url", "out", "commit-batch-size", "commit-batch-timeout", "config"}},
	{"Concurrency (pollers and workers scale apart: each worker asks for one message at a time)", []string{"workers", "pollers", "prefetch", "wait-time", "visibility-timeout"}},
	{"Big objects (ranged GETs within one memory budget)", []string{"part-size", "parts-in-flight", "read-ahead"}},
	{"Processing", []string{"processor", "grep", "exec", "exec-timeout"}},
	{"Filters and limits (a refused or oversized object is recorded as a permanent failure)", []string{"bucket", "include", "exclude", "max-object-bytes", "max-decompressed-bytes", "zstd-max-window"}},
	{"Failures (an object's own: recorded, retried with backoff, permanent after --max-receives; the world's (S3, SQS, disk down): never counted, never deleted, receiving pauses until it is back)", []string{"max-receives", "retry-backoff", "dlq-url"}},
	{"Deadlines (every remote call has one; the defaults rarely need a change)", []string{"sqs-timeout", "s3-connect-timeout", "s3-first-byte-timeout", "s3-read-timeout"}},
	{"Webhook source (--source http://127.0.0.1:PORT/PATH: MinIO and Ceph POST their events, spooled to disk before the 200)", []string{"spool", "spool-max-messages", "tls-cert", "tls-key", "webhook-token"}},
	{"Lifecycle", []string{"exit-when-idle", "shutdown-timeout", "hard-stop-timeout"}},
	{"Observability", []string{"metrics-addr", "progress", "log-level", "log-format", "trace"}},
}

func printGroupedDefaults(fs *flag.FlagSet, w io.Writer) {
	for _, g := range flagGroups {
		fmt.Fprintf(w, "\n%s:\n", g.title)
		for _, name := range g.names {
			if f := fs.Lookup(name); f != nil {
				printFlag(w, f)
			}
		}
	}
}

// printFlags prints every flag of fs under "Flags:", in the style of run's help: every command's
// help shows its flags the same way, each with its default and environment variable.
func printFlags(fs *flag.FlagSet, w io.Writer) {
	fmt.Fprintf(w, "\nFlags:\n")
	fs.VisitAll(func(f *flag.Flag) { printFlag(w, f) })
}

// printFlag prints one flag: --name TYPE, its usage and default, and its PALLETO_ variable.
func printFlag(w io.Writer, f *flag.Flag) {
	typ, usage := flag.UnquoteUsage(f)
	if typ == "" {
		fmt.Fprintf(w, "  --%s\n", f.Name)
	} else {
		fmt.Fprintf(w, "  --%s %s\n", f.Name, typ)
	}
	fmt.Fprintf(w, "        %s", strings.ReplaceAll(usage, "\n", "\n        "))
	if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
		fmt.Fprintf(w, " (default %s)", f.DefValue)
	}
	fmt.Fprintf(w, "\n        env PALLETO_%s\n", envName(f.Name))
}

func envName(flagName string) string {
	return strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags fills fs from, in order of precedence: the command line, PALLETO_* environment
// variables, the YAML file named by --config (or PALLETO_CONFIG), and the defaults already in fs.
func parseFlags(fs *flag.FlagSet, args []string) error {
	// A mistake gets its error and one line on where help is, not the whole help, which would
	// scroll the error away; --help gets the whole help.
	help := slices.ContainsFunc(args, func(a string) bool { return a == "-h" || a == "-help" || a == "--help" || a == "--h" })
	out := fs.Output()
	if !help {
		fs.SetOutput(io.Discard)
	}
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usageError{err}
		}
		return usageError{fmt.Errorf("%v\nRun '%s --help' for the flags, their defaults and environment variables.", err, fs.Name())}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	fs.VisitAll(func(f *flag.Flag) {
		env := "PALLETO_" + envName(f.Name)
		if v, ok := os.LookupEnv(env); ok && !set[f.Name] && err == nil {
			if e := f.Value.Set(v); e != nil {
				err = usageError{fmt.Errorf("%s=%q: %v", env, v, e)}
			}
			set[f.Name] = true
		}
	})
	if err != nil {
		return err
	}
	if c := fs.Lookup("config"); c != nil && c.Value.String() != "" {
		return applyConfigFile(fs, c.Value.String(), set)
	}
	return nil
}

// applyConfigFile sets the flags not in set from a YAML file whose keys are the flag names:
//
//	queue-url: https://sqs.eu-west-1.amazonaws.com/123456789012/uploads
//	workers: 16
//	include: ["logs/*.gz", "exports/*"]
func applyConfigFile(fs *flag.FlagSet, path string, set map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return usageError{fmt.Errorf("config: %v", err)}
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return usageError{fmt.Errorf("config %s: not YAML: %v", path, err)}
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			return usageError{fmt.Errorf("config %s: unknown key %q (the keys are run's flag names, e.g. queue-url, workers)", path, key)}
		}
		if set[key] {
			continue
		}
		var value string
		switch v := doc[key].(type) {
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			value = strings.Join(parts, ",")
		case map[string]any:
			return usageError{fmt.Errorf("config %s: %s: a value is expected, not a mapping", path, key)}
		case nil:
			continue
		default:
			value = fmt.Sprint(v)
		}
		if err := f.Value.Set(value); err != nil {
			return usageError{fmt.Errorf("config %s: %s: %q: %v", path, key, value, err)}
		}
	}
	return nil
}
