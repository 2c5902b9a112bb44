#!/usr/bin/env bash
# Installs, starts and stops the servers Palleto's tests talk to, all on 127.0.0.1:
#   SQS: npm local-aws-sqs (testservers/sqs, from its committed lock file)
#   S3:  MinIO, built with `go install` once and cached outside the repo ($PALLETO_CACHE)
#   webhookbridge: forwards MinIO's bucket notifications to the SQS queue named like the bucket
#   PostgreSQL: Debian's package, a fresh cluster (initdb) per start in a temp directory, run as
#     the unprivileged `postgres` user when this runs as root (PostgreSQL refuses root)
#   NATS: Debian's nats-server with JetStream (-js), or `go install` of nats-server cached like
#     MinIO where the package is missing; MinIO publishes its notifications to it too (its NATS
#     JetStream target, arn:minio:sqs::PALLETO:nats, subject palleto.minio.events)
# Usage: scripts/testservers.sh install|start|stop|env
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${PALLETO_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/palleto}"
STATE="$ROOT/.testservers"
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c" # github.com/minio/minio, pinned
SQS_PORT="${PALLETO_TEST_SQS_PORT:-19324}"
S3_PORT="${PALLETO_TEST_S3_PORT:-19000}"
BRIDGE_PORT="${PALLETO_TEST_BRIDGE_PORT:-19400}"
PG_PORT="${PALLETO_TEST_PG_PORT:-15432}"
NATS_PORT="${PALLETO_TEST_NATS_PORT:-19422}"
NATS_VERSION="v2.11.17" # github.com/nats-io/nats-server/v2, pinned: built only where Debian's package is missing
NATS_SUBJECT="palleto.minio.events"
PG_DATA="${TMPDIR:-/tmp}/palleto-pg-$PG_PORT"
MINIO="$CACHE/bin/minio-$MINIO_VERSION"

install() {
  local missing=()
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v curl >/dev/null || missing+=(curl)
  pg_bin >/dev/null || missing+=(postgresql)
  [ -x /usr/bin/aws ] || missing+=(awscli) # the CLI Debian ships: a client of the devstack's Query protocol
  [ -f /usr/include/isa-l/igzip_lib.h ] || missing+=(libisal-dev) # for the ISA-L build (go build -tags isal)
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
  if ! nats_bin >/dev/null; then # Debian's package where there is one (bookworm has 2.9)
    echo "testservers: installing nats-server (Debian package)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; } || true
  fi
  if ! nats_bin >/dev/null; then
    echo "testservers: building nats-server $NATS_VERSION (no Debian package here; cached in $CACHE)"
    mkdir -p "$CACHE/bin" "$CACHE/build"
    GOBIN="$CACHE/build" go install "github.com/nats-io/nats-server/v2@$NATS_VERSION"
    mv "$CACHE/build/nats-server" "$CACHE/bin/nats-server-$NATS_VERSION"
  fi
  mkdir -p "$STATE"
  (cd "$ROOT" && go build -o "$STATE/webhookbridge" ./internal/webhookbridge)
}

nats_bin() { # Debian's nats-server (in /usr/sbin), one on the PATH, or the one built into the cache
  local b
  for b in "$(command -v nats-server || true)" /usr/sbin/nats-server /usr/bin/nats-server "$CACHE/bin/nats-server-$NATS_VERSION"; do
    if [ -n "$b" ] && [ -x "$b" ]; then echo "$b"; return 0; fi
  done
  return 1
}

wait_tcp() { # port name
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "testservers: $2 did not come up on 127.0.0.1:$1; its log:" >&2
  cat "$STATE/$2.log" >&2 || true
  return 1
}

pg_bin() { # the newest installed PostgreSQL server's bin directory
  local d
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  [ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

as_pg() { # run a command as the user PostgreSQL runs as: `postgres` when we are root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  local bin
  bin="$(pg_bin)"
  rm -rf "$PG_DATA"
  mkdir -p "$PG_DATA"
  [ "$(id -u)" = 0 ] && chown postgres: "$PG_DATA"
  as_pg "$bin/initdb" -D "$PG_DATA/data" -U palleto -A trust --no-sync >"$STATE/postgres-init.log" 2>&1
  as_pg "$bin/pg_ctl" -D "$PG_DATA/data" -l "$PG_DATA/postgres.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
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
  rm -rf "$STATE/minio-data" "$STATE/nats-data" "$STATE/minio-nats-queue"
  "$(nats_bin)" -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$STATE/nats-data" >"$STATE/nats.log" 2>&1 &
  echo $! >"$STATE/nats.pid"
  wait_tcp "$NATS_PORT" nats
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
    MINIO_NOTIFY_NATS_ENABLE_PALLETO=on \
    MINIO_NOTIFY_NATS_ADDRESS_PALLETO="127.0.0.1:$NATS_PORT" \
    MINIO_NOTIFY_NATS_SUBJECT_PALLETO="$NATS_SUBJECT" \
    MINIO_NOTIFY_NATS_JETSTREAM_PALLETO=on \
    MINIO_NOTIFY_NATS_QUEUE_DIR_PALLETO="$STATE/minio-nats-queue" \
    MINIO_BROWSER=off MINIO_UPDATE=off \
    "$MINIO" server "$STATE/minio-data" --address "127.0.0.1:$S3_PORT" --quiet >"$STATE/minio.log" 2>&1 &
  echo $! >"$STATE/minio.pid"
  wait_http "http://127.0.0.1:$S3_PORT/minio/health/ready" minio
  start_postgres
  cat >"$STATE/env" <<ENV
export PALLETO_TEST_SQS_ENDPOINT=http://127.0.0.1:$SQS_PORT
export PALLETO_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export PALLETO_TEST_S3_ACCESS_KEY=palleto
export PALLETO_TEST_S3_SECRET_KEY=palleto-secret
export PALLETO_TEST_MINIO_QUEUE_ARN=arn:minio:sqs::PALLETO:webhook
export PALLETO_TEST_POSTGRES_URL=postgres://palleto@127.0.0.1:$PG_PORT/postgres?sslmode=disable
export PALLETO_TEST_POSTGRES_CTL="$(pg_bin)/pg_ctl -D $PG_DATA/data"
export PALLETO_TEST_NATS_URL=nats://127.0.0.1:$NATS_PORT
export PALLETO_TEST_NATS_BIN=$(nats_bin)
export PALLETO_TEST_MINIO_NATS_ARN=arn:minio:sqs::PALLETO:nats
export PALLETO_TEST_MINIO_NATS_SUBJECT=$NATS_SUBJECT
ENV
  echo "testservers: SQS :$SQS_PORT, MinIO :$S3_PORT, bridge :$BRIDGE_PORT, PostgreSQL :$PG_PORT, NATS :$NATS_PORT (env in $STATE/env)"
}

stop() {
  if [ -d "$PG_DATA/data" ] && pg_bin >/dev/null; then
    as_pg "$(pg_bin)/pg_ctl" -D "$PG_DATA/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  for name in minio bridge sqs nats; do
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
