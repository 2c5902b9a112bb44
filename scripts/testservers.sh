#!/usr/bin/env bash
# Installs, starts and stops the servers Palleto's tests talk to, all on 127.0.0.1:
#   SQS: npm local-aws-sqs (testservers/sqs, from its committed lock file)
#   S3:  MinIO, built with `go install` once and cached outside the repo ($PALLETO_CACHE)
#   webhookbridge: forwards MinIO's bucket notifications to the SQS queue named like the bucket
#     (target PALLETO); a second webhook target, PALLETOHOOK, posts to Palleto's own webhook source
#     on $PALLETO_TEST_WEBHOOK_PORT, queueing in a directory while nothing listens there
#   RabbitMQ: Debian's rabbitmq-server, a fresh node per start in a temp directory, run as its
#     own `rabbitmq` user when this runs as root; MinIO's AMQP target publishes to it
#   Kafka: franz-go's kfake (a Kafka-protocol cluster; no Kafka broker is packaged for Debian) as
#     a process of its own, internal/kafkaserver; MinIO's Kafka target publishes to it
#   PostgreSQL: Debian's package, a fresh cluster (initdb) per start in a temp directory, run as
#     the unprivileged `postgres` user when this runs as root (PostgreSQL refuses root)
#   Chromium: Debian's package, for the status page's browser test; installed here and started
#     headless by the test itself (chromedp), with a fresh profile each time
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
WEBHOOK_PORT="${PALLETO_TEST_WEBHOOK_PORT:-19480}" # Palleto's own webhook source, in the tests that run it
NATS_PORT="${PALLETO_TEST_NATS_PORT:-19422}"
NATS_VERSION="v2.11.17" # github.com/nats-io/nats-server/v2, pinned: built only where Debian's package is missing
NATS_SUBJECT="palleto.minio.events"
PG_DATA="${TMPDIR:-/tmp}/palleto-pg-$PG_PORT"
AMQP_PORT="${PALLETO_TEST_AMQP_PORT:-19672}"
KAFKA_PORT="${PALLETO_TEST_KAFKA_PORT:-19092}"
RABBIT_DIR="${TMPDIR:-/tmp}/palleto-rabbit-$AMQP_PORT"
RABBIT_NODE="palleto$AMQP_PORT@localhost"
MINIO="$CACHE/bin/minio-$MINIO_VERSION"

install() {
  local missing=()
  command -v node >/dev/null || missing+=(nodejs)
  command -v npm >/dev/null || missing+=(npm)
  command -v curl >/dev/null || missing+=(curl)
  pg_bin >/dev/null || missing+=(postgresql)
  [ -x /usr/bin/aws ] || missing+=(awscli) # the CLI Debian ships: a client of the devstack's Query protocol
  [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
  [ -f /usr/include/isa-l/igzip_lib.h ] || missing+=(libisal-dev) # for the ISA-L build (go build -tags isal)
  command -v chromium >/dev/null || missing+=(chromium) # the status page's browser test
  if [ ${#missing[@]} -gt 0 ]; then
    echo "testservers: installing ${missing[*]} (Debian packages)"
    # policy-rc.d keeps the packages' own services (rabbitmq-server, postgresql) from starting:
    # the tests start their own on 127.0.0.1.
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq "${missing[@]}" >/dev/null
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
  (cd "$ROOT" && go build -o "$STATE/kafkaserver" ./internal/kafkaserver)
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

as_rabbit() { # run a command as the user RabbitMQ runs as: `rabbitmq` when we are root
  local env=(HOME="$([ "$(id -u)" = 0 ] && echo /var/lib/rabbitmq || echo "$HOME")" RABBITMQ_NODENAME="$RABBIT_NODE"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT="$((AMQP_PORT + 1))"
    ERL_EPMD_PORT="$((AMQP_PORT + 2))" RABBITMQ_MNESIA_BASE="$RABBIT_DIR/mnesia" RABBITMQ_LOG_BASE="$RABBIT_DIR/log"
    RABBITMQ_ENABLED_PLUGINS_FILE="$RABBIT_DIR/enabled_plugins" RABBITMQ_CONFIG_FILE="$RABBIT_DIR/rabbitmq"
    RABBITMQ_ADVANCED_CONFIG_FILE="$RABBIT_DIR/advanced.config")
  if [ "$(id -u)" = 0 ]; then runuser -u rabbitmq -- env "${env[@]}" "$@"; else env "${env[@]}" "$@"; fi
}

start_rabbitmq() {
  rm -rf "$RABBIT_DIR"
  mkdir -p "$RABBIT_DIR"
  : >"$RABBIT_DIR/enabled_plugins"
  [ "$(id -u)" = 0 ] && chown -R rabbitmq: "$RABBIT_DIR"
  (cd "$RABBIT_DIR" && as_rabbit /usr/lib/rabbitmq/bin/rabbitmq-server) >"$STATE/rabbitmq.log" 2>&1 &
  echo $! >"$STATE/rabbitmq.pid"
  # The node is up once it answers: `rabbitmqctl await_startup` waits for the boot to finish.
  cat >"$STATE/rabbitmqctl" <<CTL
#!/usr/bin/env bash
# rabbitmqctl for the test node (stop_app / start_app stop and start the broker, keeping the node)
$(declare -f as_rabbit)
RABBIT_NODE="$RABBIT_NODE" AMQP_PORT="$AMQP_PORT" RABBIT_DIR="$RABBIT_DIR"
as_rabbit /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBIT_NODE" "\$@"
CTL
  chmod +x "$STATE/rabbitmqctl"
  for _ in $(seq 1 120); do
    if "$STATE/rabbitmqctl" -q await_startup --timeout 1 >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "testservers: rabbitmq did not come up on 127.0.0.1:$AMQP_PORT; its log:" >&2
  cat "$STATE/rabbitmq.log" >&2 || true
  return 1
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
  rm -rf "$STATE/minio-data" "$STATE/minio-webhook-queue" "$STATE/nats-data" "$STATE/minio-nats-queue"
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
  start_rabbitmq
  rm -rf "$STATE/kafka-data"
  "$STATE/kafkaserver" -listen "127.0.0.1:$KAFKA_PORT" -data "$STATE/kafka-data" >"$STATE/kafka.log" 2>&1 &
  echo $! >"$STATE/kafka.pid"
  wait_tcp "$KAFKA_PORT" kafka
  MINIO_ROOT_USER=palleto MINIO_ROOT_PASSWORD=palleto-secret \
    MINIO_NOTIFY_WEBHOOK_ENABLE_PALLETO=on \
    MINIO_NOTIFY_WEBHOOK_ENDPOINT_PALLETO="http://127.0.0.1:$BRIDGE_PORT/" \
    MINIO_NOTIFY_WEBHOOK_ENABLE_PALLETOHOOK=on \
    MINIO_NOTIFY_WEBHOOK_ENDPOINT_PALLETOHOOK="http://127.0.0.1:$WEBHOOK_PORT/minio" \
    MINIO_NOTIFY_WEBHOOK_QUEUE_DIR_PALLETOHOOK="$STATE/minio-webhook-queue" \
    MINIO_NOTIFY_AMQP_ENABLE_PALLETO=on MINIO_NOTIFY_AMQP_URL_PALLETO="amqp://guest:guest@127.0.0.1:$AMQP_PORT" \
    MINIO_NOTIFY_AMQP_EXCHANGE_PALLETO=palleto-minio MINIO_NOTIFY_AMQP_EXCHANGE_TYPE_PALLETO=direct \
    MINIO_NOTIFY_AMQP_ROUTING_KEY_PALLETO=minio MINIO_NOTIFY_AMQP_DURABLE_PALLETO=on \
    MINIO_NOTIFY_AMQP_DELIVERY_MODE_PALLETO=2 MINIO_NOTIFY_AMQP_QUEUE_DIR_PALLETO="$STATE/minio-amqp-queue" \
    MINIO_NOTIFY_KAFKA_ENABLE_PALLETO=on MINIO_NOTIFY_KAFKA_BROKERS_PALLETO="127.0.0.1:$KAFKA_PORT" \
    MINIO_NOTIFY_KAFKA_TOPIC_PALLETO=palleto-minio MINIO_NOTIFY_KAFKA_QUEUE_DIR_PALLETO="$STATE/minio-kafka-queue" \
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
export PALLETO_TEST_WEBHOOK_PORT=$WEBHOOK_PORT
export PALLETO_TEST_MINIO_WEBHOOK_ARN=arn:minio:sqs::PALLETOHOOK:webhook
export PALLETO_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/
export PALLETO_TEST_MINIO_AMQP_ARN=arn:minio:sqs::PALLETO:amqp
export PALLETO_TEST_MINIO_AMQP_EXCHANGE=palleto-minio
export PALLETO_TEST_MINIO_AMQP_ROUTING_KEY=minio
export PALLETO_TEST_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export PALLETO_TEST_MINIO_KAFKA_ARN=arn:minio:sqs::PALLETO:kafka
export PALLETO_TEST_MINIO_KAFKA_TOPIC=palleto-minio
export PALLETO_TEST_RABBITMQ_CTL="$STATE/rabbitmqctl"
export PALLETO_TEST_POSTGRES_URL=postgres://palleto@127.0.0.1:$PG_PORT/postgres?sslmode=disable
export PALLETO_TEST_POSTGRES_CTL="$(pg_bin)/pg_ctl -D $PG_DATA/data"
export PALLETO_TEST_NATS_URL=nats://127.0.0.1:$NATS_PORT
export PALLETO_TEST_NATS_BIN=$(nats_bin)
export PALLETO_TEST_MINIO_NATS_ARN=arn:minio:sqs::PALLETO:nats
export PALLETO_TEST_MINIO_NATS_SUBJECT=$NATS_SUBJECT
ENV
  if command -v chromium >/dev/null; then
    echo "export PALLETO_TEST_CHROMIUM=$(command -v chromium)" >>"$STATE/env"
  fi
  echo "testservers: SQS :$SQS_PORT, MinIO :$S3_PORT, bridge :$BRIDGE_PORT, RabbitMQ :$AMQP_PORT, Kafka (kfake) :$KAFKA_PORT, PostgreSQL :$PG_PORT, NATS :$NATS_PORT (env in $STATE/env)"
}

stop() {
  if [ -d "$PG_DATA/data" ] && pg_bin >/dev/null; then
    as_pg "$(pg_bin)/pg_ctl" -D "$PG_DATA/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -x "$STATE/rabbitmqctl" ]; then
    "$STATE/rabbitmqctl" -q stop >/dev/null 2>&1 || true
    as_rabbit epmd -port "$((AMQP_PORT + 2))" -kill >/dev/null 2>&1 || true
  fi
  for name in minio bridge sqs rabbitmq kafka nats; do
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
