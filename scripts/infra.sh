#!/usr/bin/env bash
# Local infrastructure for Bourse: RabbitMQ, a throwaway PostgreSQL cluster,
# Python's aiosmtpd (the local SMTP server) and the system packages the Rust
# build links against.
#
# Two ways to use it:
#
#   source scripts/infra.sh          # then call the functions below
#   ensure_build_deps; ensure_rabbitmq; ensure_postgres; ensure_smtp; ensure_anvil; ensure_test_tools
#
#   scripts/infra.sh [all|ensure_build_deps|ensure_rabbitmq|ensure_postgres|ensure_smtp|ensure_anvil|ensure_test_tools|env|stop]...
#   eval "$(scripts/infra.sh env)"   # exports BOURSE_TEST_* into your shell
#
# Every ensure_* function is idempotent: it installs (apt) only what is missing,
# starts only what is not already running, and is fast when all is in place.
# Each one does its work in a child `bash` running this file under
# `set -euo pipefail` (a subshell would lose errexit when the caller writes
# `ensure_x || ...`), so sourcing this file does not change the options of the
# calling shell; a failure makes the function return non-zero.
#
# Settings (environment):
#   BOURSE_PG_DIR   throwaway PostgreSQL folder   (default /var/tmp/bourse-pg)
#   BOURSE_PG_PORT  its TCP port on 127.0.0.1      (default 55432)
#
# Exported after the ensure_* functions succeed:
#   BOURSE_TEST_PG_URL         postgres://postgres@127.0.0.1:55432/postgres
#   BOURSE_TEST_AMQP_URL       amqp://guest:guest@127.0.0.1:5672/%2f
#   BOURSE_TEST_AMQP_MGMT_URL  http://guest:guest@127.0.0.1:15672

# Only take strict mode when executed; a sourcing shell keeps its own options.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
fi

: "${BOURSE_PG_DIR:=/var/tmp/bourse-pg}"
: "${BOURSE_PG_PORT:=55432}"
BOURSE_AMQP_HOST=127.0.0.1
BOURSE_AMQP_PORT=5672
BOURSE_AMQP_MGMT_PORT=15672

_BOURSE_INFRA_SELF="$(readlink -f "${BASH_SOURCE[0]}")"

# `apt-get update` runs at most once per run of the top-level script; the
# ensure_* work happens in child processes, so the "already updated" mark is a
# file whose name is fixed once, in the shell that sourced/executed this file.
if [[ -z "${_BOURSE_APT_STAMP:-}" ]]; then
    _BOURSE_APT_STAMP="${TMPDIR:-/tmp}/bourse-infra-apt-updated.$$.${RANDOM}${RANDOM}"
fi
export _BOURSE_APT_STAMP BOURSE_PG_DIR BOURSE_PG_PORT

# ---------------------------------------------------------------- helpers ----

_bourse_log() { printf '==> %s\n' "$*"; }
_bourse_err() { printf '==> ERROR: %s\n' "$*" >&2; }

_bourse_now_ms() { date +%s%3N; }

# _bourse_strict FUNC: run FUNC from this file in a fresh strict-mode bash.
_bourse_strict() {
    bash "$_BOURSE_INFRA_SELF" __impl "$1"
}

# _bourse_elapsed START_MS -> "1.234s"
_bourse_elapsed() {
    local ms=$(($(_bourse_now_ms) - $1))
    printf '%d.%03ds' $((ms / 1000)) $((ms % 1000))
}

# _bourse_port_open HOST PORT: true if something accepts TCP connections.
_bourse_port_open() {
    # shellcheck disable=SC2016 # $1/$2 expand in the child bash, on purpose
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

_bourse_as_root_check() {
    if [[ "$(id -u)" -ne 0 ]]; then
        _bourse_err "must run as root to install packages / start services (uid $(id -u))"
        return 1
    fi
}

# Wait until no other apt-get/dpkg is running (e.g. an install started by hand).
_bourse_wait_for_apt() {
    local waited=0
    while pgrep -x apt-get >/dev/null || pgrep -x dpkg >/dev/null || pgrep -x apt >/dev/null; do
        if ((waited == 0)); then
            _bourse_log "waiting for another apt-get/dpkg to finish"
        fi
        if ((waited >= 900)); then
            _bourse_err "another apt-get/dpkg still running after ${waited}s"
            return 1
        fi
        sleep 2
        waited=$((waited + 2))
    done
}

# _bourse_apt_install PKG...: install packages, running `apt-get update` first
# (once per run). Checks each step itself: callers use it after `||`, where
# errexit does not apply.
_bourse_apt_install() {
    _bourse_as_root_check || return 1
    _bourse_wait_for_apt || return 1
    local apt_opts=(-o DPkg::Lock::Timeout=600 -q)
    if [[ ! -e "$_BOURSE_APT_STAMP" ]]; then
        _bourse_log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update >/dev/null ||
            { _bourse_err "apt-get update failed"; return 1; }
        touch "$_BOURSE_APT_STAMP"
    fi
    _bourse_log "apt-get install -y $*"
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y "$@" >/dev/null ||
        { _bourse_err "apt-get install $* failed"; return 1; }
}

# ------------------------------------------------------------ build deps ----

_ensure_build_deps_impl() {
    local missing=()
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    command -v gcc >/dev/null || missing+=(gcc)
    # jemalloc (the `bourse` binary's allocator) is built with make.
    command -v make >/dev/null || missing+=(make)
    command -v curl >/dev/null || missing+=(curl)
    [[ -f /usr/include/postgresql/libpq-fe.h ]] || missing+=(libpq-dev)
    if ((${#missing[@]})); then
        _bourse_apt_install "${missing[@]}"
    fi
}

ensure_build_deps() {
    local t0
    t0=$(_bourse_now_ms)
    _bourse_log "build deps: checking pkg-config, gcc, make, curl, libpq-dev"
    _bourse_strict _ensure_build_deps_impl || { _bourse_err "build deps failed"; return 1; }
    _bourse_log "build deps: ready ($(_bourse_elapsed "$t0"))"
}

# --------------------------------------------------------------- RabbitMQ ----

_bourse_rmq_api() { # _bourse_rmq_api PATH -> body; fails unless HTTP 2xx
    curl -fsS --max-time 5 -u guest:guest "http://${BOURSE_AMQP_HOST}:${BOURSE_AMQP_MGMT_PORT}$1"
}

# True when AMQP listens and guest/guest can use vhost "/" via the HTTP API.
_bourse_rmq_healthy() {
    _bourse_port_open "$BOURSE_AMQP_HOST" "$BOURSE_AMQP_PORT" &&
        _bourse_rmq_api /api/overview >/dev/null 2>&1 &&
        _bourse_rmq_api /api/permissions/%2F/guest >/dev/null 2>&1
}

# True when a vhost can be created and deleted. A broker can answer the API and
# still hang on these (seen with RabbitMQ 3.10 after many vhosts were created
# and deleted at once: "Adding vhost" never finishes); every test makes one.
_bourse_rmq_vhosts_work() {
    local api="http://${BOURSE_AMQP_HOST}:${BOURSE_AMQP_MGMT_PORT}/api/vhosts/bourse-probe-$$"
    curl -fsS --max-time 20 -u guest:guest -X PUT -H 'content-type: application/json' -d '{}' "$api" >/dev/null 2>&1 &&
        curl -fsS --max-time 20 -u guest:guest -X DELETE "$api" >/dev/null 2>&1
}

# Deletes the vhosts earlier test runs left behind (a test that fails keeps its
# own), one at a time.
drop_test_vhosts() {
    local api="http://${BOURSE_AMQP_HOST}:${BOURSE_AMQP_MGMT_PORT}/api/vhosts" v n=0
    for v in $(curl -fsS --max-time 20 -u guest:guest "$api?columns=name" 2>/dev/null |
        grep -o '"name":"t-[0-9a-f]*"' | cut -d'"' -f4); do
        curl -fsS --max-time 20 -u guest:guest -X DELETE "$api/$v" >/dev/null 2>&1 && n=$((n + 1))
    done
    ((n == 0)) || _bourse_log "rabbitmq: deleted $n vhosts left by earlier test runs"
}

# Kills a hung broker and moves its database aside: the next start is fresh.
_bourse_rmq_reset() {
    _bourse_as_root_check
    _bourse_log "rabbitmq: vhost operations hang; killing the broker and starting it on a fresh database"
    pkill -9 -u rabbitmq -f 'beam' || true
    local i
    for i in $(seq 1 50); do
        pgrep -u rabbitmq -f 'beam' >/dev/null || break
        sleep 0.2
    done
    if [[ -d /var/lib/rabbitmq/mnesia ]]; then
        mv /var/lib/rabbitmq/mnesia "/var/lib/rabbitmq/mnesia.hung.$(date +%s)"
    fi
}

_bourse_rmq_show_logs() {
    local f
    for f in /var/log/rabbitmq/startup_err /var/log/rabbitmq/startup_log /var/log/rabbitmq/rabbit@*.log; do
        [[ -s "$f" ]] || continue
        printf '==> --- last lines of %s ---\n' "$f" >&2
        tail -n 30 "$f" >&2 || true
    done
}

_bourse_rmq_mgmt_enabled_offline() {
    grep -qs 'rabbitmq_management' /etc/rabbitmq/enabled_plugins
}

_ensure_rabbitmq_impl() {
    if ! command -v rabbitmq-server >/dev/null || ! command -v rabbitmqctl >/dev/null; then
        _bourse_apt_install rabbitmq-server
    fi
    command -v curl >/dev/null || _bourse_apt_install curl

    if _bourse_rmq_healthy; then
        if _bourse_rmq_vhosts_work; then
            _bourse_log "rabbitmq: already running, management API answers"
            return 0
        fi
        _bourse_rmq_reset
    fi

    if ! _bourse_port_open "$BOURSE_AMQP_HOST" "$BOURSE_AMQP_PORT"; then
        if pgrep -u rabbitmq -f 'beam.*rabbit' >/dev/null; then
            _bourse_log "rabbitmq: a node is running but not listening yet; waiting for it"
        else
            _bourse_as_root_check
            # Enabling the plugin before the first start saves a second boot step.
            if ! _bourse_rmq_mgmt_enabled_offline; then
                _bourse_log "rabbitmq: enabling rabbitmq_management (offline)"
                rabbitmq-plugins enable --offline rabbitmq_management >/dev/null
            fi
            _bourse_log "rabbitmq: starting (rabbitmq-server -detached)"
            rabbitmq-server -detached
        fi
        # await_startup fails at once while the node has not registered with
        # epmd yet, so retry it until an overall deadline.
        local deadline=$((SECONDS + 120))
        until timeout 60 rabbitmqctl await_startup >/dev/null 2>&1; do
            if ((SECONDS >= deadline)); then
                _bourse_err "rabbitmq: did not start within 120s"
                _bourse_rmq_show_logs
                return 1
            fi
            sleep 1
        done
        _bourse_log "rabbitmq: node is up"
    fi

    if ! _bourse_rmq_api /api/overview >/dev/null 2>&1; then
        local code
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u guest:guest \
            "http://${BOURSE_AMQP_HOST}:${BOURSE_AMQP_MGMT_PORT}/api/overview" || true)
        if [[ "$code" == 000 ]]; then
            # Nothing listens on 15672: the plugin is off (works online).
            _bourse_log "rabbitmq: enabling rabbitmq_management"
            rabbitmq-plugins enable rabbitmq_management >/dev/null
        fi
    fi

    # guest/guest must exist, be an administrator and have full rights on "/".
    if ! rabbitmqctl authenticate_user guest guest >/dev/null 2>&1; then
        _bourse_log "rabbitmq: (re)creating user guest/guest"
        rabbitmqctl add_user guest guest >/dev/null 2>&1 ||
            rabbitmqctl change_password guest guest >/dev/null
        rabbitmqctl set_user_tags guest administrator >/dev/null
    fi
    if ! _bourse_rmq_api /api/permissions/%2F/guest >/dev/null 2>&1; then
        _bourse_log "rabbitmq: granting guest full permissions on vhost /"
        rabbitmqctl set_permissions -p / guest '.*' '.*' '.*' >/dev/null
    fi

    local deadline=$((SECONDS + 60))
    until _bourse_rmq_healthy; do
        if ((SECONDS >= deadline)); then
            _bourse_err "rabbitmq: management API http://${BOURSE_AMQP_HOST}:${BOURSE_AMQP_MGMT_PORT}/api/overview did not answer for guest:guest within 60s"
            _bourse_rmq_show_logs
            return 1
        fi
        sleep 1
    done
    _bourse_log "rabbitmq: management API answers"
}

ensure_rabbitmq() {
    local t0
    t0=$(_bourse_now_ms)
    _bourse_log "rabbitmq: ensuring broker on ${BOURSE_AMQP_HOST}:${BOURSE_AMQP_PORT} (management :${BOURSE_AMQP_MGMT_PORT})"
    _bourse_strict _ensure_rabbitmq_impl || { _bourse_err "rabbitmq failed"; return 1; }
    export BOURSE_TEST_AMQP_URL="amqp://guest:guest@${BOURSE_AMQP_HOST}:${BOURSE_AMQP_PORT}/%2f"
    export BOURSE_TEST_AMQP_MGMT_URL="http://guest:guest@${BOURSE_AMQP_HOST}:${BOURSE_AMQP_MGMT_PORT}"
    _bourse_log "rabbitmq: ready ($(_bourse_elapsed "$t0"))"
}

stop_rabbitmq() {
    if command -v rabbitmqctl >/dev/null && _bourse_port_open "$BOURSE_AMQP_HOST" "$BOURSE_AMQP_PORT"; then
        _bourse_log "rabbitmq: stopping"
        rabbitmqctl stop >/dev/null
    else
        _bourse_log "rabbitmq: not running"
    fi
}

# ------------------------------------------------------------- PostgreSQL ----

# Directory holding pg_ctl/initdb/postgres: the newest /usr/lib/postgresql/*/bin,
# else wherever PATH finds pg_ctl and initdb. Prints nothing if none.
_bourse_pg_bindir() {
    local d
    d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$d" && -x "$d/pg_ctl" && -x "$d/initdb" && -x "$d/postgres" ]]; then
        printf '%s\n' "$d"
        return 0
    fi
    if command -v pg_ctl >/dev/null && command -v initdb >/dev/null; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
    fi
}

_ensure_postgres_impl() {
    local bin
    bin=$(_bourse_pg_bindir)
    if [[ -z "$bin" ]]; then
        _bourse_apt_install postgresql
        bin=$(_bourse_pg_bindir)
        [[ -n "$bin" ]] || { _bourse_err "postgres: pg_ctl/initdb not found after installing postgresql"; return 1; }
    fi
    [[ -f /usr/include/postgresql/libpq-fe.h ]] || _bourse_apt_install libpq-dev

    local dir="$BOURSE_PG_DIR" port="$BOURSE_PG_PORT"
    local data="$dir/data" log="$dir/postgres.log"
    local isready=("$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres)
    local as_pg=(runuser -u postgres --)

    # Ours already running?
    if [[ -f "$data/PG_VERSION" ]] && "${as_pg[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        if "${isready[@]}" -t 10; then
            _bourse_log "postgres: already running ($data, port $port)"
            return 0
        fi
        _bourse_log "postgres: server for $data runs but not on 127.0.0.1:$port; restarting it"
        "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    elif "${isready[@]}" -t 2; then
        # Another server holds the port: fine if it speaks trust auth for postgres.
        if "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -w -c 'select 1' >/dev/null 2>&1; then
            _bourse_log "postgres: reusing the server already answering on 127.0.0.1:$port"
            return 0
        fi
        _bourse_err "postgres: port $port is taken by a server that refuses user postgres without password; set BOURSE_PG_PORT"
        return 1
    fi

    _bourse_as_root_check
    id postgres >/dev/null 2>&1 || { _bourse_err "postgres: no 'postgres' user (is the postgresql package installed?)"; return 1; }
    mkdir -p "$dir"
    chown postgres:postgres "$dir"
    chmod 0700 "$dir"

    # initdb only when there is no (usable) cluster. A cluster from another major
    # version, or a half-made one, is thrown away: this is scratch data.
    local want_version have_version=""
    want_version=$("$bin/pg_ctl" --version | awk '{print $NF}' | cut -d. -f1)
    [[ -f "$data/PG_VERSION" ]] && have_version=$(<"$data/PG_VERSION")
    if [[ -e "$data" && "$have_version" != "$want_version" ]]; then
        _bourse_log "postgres: discarding unusable data dir $data (version '${have_version:-none}', want $want_version)"
        rm -rf "$data"
    fi
    if [[ ! -e "$data" ]]; then
        _bourse_log "postgres: initdb $data (trust auth, UTF8)"
        "${as_pg[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
            --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 || {
            _bourse_err "postgres: initdb failed:"
            cat "$dir/initdb.log" >&2
            return 1
        }
    fi

    _bourse_log "postgres: starting on 127.0.0.1:$port (log $log)"
    local opts="-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=400 -c shared_buffers=128MB"
    if ! "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$opts" start >/dev/null; then
        _bourse_err "postgres: pg_ctl start failed; last lines of $log:"
        tail -n 30 "$log" >&2 || true
        return 1
    fi
    "${isready[@]}" -t 30 || { _bourse_err "postgres: not accepting connections on 127.0.0.1:$port"; return 1; }
}

ensure_postgres() {
    local t0
    t0=$(_bourse_now_ms)
    _bourse_log "postgres: ensuring throwaway cluster in $BOURSE_PG_DIR on 127.0.0.1:$BOURSE_PG_PORT"
    _bourse_strict _ensure_postgres_impl || { _bourse_err "postgres failed"; return 1; }
    export BOURSE_TEST_PG_URL="postgres://postgres@127.0.0.1:${BOURSE_PG_PORT}/postgres"
    _bourse_log "postgres: ready, BOURSE_TEST_PG_URL=$BOURSE_TEST_PG_URL ($(_bourse_elapsed "$t0"))"
}

stop_postgres() {
    local bin data="$BOURSE_PG_DIR/data"
    bin=$(_bourse_pg_bindir)
    if [[ -n "$bin" && -f "$data/PG_VERSION" ]] &&
        runuser -u postgres -- "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        _bourse_log "postgres: stopping"
        runuser -u postgres -- "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
    else
        _bourse_log "postgres: not running"
    fi
}

# ------------------------------------------------------------------ anvil ----
# chain-service's dev chain: anvil (Foundry), from the npm registry. Tests and
# `bourse up` spawn it on a free port; they find it at $BOURSE_ANVIL_BIN.

: "${BOURSE_TOOLS_DIR:=/var/tmp/bourse-tools}"
BOURSE_ANVIL_BIN="$BOURSE_TOOLS_DIR/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"

_ensure_anvil_impl() {
    if [[ -x "$BOURSE_ANVIL_BIN" ]] && "$BOURSE_ANVIL_BIN" --version >/dev/null 2>&1; then
        return 0
    fi
    command -v npm >/dev/null || _bourse_apt_install npm
    mkdir -p "$BOURSE_TOOLS_DIR"
    npm install --silent --no-audit --no-fund --prefix "$BOURSE_TOOLS_DIR" @foundry-rs/anvil >/dev/null
    [[ -x "$BOURSE_ANVIL_BIN" ]] || { _bourse_err "anvil: not at $BOURSE_ANVIL_BIN after npm install"; return 1; }
}

ensure_anvil() {
    local t0
    t0=$(_bourse_now_ms)
    _bourse_log "anvil: checking $BOURSE_ANVIL_BIN"
    _bourse_strict _ensure_anvil_impl || { _bourse_err "anvil failed"; return 1; }
    export BOURSE_ANVIL_BIN
    _bourse_log "anvil: ready, $("$BOURSE_ANVIL_BIN" --version | head -n 1) ($(_bourse_elapsed "$t0"))"
}

# ------------------------------------------------------------------- SMTP ----
# notify-service's tests and `bourse up` run scripts/mailbox.py, an SMTP server
# built on Python's aiosmtpd; `bourse` finds a Python that can import it
# ($BOURSE_PYTHON, python3, /usr/bin/python3).

_bourse_has_aiosmtpd() {
    local py
    for py in ${BOURSE_PYTHON:-} python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null && "$py" -c 'import aiosmtpd' 2>/dev/null; then
            printf '%s\n' "$py"
            return 0
        fi
    done
    return 1
}

_ensure_smtp_impl() {
    _bourse_has_aiosmtpd >/dev/null && return 0
    _bourse_apt_install python3-aiosmtpd
    _bourse_has_aiosmtpd >/dev/null || { _bourse_err "smtp: python3-aiosmtpd installed but no Python imports aiosmtpd"; return 1; }
}

ensure_smtp() {
    local t0
    t0=$(_bourse_now_ms)
    _bourse_log "smtp: checking for Python's aiosmtpd (scripts/mailbox.py)"
    _bourse_strict _ensure_smtp_impl || { _bourse_err "smtp failed"; return 1; }
    _bourse_log "smtp: ready, $(_bourse_has_aiosmtpd) has aiosmtpd ($(_bourse_elapsed "$t0"))"
}

# ------------------------------------------------------------- test tools ----
# What the operators' tests use beside the stack: the Prometheus client's
# OpenMetrics parser (scripts/parse-metrics.py), a real browser with its
# WebDriver (the saga explorer's test): Debian's chromium and chromium-driver,
# and schemathesis (the API documents' test) in /var/tmp/bourse-venv.

_ensure_test_tools_impl() {
    local missing=()
    /usr/bin/python3 -c 'import prometheus_client.openmetrics.parser' 2>/dev/null || missing+=(python3-prometheus-client)
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    /usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
    ((${#missing[@]} == 0)) || _bourse_apt_install "${missing[@]}"
    # schemathesis (PyPI), in its own virtual environment.
    local venv=/var/tmp/bourse-venv
    if ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q 'schemathesis==4.32.5'
    fi
}

ensure_test_tools() {
    local t0
    t0=$(_bourse_now_ms)
    _bourse_log "test tools: checking for the OpenMetrics parser, chromium, chromedriver and schemathesis"
    _bourse_strict _ensure_test_tools_impl || { _bourse_err "test tools failed"; return 1; }
    _bourse_log "test tools: ready ($(_bourse_elapsed "$t0"))"
}

# ------------------------------------------------------------------ main ----

_bourse_print_env() {
    printf 'export BOURSE_TEST_AMQP_URL=%q\n' "amqp://guest:guest@${BOURSE_AMQP_HOST}:${BOURSE_AMQP_PORT}/%2f"
    printf 'export BOURSE_TEST_AMQP_MGMT_URL=%q\n' "http://guest:guest@${BOURSE_AMQP_HOST}:${BOURSE_AMQP_MGMT_PORT}"
    printf 'export BOURSE_TEST_PG_URL=%q\n' "postgres://postgres@127.0.0.1:${BOURSE_PG_PORT}/postgres"
    printf 'export BOURSE_ANVIL_BIN=%q\n' "$BOURSE_ANVIL_BIN"
}

_bourse_infra_main() {
    if [[ "${1:-}" == __impl ]]; then
        # Internal: one *_impl function, strict mode, called by _bourse_strict.
        "$2"
        return
    fi
    trap 'rm -f "$_BOURSE_APT_STAMP"' EXIT
    (($#)) || set -- all
    local cmd
    for cmd in "$@"; do
        case "$cmd" in
            all)
                ensure_build_deps
                ensure_rabbitmq
                ensure_postgres
                ensure_smtp
                ensure_anvil
                ensure_test_tools
                ;;
            ensure_build_deps | ensure_rabbitmq | ensure_postgres | ensure_smtp | ensure_anvil | ensure_test_tools | stop_rabbitmq | stop_postgres)
                "$cmd"
                ;;
            stop)
                stop_postgres
                stop_rabbitmq
                ;;
            env)
                # Only the export lines on stdout, so that eval "$(...)" works.
                ensure_build_deps >&2
                ensure_rabbitmq >&2
                ensure_postgres >&2
                ensure_smtp >&2
                ensure_anvil >&2
                ensure_test_tools >&2
                _bourse_print_env
                ;;
            -h | --help | help)
                sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
                ;;
            *)
                _bourse_err "unknown command: $cmd (try --help)"
                return 2
                ;;
        esac
    done
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    _bourse_infra_main "$@"
fi
