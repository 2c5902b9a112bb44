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
go test -race -count=1 -timeout 20m -parallel 4 ./...
# The ISA-L build (cgo, Debian's libisal-dev): the decoder conformance tests once more, and the
# daemon's own tests on it.
go test -race -count=1 -tags isal ./decode .
go build -tags isal -o .testservers/palleto-isal ./cmd/palleto && .testservers/palleto-isal version | grep -q 'inflate=isal'
# A short run of each fuzz target, so that they stay alive.
go test -run '^$' -fuzz '^FuzzPath$' -fuzztime 10s ./sink
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 10s ./notify
go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 10s ./decode
go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 10s -tags isal ./decode
