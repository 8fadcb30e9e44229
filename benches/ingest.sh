#!/usr/bin/env bash
# Peak ingest throughput of the release binary, in ONE run so machine noise mostly cancels:
# 4 socat clients each replay the same NDJSON file (1M lines of ~186 bytes) into
#   1. a read-and-discard baseline (socat UNIX-LISTEN → /dev/null: no framing, no parsing),
#   2. ringway io_mode = "epoll", json codec, null sink,
#   3. ringway io_mode = "uring", json codec, null sink,
# and prints events/s for each and the ratio to the baseline. Every ringway run checks its own
# summary (events_in and events_out must equal what was sent).
# Usage: benches/ingest.sh [LINES_PER_CLIENT]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
clients=4
source benches/common/setup.sh
blast() { # socket → seconds taken by $clients concurrent writers
    local s e
    s=$(now)
    for _ in $(seq "$clients"); do socat -u -b 262144 "$work/load.ndjson" "UNIX-CONNECT:$1" & done
    wait
    e=$(now)
    echo "$e - $s" | bc -l
}

# 1. baseline: read and discard.
socat -u "UNIX-LISTEN:$work/base.sock,fork" /dev/null &
base_pid=$!
wait_sock "$work/base.sock"
t_base=$(blast "$work/base.sock")
kill "$base_pid" 2>/dev/null || true

results=()
for mode in epoll uring; do
    cat >"$work/$mode.toml" <<TOML
io_mode = "$mode"
[[sources]]
type = "unix_socket_server"
path = "$work/$mode.sock"
[[sinks]]
type = "null"
TOML
    "$bin" run --config "$work/$mode.toml" 2>"$work/$mode.err" &
    pid=$!
    wait_sock "$work/$mode.sock"
    t=$(blast "$work/$mode.sock")
    # the null sink is done when the summary says so; SIGTERM drains first.
    kill -TERM "$pid"
    wait "$pid"
    summary=$(tail -1 "$work/$mode.err")
    grep -q "events_in=$total events_out=$total dead_lettered=0 dropped=0" <<<"$summary" ||
        { echo "ringway $mode lost events: $summary" >&2; exit 1; }
    results+=("$mode $t")
done

printf '%-34s %14s %10s\n' "run ($clients clients x $lines lines)" "events/s" "vs base"
rate() { echo "$total / $1" | bc -l; }
printf '%-34s %14.0f %10s\n' "read-and-discard (socat → /dev/null)" "$(rate "$t_base")" "1.00"
for r in "${results[@]}"; do
    set -- $r
    printf '%-34s %14.0f %10.2f\n' "ringway io_mode=$1, json, null sink" "$(rate "$2")" "$(echo "$t_base / $2" | bc -l)"
done
