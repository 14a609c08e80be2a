#!/usr/bin/env bash
# `bourse bench` end to end on this machine: builds the release `bourse`,
# starts the whole stack (`bourse up`, every service in one process) on fresh
# databases, SQLite files or PostgreSQL, with the gateway's per-client limits
# raised for one load process, runs the bench against it through the gateway
# (the six-hop lapin chain on the same broker, the stack's memory watched),
# prints the report and stops the stack. Exits 1 if the bench found a
# violation.
#
#   bash scripts/bench.sh sqlite                       # as fast as possible
#   bash scripts/bench.sh postgres --rate 200          # a fixed offered rate
#   bash scripts/bench.sh sqlite --orders 100000 --pairs 10 --idle 60 --json
#   BOURSE_INSTANCES=2 bash scripts/bench.sh postgres   # two instances of each service
#
# Extra arguments go to `bourse bench` (see `bourse bench --help`).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

backend="${1:-sqlite}"
shift || true
case "$backend" in sqlite | postgres) ;; *) echo "usage: bash scripts/bench.sh sqlite|postgres [bourse bench args]" >&2; exit 2 ;; esac

# shellcheck source=scripts/infra.sh
source scripts/infra.sh
ensure_build_deps
ensure_rabbitmq
ensure_smtp
ensure_anvil
[[ "$backend" == postgres ]] && ensure_postgres
eval "$(bash scripts/infra.sh env 2>/dev/null)"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/bourse-target}"
cargo build --locked --release -p bourse-cli --bin bourse
bourse="$CARGO_TARGET_DIR/release/bourse"

data="$(mktemp -d /tmp/bourse-bench.XXXXXX)"
# One load process is one client: its limits are the stack's to find.
export GATEWAY__SETTINGS__RATE_LIMIT_PER_SECOND=1000000 GATEWAY__SETTINGS__RATE_LIMIT_BURST=1000000
export GATEWAY__SETTINGS__AUTH_RATE_LIMIT_PER_MINUTE=100000 GATEWAY__SETTINGS__AUTH_RATE_LIMIT_BURST=100000
export GATEWAY__SETTINGS__WS__MAX_CONNECTIONS_PER_CLIENT=10000
if [[ "$backend" == postgres ]]; then
    run="bench_$(date +%s)"
    for service in gateway order payment matching chain notify; do
        psql -X -q "$BOURSE_TEST_PG_URL" -c "CREATE DATABASE ${run}_${service}"
        url="${BOURSE_TEST_PG_URL%/*}/${run}_${service}"
        export "${service^^}__DATABASE__URL=$url"
    done
fi

# A vhost of its own: durable queues left by an earlier run (a backlog of
# mails, the event log) would be this run's work too.
vhost="bench-$(date +%s)"
vhosts="http://${BOURSE_AMQP_HOST}:${BOURSE_AMQP_MGMT_PORT}/api/vhosts"
curl -fsS -u guest:guest -X PUT -H 'content-type: application/json' -d '{}' "$vhosts/$vhost" >/dev/null
export BOURSE_AMQP_URL="${BOURSE_TEST_AMQP_URL%/*}/$vhost"

# BOURSE_INSTANCES=2: two instances of each service behind the gateway (the scale-out run).
"$bourse" up --data-dir "$data" --instances "${BOURSE_INSTANCES:-1}" >"$data/up.log" 2>&1 &
stack=$!
cleanup() {
    kill "$stack" 2>/dev/null
    wait "$stack" 2>/dev/null
    curl -fsS -u guest:guest -X DELETE "$vhosts/$vhost" >/dev/null
    if [[ "$backend" == postgres ]]; then
        for service in gateway order payment matching chain notify; do
            psql -X -q "$BOURSE_TEST_PG_URL" -c "DROP DATABASE IF EXISTS ${run}_${service} WITH (FORCE)"
        done
    fi
    echo "stack log: $data/up.log" >&2
}
trap cleanup EXIT
for _ in $(seq 1 120); do
    curl -sf http://127.0.0.1:8080/health/ready >/dev/null && break
    kill -0 "$stack" 2>/dev/null || { tail -20 "$data/up.log" >&2; exit 1; }
    sleep 1
done
"$bourse" bench --amqp-url "$BOURSE_AMQP_URL" --watch-pid "$stack" --label "$backend" "$@"
