package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/palleto/palleto"
)

// parseRun parses args as `palleto run` does and returns the config, or the error.
func parseRun(t *testing.T, args ...string) (palleto.Config, error) {
	t.Helper()
	cfg := palleto.DefaultConfig()
	level, format := "info", ""
	fs := flag.NewFlagSet("palleto run", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runFlags(fs, &cfg, &level, &format)
	fs.Bool("trace", false, "")
	fs.String("metrics-addr", "", "")
	fs.String("progress", "auto", "")
	if err := parseFlags(fs, args); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "palleto.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigPrecedenceFlagEnvFileDefault(t *testing.T) {
	file := writeConfig(t, `
queue-url: http://file/q
workers: 3
pollers: 4
wait-time: 5s
include: ["logs/*.gz", "exports/*"]
max-receives: 9
`)
	t.Setenv("PALLETO_POLLERS", "6")    // env over file
	t.Setenv("PALLETO_WAIT_TIME", "7s") // env, but the flag wins
	t.Setenv("PALLETO_CONFIG", file)    // the file itself may come from the environment
	cfg, err := parseRun(t, "--wait-time", "8s")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key       string
		got, want any
	}{
		{"queue-url (file)", cfg.SQS.QueueURL, "http://file/q"},
		{"workers (file over default)", cfg.Engine.Workers, 3},
		{"pollers (env over file)", cfg.Engine.Producer.Pollers, 6},
		{"wait-time (flag over env and file)", cfg.SQS.WaitTime, 8 * time.Second},
		{"include (file list)", strings.Join(cfg.Include, "|"), "logs/*.gz|exports/*"},
		{"max-receives (file)", cfg.MaxReceives, 9},
		{"out (default)", cfg.OutDir, "out"},
		{"visibility-timeout (default)", cfg.SQS.VisibilityTimeout, 60 * time.Second},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.key, c.got, c.want)
		}
	}
}

func TestConfigFileErrorsNameTheKey(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"workers: many\n", `workers: "many"`},
		{"queue_url: x\n", `unknown key "queue_url"`},
		{"workers: [\n", "not YAML"},
		{"sqs:\n  queue-url: x\n", `unknown key "sqs"`},
		{"out: {a: b}\n", "out: a value is expected"},
	} {
		_, err := parseRun(t, "--config", writeConfig(t, tt.yaml))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("config %q: err = %v, want %q", tt.yaml, err, tt.want)
		}
	}
	if _, err := parseRun(t, "--config", "/no/such/file.yaml"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing config file: %v", err)
	}
}

// Every validation message names the key, the value and the bound.
func TestValidationMessages(t *testing.T) {
	q := []string{"--queue-url", "http://q/1/q"}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "queue-url: required"},
		{append(q, "--out", ""), "out: required"},
		{append(q, "--workers", "0"), "workers: 0 is out of range [1, 10000]"},
		{append(q, "--workers", "10001"), "workers: 10001 is out of range [1, 10000]"},
		{append(q, "--pollers", "0"), "pollers: 0 is out of range [1, 100]"},
		{append(q, "--wait-time", "21s"), "wait-time: 21s is out of range [0s, 20s]"},
		{append(q, "--visibility-timeout", "1s"), "visibility-timeout: 1s is out of range [2s, 12h]"},
		{append(q, "--visibility-timeout", "13h"), "visibility-timeout: 13h0m0s is out of range [2s, 12h]"},
		{append(q, "--shutdown-timeout", "-1s"), "shutdown-timeout: -1s must be 0s or more"},
		{append(q, "--exit-when-idle", "-1s"), "exit-when-idle: -1s must be 0s (off) or more"},
		{append(q, "--max-receives", "-1"), "max-receives: -1 must be 0 (off) or more"},
		{append(q, "--retry-backoff", "13h"), "retry-backoff: 13h0m0s is out of range [0s, 12h]"},
		{append(q, "--include", "[a"), `include: "[a" is not a glob`},
		{append(q, "--exclude", "[b"), `exclude: "[b" is not a glob`},
		{append(q, "--max-object-bytes", "-1"), "max-object-bytes: -1 must be 0 (no limit) or more"},
		{append(q, "--max-decompressed-bytes", "-2"), "max-decompressed-bytes: -2 must be 0 (no limit) or more"},
		{append(q, "--exec-timeout", "-1s"), "exec-timeout: -1s must be 0s"},
		{[]string{"--queue-url", "not-a-url"}, `queue-url: "not-a-url" is not a queue URL`},
		{append(q, "--dlq-url", "ftp://x/1/d"), `dlq-url: "ftp://x/1/d" is not a queue URL`},
		{append(q, "--zstd-max-window", "3GiB"), "zstd-max-window: 3221225472 is out of range [1KiB, 2GiB]"},
		{append(q, "--sqs-timeout", "500ms"), "sqs-timeout: 500ms is out of range [1s, 10m]"},
		{append(q, "--s3-read-timeout", "2h"), "s3-read-timeout: 2h0m0s is out of range [100ms, 1h]"},
		{append(q, "--hard-stop-timeout", "-1s"), "hard-stop-timeout: -1s must be 0s"},
		// Configurations that cannot work (issue #24): each names the flags.
		{append(q, "--dlq-url", "http://q/1/q"), `dlq-url: "http://q/1/q" is the queue of --queue-url`},
		{append(q, "--dlq-url", "HTTP://Q:80/1/q/"), `dlq-url: "HTTP://Q:80/1/q/" is the queue of --queue-url`},
		{append(q, "--grep", "ERROR"), `grep: --grep is the pattern of --processor grep, but the processor is "lines"`},
		{append(q, "--processor", "exec", "--exec", "wc -l", "--grep", "x"), `grep: --grep is the pattern of --processor grep, but the processor is "exec"`},
		{append(q, "--exec", "wc -l"), `exec: --exec is the command of --processor exec, but the processor is "lines"`},
		{append(q, "--processor", "grep", "--grep", "x", "--exec", "wc -l"), `exec: --exec is the command of --processor exec, but the processor is "grep"`},
		{append(q, "--sqs-timeout", "0s"), "sqs-timeout: 0s is out of range [1s, 10m]"},
		{append(q, "--source", "https://sqs.us-east-1.amazonaws.com/123456789012/other"), "name two sources"},
		{[]string{"--source", "ftp://x/y"}, `no source for scheme "ftp"`},
	} {
		_, err := parseRun(t, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err = %v, want %q", tt.args, err, tt.want)
		}
	}
	if _, err := parseRun(t, q...); err != nil {
		t.Errorf("the defaults with a queue URL are invalid: %v", err)
	}
	for _, args := range [][]string{
		{"--dlq-url", "http://q/1/q-dlq"}, {"--dlq-url", "http://q:81/1/q"},
		{"--processor", "grep", "--grep", "x"}, {"--processor", "exec", "--exec", "wc -l"}, {"--sqs-timeout", "1s"},
	} {
		if _, err := parseRun(t, append(q, args...)...); err != nil {
			t.Errorf("%v: %v, want valid", args, err)
		}
	}
	if _, err := parseRun(t, "--source", "https://sqs.us-east-1.amazonaws.com/123456789012/q"); err != nil {
		t.Errorf("the defaults with --source and no --queue-url are invalid: %v", err)
	}
}

func TestEveryRunFlagIsInAHelpGroup(t *testing.T) {
	cfg := palleto.DefaultConfig()
	level, format := "", ""
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	runFlags(fs, &cfg, &level, &format)
	grouped := map[string]int{}
	for _, g := range flagGroups {
		for _, n := range g.names {
			grouped[n]++
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if grouped[f.Name] != 1 {
			t.Errorf("flag --%s is in %d help groups, want 1", f.Name, grouped[f.Name])
		}
	})
	code, _, stderr := runPalleto(t, nil, time.Minute, "run", "--help")
	for _, want := range []string{"--trace", "--metrics-addr", "--progress", "Observability:", "env PALLETO_QUEUE_URL", "--config"} {
		if code != 0 || !strings.Contains(stderr, want) {
			t.Errorf("run --help (exit %d) lacks %q", code, want)
		}
	}
}
