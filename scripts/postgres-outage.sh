#!/usr/bin/env bash
# Stop the tests' PostgreSQL cluster for SECONDS, then start it again (data
# kept): for tests that check what a database outage does to the stack.
#
#   bash scripts/postgres-outage.sh 30
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
# shellcheck source=scripts/infra.sh
source scripts/infra.sh
seconds=${1:?usage: postgres-outage.sh SECONDS}
t0=$(_bourse_now_ms)
stop_postgres
sleep "$seconds"
ensure_postgres
_bourse_log "postgres-outage: back after $(_bourse_elapsed "$t0")"
