package main

import (
	"testing"
)

// TestWebhookFlagsFromEnv: the webhook source's settings come from flags or PALLETO_* variables
// into the options the source is opened with.
func TestWebhookFlagsFromEnv(t *testing.T) {
	cfg, err := parseRun(t, "--queue-url", "http://q/q")
	if err != nil {
		t.Fatal(err)
	}
	if o := cfg.SourceOptions; o.Spool != "palleto-spool.db" || o.SpoolMaxMessages != 1_000_000 || o.Token != "" {
		t.Errorf("defaults: %+v", o)
	}
	t.Setenv("PALLETO_SPOOL", "/var/lib/palleto/spool.db")
	t.Setenv("PALLETO_SPOOL_MAX_MESSAGES", "5000")
	t.Setenv("PALLETO_TLS_CERT", "/etc/palleto/cert.pem")
	t.Setenv("PALLETO_TLS_KEY", "/etc/palleto/key.pem")
	t.Setenv("PALLETO_WEBHOOK_TOKEN", "from-env")
	cfg, err = parseRun(t, "--queue-url", "http://q/q", "--webhook-token", "from-flag")
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.SourceOptions
	if o.Spool != "/var/lib/palleto/spool.db" || o.SpoolMaxMessages != 5000 || o.TLSCert != "/etc/palleto/cert.pem" || o.TLSKey != "/etc/palleto/key.pem" || o.Token != "from-flag" {
		t.Errorf("from the environment (the token from the flag): %+v", o)
	}
}
