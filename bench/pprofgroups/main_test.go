package main

import (
	"strings"
	"testing"
	"time"
)

// TestParseChargesTheInnermostGroup: a sample goes to the innermost frame of a known kind (the
// signer inside S3's middleware is signing; a syscall under SQLite is SQLite's), and a stack of
// the runtime alone is the runtime's.
func TestParseChargesTheInnermostGroup(t *testing.T) {
	traces := `File: bench
Type: cpu
Duration: 3.81s, Total samples = 1.56s (40.91%)
-----------+-------------------------------------------------------
      20ms   crypto/internal/fips140/sha256.block
             github.com/aws/aws-sdk-go-v2/aws/signer/v4.(*httpSigner).Build
             github.com/aws/aws-sdk-go-v2/service/s3.(*Client).GetObject
             github.com/palleto/palleto/fetch.(*Fetcher).Open
-----------+-------------------------------------------------------
      30ms   internal/runtime/syscall/linux.Syscall6
             modernc.org/libc.Xfsync
             github.com/palleto/palleto/store/sqlstore.(*Store).WriteGroupReport
-----------+-------------------------------------------------------
      10ms   runtime.futex
             runtime.findRunnable
             runtime.schedule
-----------+-------------------------------------------------------
`
	got, err := parse(strings.NewReader(traces))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]time.Duration{"SDK: SigV4 signing": 20 * time.Millisecond,
		"SQLite (modernc) and database/sql": 30 * time.Millisecond, "runtime: scheduler, netpoll, other": 10 * time.Millisecond} {
		if got[name] != want {
			t.Errorf("%s: %v, want %v (all: %v)", name, got[name], want, got)
		}
	}
}
