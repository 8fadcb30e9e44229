#!/usr/bin/env bash
# Do many control-socket clients slow ingest? In ONE run, alternating, twice each:
#   A. 4 socat clients replay the same NDJSON file (LINES lines of ~186 bytes each, every line
#      validated) into ringway (unix_socket_server → null sink);
#   B. the same, while 500 control connections each ask `stats` once a second (spread out).
# Prints each run's events/s and the gateway's CPU time per event (utime+stime from
# /proc/PID/stat, which the control clients' own CPU use on this 2-core machine does not
# inflate), the ratios B/A (best of each), and what the control clients saw (requests
# answered, errors, slowest answer). Every run checks the summary (nothing lost).
# Usage: benches/control.sh [LINES_PER_CLIENT]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
lines=${1:-1000000}
clients=4
source benches/common/setup.sh
printf '[[sources]]\ntype = "unix_socket_server"\npath = "%s"\n[[sinks]]\ntype = "null"\n' \
    "$work/in.sock" >"$work/gw.toml"

run() { # with_control(0|1) → prints "events/s cpu_ns_per_event"
    local s e pids=() hold="" c c0
    "$bin" run --config "$work/gw.toml" 2>"$work/gw.err" &
    local gw=$!
    wait_sock "$work/in.sock"
    wait_sock "$work/in.ctl"
    if [ "$1" = 1 ]; then
        python3 tests/clients/control_client.py "$work/in.ctl" --hold 500 --every 1 --for 3600 \
            >"$work/hold.json" &
        hold=$!
        sleep 2 # all 500 connected and asking
    fi
    # CPU from here on: the ingest window (the control clients' requests in it included).
    c0=$(cpu "$gw")
    s=$(now)
    for _ in $(seq "$clients"); do
        socat -u -b 262144 "$work/load.ndjson" "UNIX-CONNECT:$work/in.sock" &
        pids+=($!)
    done
    wait "${pids[@]}"
    if [ -n "$hold" ]; then kill -TERM "$hold"; wait "$hold" || true; fi
    term_cpu "$gw" ringway
    c=$((ticks - c0))
    e=$(now)
    local line
    line=$(grep '^summary ' "$work/gw.err" | tail -1)
    if [ "$line" != "summary events_in=$total events_out=$total dead_lettered=0 dropped=0" ]; then
        echo "LOST: $line (expected $total)" >&2
        exit 1
    fi
    echo "$(echo "$total / ($e - $s)" | bc -l) $(echo "$c * 1000000000 / $tck / $total" | bc -l)"
}

declare -a a b ca cb
for round in 1 2 3; do
    read -r a[$round] ca[$round] <<<"$(run 0)"
    read -r b[$round] cb[$round] <<<"$(run 1)"
    printf 'round %d: without control clients %.2f M events/s (%.0f ns CPU/event), with 500: %.2f M events/s (%.0f ns CPU/event); control: %s\n' \
        "$round" "$(echo "${a[$round]} / 1000000" | bc -l)" "${ca[$round]}" \
        "$(echo "${b[$round]} / 1000000" | bc -l)" "${cb[$round]}" "$(cat "$work/hold.json")"
done
best() { printf '%s\n' "$@" | sort -g | tail -1; }
least() { printf '%s\n' "$@" | sort -g | head -1; }
ba=$(best "${a[@]}")
bb=$(best "${b[@]}")
la=$(least "${ca[@]}")
lb=$(least "${cb[@]}")
printf 'best of 3: without %.2f M/s, with 500 control connections %.2f M/s: throughput ratio %.3f\n' \
    "$(echo "$ba / 1000000" | bc -l)" "$(echo "$bb / 1000000" | bc -l)" "$(echo "$bb / $ba" | bc -l)"
printf 'gateway CPU per event: without %.0f ns, with %.0f ns: ratio %.3f\n' "$la" "$lb" "$(echo "$lb / $la" | bc -l)"
