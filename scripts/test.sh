#!/usr/bin/env bash
# The whole test suite against real servers on 127.0.0.1: what `make test` and .ci/run run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/testservers.sh install
scripts/testservers.sh start
trap 'scripts/testservers.sh stop' EXIT
set -a; . .testservers/env; set +a
export PALLETO_REQUIRE_SERVERS=1
go vet ./...
go test -race -count=1 -timeout 30m -parallel 4 ./...
# The ISA-L build (cgo, Debian's libisal-dev): the decoder conformance tests once more, and the
# daemon's own tests on it.
go test -race -count=1 -tags isal ./decode .
go build -tags isal -o .testservers/palleto-isal ./cmd/palleto && .testservers/palleto-isal version | grep -q 'inflate=isal'
# A short run of each fuzz target, so that they stay alive.
# Go 1.26's fuzz coordinator can fail a run that found nothing with a bare "context deadline
# exceeded" as -fuzztime ends (golang/go#75804, fixed in Go 1.27): such a run, with no failing
# input written, is run once more. A failing input always fails.
fuzz() {
  local out
  out=$(mktemp)
  if go test -run '^$' -fuzztime 10s "$@" 2>&1 | tee "$out"; then rm -f "$out"; return 0; fi
  if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written to' "$out"; then
    rm -f "$out"
    echo "fuzz: the Go fuzz coordinator's deadline race (golang/go#75804), no failing input: running $* once more"
    go test -run '^$' -fuzztime 10s "$@"
    return
  fi
  rm -f "$out"
  return 1
}
fuzz -fuzz '^FuzzPath$' ./store/dir
fuzz -fuzz '^FuzzParse$' ./notify
fuzz -fuzz '^FuzzDecode$' ./decode
fuzz -fuzz '^FuzzDecode$' -tags isal ./decode
