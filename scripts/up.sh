#!/usr/bin/env bash
# Starts the whole Bourse stack on the embedded defaults: every service in one
# process (`bourse up`), each with its SQLite file under ./data/, against the
# local RabbitMQ (installed and started here when missing), with a local SMTP
# server that keeps every e-mail in ./data/mail/ (aiosmtpd, installed here).
#
#   bash scripts/up.sh                  # until Ctrl-C
#   bash scripts/up.sh --data-dir /tmp/bourse-data
#
# Extra arguments go to `bourse up` (see `bourse up --help`).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

# shellcheck source=scripts/infra.sh
source scripts/infra.sh
ensure_build_deps
ensure_rabbitmq
ensure_smtp
ensure_anvil

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/bourse-target}"
cargo build --locked -p bourse-cli --bin bourse
exec "$CARGO_TARGET_DIR/debug/bourse" up --demo "$@"
