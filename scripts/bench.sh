#!/usr/bin/env bash
# make bench: start the test servers, run the benchmark harness at full size, write
# docs/PERFORMANCE.md, stop the servers. Extra arguments go to the harness (e.g. -runs 5).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/testservers.sh install
scripts/testservers.sh start
trap 'scripts/testservers.sh stop' EXIT
set -a
. .testservers/env
set +a
go run ./bench -out docs/PERFORMANCE.md "$@"
