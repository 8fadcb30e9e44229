#!/usr/bin/env bash
# What forwarding costs over ingesting, in ONE run: 4 socat clients replay the same NDJSON file
# (1M lines of ~186 bytes each, every line validated) into
#   1. ringway A: unix_socket_server → null sink (ingest only),
#   2. ringway A: unix_socket_server → unix_socket_client → ringway B: unix_socket_server → null,
# and prints, for each, events/s end to end and A's CPU time per event (utime+stime from
# /proc/PID/stat). A's CPU per event is the cost of forwarding (encoding nothing: raw batches go
# out with writev); both gateways share the 2 cores in run 2, so its events/s is a lower bound.
# Every run checks the summaries: what A took in, A wrote, and B took in and wrote.
# Usage: benches/forward.sh [LINES_PER_CLIENT]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
clients=4
source benches/common/setup.sh
summary() { # stderr file → "in out"
    local line
    line=$(grep '^summary ' "$1" | tail -1)
    echo "$(sed -E 's/.*events_in=([0-9]+).*/\1/' <<<"$line") $(sed -E 's/.*events_out=([0-9]+).*/\1/' <<<"$line")"
}
check() { # name stderr-file expected
    local got
    got=$(summary "$2")
    if [ "$got" != "$3 $3" ]; then echo "LOST: $1: in/out $got, expected $3" >&2; exit 1; fi
}
stop() { kill -TERM "$1"; wait "$1" || { echo "$2 exited non-zero" >&2; exit 1; }; }
source_toml() { printf '[[sources]]\ntype = "unix_socket_server"\npath = "%s"\n' "$1"; }

run() { # A's sink (TOML) → prints "seconds a_cpu_ticks": from the first client to A's exit
    local sink=$1 s e pids=()
    { source_toml "$work/a.sock"; printf '%s\n' "$sink"; } >"$work/a.toml"
    "$bin" run --config "$work/a.toml" 2>"$work/a.err" &
    local a=$!
    wait_sock "$work/a.sock"
    s=$(now)
    for _ in $(seq "$clients"); do
        socat -u -b 262144 "$work/load.ndjson" "UNIX-CONNECT:$work/a.sock" &
        pids+=($!)
    done
    wait "${pids[@]}"
    # SIGTERM: A reads what is queued, writes everything out, and exits.
    term_cpu "$a" A
    e=$(now)
    echo "$(echo "$e - $s" | bc -l) $ticks"
}

# 1. ingest only.
read -r t1 c1 < <(run $'[[sinks]]\ntype = "null"')
check "A (null sink)" "$work/a.err" "$total"

# 2. forwarding to B.
{ source_toml "$work/b.sock"; printf '[[sinks]]\ntype = "null"\n'; } >"$work/b.toml"
"$bin" run --config "$work/b.toml" 2>"$work/b.err" &
b=$!
wait_sock "$work/b.sock"
read -r t2 c2 < <(run "$(printf '[[sinks]]\ntype = "unix_socket_client"\npath = "%s"' "$work/b.sock")")
check "A (forwarding)" "$work/a.err" "$total"
stop "$b" "B"
check "B" "$work/b.err" "$total"

printf '%-34s %12s %16s\n' "run ($total events, 4 clients)" "events/s" "A's CPU µs/event"
for r in "ingest → null:$t1:$c1" "ingest → unix_socket_client → B:$t2:$c2"; do
    IFS=: read -r name t c <<<"$r"
    printf '%-34s %12.0f %16.3f\n' "$name" "$(echo "$total / $t" | bc -l)" "$(echo "$c / $tck * 1000000 / $total" | bc -l)"
done
printf 'forwarding / ingest, A CPU per event: %.2f×   (events/s: %.2f×)\n' \
    "$(echo "$c2 / $c1" | bc -l)" "$(echo "($total / $t2) / ($total / $t1)" | bc -l)"
