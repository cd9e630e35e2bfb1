#!/usr/bin/env bash
# Herald side by side with Sockudo 5.2.0 (Pusher protocol) and Centrifugo v6.9.1 (the
# protocol Herald speaks), driven by the same generator (herald-loadtest), one server
# at a time on loopback, compared per server CPU-second.
#
#   loadtest/peers/compare.sh            # COMPARE_DURATION=20s by default
#
# Environment: COMPARE_DURATION (measured phase of each run), COMPARE_PUBLISHERS
# (concurrent API connections, default 8), SOCKUDO_BIN and CENTRIFUGO_BIN (use these
# binaries instead of finding or installing them under target/peers/), COMPARE_OUT
# (result directory, default target/peers/results).
# Exits non-zero when a server could not be installed, started or measured; the
# others still run and the table shows `failed: <reason>` for it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
DURATION=${COMPARE_DURATION:-20s}
PEERS=$ROOT/target/peers
OUT=${COMPARE_OUT:-$PEERS/results}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/herald-compare.XXXXXX")
SECRET=compare-secret-$RANDOM$RANDOM$RANDOM
KEY=compare-key-$RANDOM$RANDOM
APP_ID=compare-app
SERVER_PID=
# Concurrent API connections: with one, a server whose API answers in more than
# 1/rate seconds publishes below the rate asked, and the run measures its API latency.
PUBLISHERS=${COMPARE_PUBLISHERS:-8}

cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

say() { echo "compare: $*" >&2; }

# A free loopback port (the kernel's choice, released at once).
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:$1 accepts connections and $2 still runs (10 s at most).
wait_port() {
    local i
    for i in $(seq 100); do
        kill -0 "$2" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Each server holds one descriptor per connection.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

rm -rf "$OUT"
mkdir -p "$OUT" "$PEERS"
say "building herald-node and herald-loadtest (release)"
nice cargo build --release -q -p herald-node -p herald-loadtest
LOADTEST=$ROOT/target/release/herald-loadtest
HERALD_BIN=$ROOT/target/release/herald-node

failed_servers=()
# Marks server $1 failed with reason $2 for every scenario.
server_failed() {
    echo "$2" >"$OUT/$1.failed"
    failed_servers+=("$1")
    say "$1: $2"
}

find_centrifugo() {
    if [[ -n ${CENTRIFUGO_BIN:-} ]]; then
        [[ -x $CENTRIFUGO_BIN ]] || { echo "CENTRIFUGO_BIN=$CENTRIFUGO_BIN is not executable"; return 1; }
        echo "$CENTRIFUGO_BIN"
        return
    fi
    local bin=$PEERS/bin/centrifugo
    if [[ ! -x $bin ]]; then
        command -v go >/dev/null || { echo "go not found (needed to install centrifugo)"; return 1; }
        say "installing centrifugo v6.9.1 into $PEERS/bin"
        GOBIN=$PEERS/bin go install github.com/centrifugal/centrifugo/v6@v6.9.1 >&2 \
            || { echo "go install centrifugo v6.9.1 failed"; return 1; }
    fi
    echo "$bin"
}

find_sockudo() {
    if [[ -n ${SOCKUDO_BIN:-} ]]; then
        [[ -x $SOCKUDO_BIN ]] || { echo "SOCKUDO_BIN=$SOCKUDO_BIN is not executable"; return 1; }
        echo "$SOCKUDO_BIN"
        return
    fi
    local bin=$PEERS/sockudo/bin/sockudo
    if [[ ! -x $bin ]]; then
        command -v protoc >/dev/null \
            || { echo "protoc not found (Debian: apt-get install protobuf-compiler)"; return 1; }
        # One of its build scripts imports protobuf's well-known types (timestamp.proto).
        [[ -e /usr/include/google/protobuf/timestamp.proto ]] \
            || { echo "protobuf's well-known types not found (Debian: apt-get install libprotobuf-dev)"; return 1; }
        say "installing sockudo 5.2.0 into $PEERS/sockudo (a long build)"
        nice cargo install sockudo --version 5.2.0 --locked --root "$PEERS/sockudo" >&2 \
            || { echo "cargo install sockudo 5.2.0 failed"; return 1; }
    fi
    echo "$bin"
}

servers=(herald)
if CENTRIFUGO=$(find_centrifugo); then servers+=(centrifugo); else server_failed centrifugo "$CENTRIFUGO"; fi
if SOCKUDO=$(find_sockudo); then servers+=(sockudo); else server_failed sockudo "$SOCKUDO"; fi

{
    echo "herald $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)"
    [[ -n ${CENTRIFUGO:-} && -x ${CENTRIFUGO:-} ]] && echo "centrifugo $(go version -m "$CENTRIFUGO" 2>/dev/null | awk '$1 == "mod" {print $3}' || true)"
    [[ -n ${SOCKUDO:-} && -x ${SOCKUDO:-} ]] && echo "sockudo $("$SOCKUDO" --version 2>/dev/null | awk '{print $NF}' || true)"
    echo "nproc $(nproc)"
    echo "cpu $(lscpu | sed -n 's/^Model name: *//p' | head -1)"
    echo "date $(date -u +%Y-%m-%dT%H:%MZ)"
    echo "duration $DURATION"
} >"$OUT/versions.txt"

# Starts server $1 on port $2; sets SERVER_PID and the loadtest flags in TARGET.
start_server() {
    local name=$1 port=$2 dir=$WORK/$1
    mkdir -p "$dir"
    case $name in
    herald)
        # One node on its embedded broker, defaults (history: 100 publications, 300 s).
        HERALD_LISTEN=127.0.0.1:$port HERALD_TOKEN_HMAC_SECRET=$SECRET HERALD_API_KEY=$KEY \
            RUST_LOG=warn "$HERALD_BIN" >"$dir/log" 2>&1 &
        TARGET=(--url "ws://127.0.0.1:$port/connection/websocket" --secret "$SECRET" --api-key "$KEY")
        ;;
    centrifugo)
        # History like Herald's defaults; clients may subscribe to namespace-less
        # channels; no usage reports.
        cat >"$dir/config.json" <<JSON
{
  "http_server": {"address": "127.0.0.1", "port": $port},
  "log": {"level": "warn"},
  "client": {"token": {"hmac_secret_key": "$SECRET"}},
  "http_api": {"key": "$KEY"},
  "channel": {"without_namespace": {"allow_subscribe_for_client": true,
    "history_size": 100, "history_ttl": "300s", "force_recovery": true}},
  "usage_stats": {"disabled": true}
}
JSON
        (cd "$dir" && exec "$CENTRIFUGO" -c config.json) >"$dir/log" 2>&1 &
        TARGET=(--url "ws://127.0.0.1:$port/connection/websocket" --secret "$SECRET" --api-key "$KEY")
        ;;
    sockudo)
        # One app in the memory app manager; no rate limits, no queue, memory cache,
        # local adapter, no metrics listener, no delta compression. Sockudo keeps history
        # only in PostgreSQL, so it runs without.
        mkdir -p "$dir/config"
        cat >"$dir/config/config.toml" <<TOML
host = "127.0.0.1"
port = $port
mode = "production"

[adapter]
driver = "local"

[app_manager]
driver = "memory"

[[app_manager.array.apps]]
id = "$APP_ID"
key = "$KEY"
secret = "$SECRET"
enabled = true

[app_manager.array.apps.policy.limits]
max_connections = 100000

[cache]
driver = "memory"

[queue]
driver = "none"

[rate_limiter]
enabled = false

[metrics]
enabled = false

[delta_compression]
enabled = false
TOML
        # It reads config/config.toml relative to its working directory.
        (cd "$dir" && RUST_LOG=warn exec "$SOCKUDO" -c config/config.toml) >"$dir/log" 2>&1 &
        TARGET=(--protocol pusher --url "ws://127.0.0.1:$port" --app-id "$APP_ID"
            --secret "$SECRET" --api-key "$KEY")
        ;;
    esac
    SERVER_PID=$!
    if ! wait_port "$port" "$SERVER_PID"; then
        tail -n 5 "$dir/log" >&2 || true
        return 1
    fi
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

scenarios=("1000 50" "5000 20" "1000 200")
run_failed=0
for s in "${scenarios[@]}"; do
    read -r subs rate <<<"$s"
    scen="${subs}x${rate}"
    for name in "${servers[@]}"; do
        [[ -e $OUT/$name.failed ]] && continue
        port=$(free_port)
        say "$scen: $name on 127.0.0.1:$port"
        if ! start_server "$name" "$port"; then
            echo "did not start (see its log above)" >"$OUT/$scen-$name.failed"
            run_failed=1
            stop_server
            continue
        fi
        if ! "$LOADTEST" fanout "${TARGET[@]}" --server-pid "$SERVER_PID" \
            --subscribers "$subs" --rate "$rate" --payload 64 --publishers "$PUBLISHERS" \
            --duration "$DURATION" \
            --quiet --json "$OUT/$scen-$name.json" >"$OUT/$scen-$name.txt" 2>&1; then
            reason=$(grep -v '^$' "$OUT/$scen-$name.txt" | tail -n 1 || true)
            echo "${reason:-herald-loadtest failed}" >"$OUT/$scen-$name.failed"
            rm -f "$OUT/$scen-$name.json"
            run_failed=1
            say "$scen: $name failed: $reason"
        fi
        stop_server
    done
done

python3 "$ROOT/loadtest/peers/table.py" "$OUT"
if ((${#failed_servers[@]} > 0 || run_failed)); then
    exit 1
fi
