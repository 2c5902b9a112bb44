#!/usr/bin/env bash
# Installs, starts and stops the servers Palleto's tests talk to, all on 127.0.0.1:
#   SQS: npm local-aws-sqs (testservers/sqs, from its committed lock file)
#   S3:  MinIO, built with `go install` once and cached outside the repo ($PALLETO_CACHE)
#   webhookbridge: forwards MinIO's bucket notifications to the SQS queue named like the bucket
# Usage: scripts/testservers.sh install|start|stop|env
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${PALLETO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/palleto}"
STATE="$ROOT/.testservers"
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c" # github.com/minio/minio, pinned
SQS_PORT="${PALLETO_TEST_SQS_PORT:-19324}"
S3_PORT="${PALLETO_TEST_S3_PORT:-19000}"
BRIDGE_PORT="${PALLETO_TEST_BRIDGE_PORT:-19400}"
MINIO="$CACHE/bin/minio-$MINIO_VERSION"

install() {
  local missing=()
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "testservers: installing ${missing[*]} (Debian packages)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ! -d "$ROOT/testservers/sqs/node_modules/local-aws-sqs" ]; then
    (cd "$ROOT/testservers/sqs" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  if [ ! -x "$MINIO" ]; then
    echo "testservers: building MinIO $MINIO_VERSION (about 7 minutes on 2 cores; cached in $CACHE)"
    mkdir -p "$CACHE/bin" "$CACHE/build"
    GOBIN="$CACHE/build" go install "github.com/minio/minio@$MINIO_VERSION"
    mv "$CACHE/build/minio" "$MINIO"
  fi
  mkdir -p "$STATE"
  (cd "$ROOT" && go build -o "$STATE/webhookbridge" ./internal/webhookbridge)
}

wait_http() { # url name
  for _ in $(seq 1 300); do
    if curl -s -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  echo "testservers: $2 did not come up at $1; its log:" >&2
  cat "$STATE/$2.log" >&2 || true
  return 1
}

start() {
  stop >/dev/null 2>&1 || true
  mkdir -p "$STATE"
  rm -rf "$STATE/minio-data"
  (cd "$ROOT/testservers/sqs" && PORT="$SQS_PORT" exec node launch.mjs) >"$STATE/sqs.log" 2>&1 &
  echo $! >"$STATE/sqs.pid"
  wait_http "http://127.0.0.1:$SQS_PORT/" sqs
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test "$STATE/webhookbridge" -listen "127.0.0.1:$BRIDGE_PORT" \
    -sqs-endpoint "http://127.0.0.1:$SQS_PORT" >"$STATE/bridge.log" 2>&1 &
  echo $! >"$STATE/bridge.pid"
  wait_http "http://127.0.0.1:$BRIDGE_PORT/" bridge
  MINIO_ROOT_USER=palleto MINIO_ROOT_PASSWORD=palleto-secret \
    MINIO_NOTIFY_WEBHOOK_ENABLE_PALLETO=on \
    MINIO_NOTIFY_WEBHOOK_ENDPOINT_PALLETO="http://127.0.0.1:$BRIDGE_PORT/" \
    MINIO_BROWSER=off MINIO_UPDATE=off \
    "$MINIO" server "$STATE/minio-data" --address "127.0.0.1:$S3_PORT" --quiet >"$STATE/minio.log" 2>&1 &
  echo $! >"$STATE/minio.pid"
  wait_http "http://127.0.0.1:$S3_PORT/minio/health/ready" minio
  cat >"$STATE/env" <<ENV
export PALLETO_TEST_SQS_ENDPOINT=http://127.0.0.1:$SQS_PORT
export PALLETO_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export PALLETO_TEST_S3_ACCESS_KEY=palleto
export PALLETO_TEST_S3_SECRET_KEY=palleto-secret
export PALLETO_TEST_MINIO_QUEUE_ARN=arn:minio:sqs::PALLETO:webhook
ENV
  echo "testservers: SQS :$SQS_PORT, MinIO :$S3_PORT, bridge :$BRIDGE_PORT (env in $STATE/env)"
}

stop() {
  for name in minio bridge sqs; do
    if [ -f "$STATE/$name.pid" ]; then
      kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true
      rm -f "$STATE/$name.pid"
    fi
  done
  rm -f "$STATE/env"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  env) cat "$STATE/env" ;;
  *) echo "usage: $0 install|start|stop|env" >&2; exit 2 ;;
esac
