package testenv

import (
	"os"
	"testing"
)

// Chromium returns the path of the headless browser scripts/testservers.sh installs (Debian's
// chromium, PALLETO_TEST_CHROMIUM), or skips (fails, when servers are required) without it.
func Chromium(t testing.TB) string {
	t.Helper()
	path := os.Getenv("PALLETO_TEST_CHROMIUM")
	if path != "" {
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	if os.Getenv("PALLETO_REQUIRE_SERVERS") == "1" {
		t.Fatalf("Chromium required but PALLETO_TEST_CHROMIUM (%q) names no browser: run `make test` (scripts/testservers.sh installs Debian's chromium)", path)
	}
	t.Skip("no Chromium: run `make test` (or scripts/testservers.sh install && start, and source .testservers/env)")
	return ""
}
