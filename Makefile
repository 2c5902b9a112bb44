# Palleto. `make demo` shows the whole job with no AWS account; `make test` runs every test.
.PHONY: demo test bench build servers-start servers-stop

build:
	go build -o palleto ./cmd/palleto

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
