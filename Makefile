# Palleto. `make demo` shows the whole job with no AWS account; `make test` runs every test.
.PHONY: demo test bench build servers-start servers-stop

# The version from git (a tag, or the commit, "-dirty" with uncommitted changes); "dev" outside git.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

build:
	go build -ldflags "-X main.version=$(VERSION)" -o palleto ./cmd/palleto

demo:
	go run ./cmd/palleto demo

# Installs what is missing (local-aws-sqs from the lock file, MinIO built once and cached),
# starts the test servers on 127.0.0.1, runs every test with -race, and stops the servers.
test:
	scripts/test.sh

# The benchmark harness at full size (about 10 minutes); rewrites docs/PERFORMANCE.md.
bench:
	scripts/bench.sh

servers-start:
	scripts/testservers.sh install && scripts/testservers.sh start

servers-stop:
	scripts/testservers.sh stop
