#!/usr/bin/env bash
# WebSocket vs UNIX ingest throughput on the same payload, in ONE run (ratios, not absolute
# times, are what this machine can compare). One release gateway has both a unix_socket_server
# and a ws_server source (preprocessors = ["separate"]), json codec, null sink. loadgen sends
# the same events (its default ~170-byte JSON) to each in turn, closed loop: 4 connections,
# 64 events a write (over WebSocket: one text message per write). Rounds alternate; the best of
# each is reported, with the WebSocket/UNIX ratio. The gateway's summary must count every event.
# Usage: benches/ws.sh [EVENTS_PER_RUN] [ROUNDS] [IO_MODE]   (defaults 2000000, 3, uring)
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-2000000}
rounds=${2:-3}
mode=${3:-uring}
cargo build --release --quiet -p ringway -p loadgen
bin=target/release/ringway
work=$(mktemp -d)
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
cat >"$work/gw.toml" <<TOML
io_mode = "$mode"
workers = 2
[control]
enabled = false
[[sources]]
name = "unix"
type = "unix_socket_server"
path = "$work/in.sock"
[[sources]]
name = "ws"
type = "ws_server"
url = "127.0.0.1:0"
preprocessors = ["separate"]
[[sinks]]
type = "null"
TOML
"$bin" run --config "$work/gw.toml" 2>"$work/gw.err" &
pid=$!
for _ in $(seq 200); do grep -q "listening on ws://" "$work/gw.err" && [ -S "$work/in.sock" ] && break; sleep 0.05; done
url=$(grep -o 'listening on ws://[^ ]*' "$work/gw.err" | head -1 | cut -d' ' -f3)
[ -n "$url" ] || { echo "no ws_server line" >&2; cat "$work/gw.err" >&2; exit 1; }
run() { # target → events/s
    target/release/loadgen --target "$1" --count "$events" -c 4 -k 64 --quiet \
        --json "$work/run.json" >/dev/null 2>"$work/loadgen.err" ||
        { cat "$work/loadgen.err" >&2; exit 1; }
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["throughput_events_per_s"])' "$work/run.json"
}
best_unix=0 best_ws=0
for r in $(seq "$rounds"); do
    u=$(run "unix:$work/in.sock")
    w=$(run "$url")
    printf 'round %d: unix %.0f events/s, ws %.0f events/s (ws/unix %.2f)\n' "$r" "$u" "$w" "$(echo "$w / $u" | bc -l)"
    best_unix=$(echo "if ($u > $best_unix) $u else $best_unix" | bc -l)
    best_ws=$(echo "if ($w > $best_ws) $w else $best_ws" | bc -l)
done
kill -TERM "$pid"
wait "$pid" || { echo "gateway exited non-zero" >&2; exit 1; }
total=$((events * rounds * 2))
summary=$(tail -1 "$work/gw.err")
grep -q "events_in=$total events_out=$total dead_lettered=0 dropped=0" <<<"$summary" ||
    { echo "the gateway did not count every event: $summary" >&2; exit 1; }
printf '%-44s %14s %8s\n' "best of $rounds ($events events, 4 conns, k=64, $mode)" "events/s" "ratio"
printf '%-44s %14.0f %8s\n' "unix_socket_server" "$best_unix" "1.00"
printf '%-44s %14.0f %8.2f\n' "ws_server (one text message per 64 events)" "$best_ws" "$(echo "$best_ws / $best_unix" | bc -l)"
