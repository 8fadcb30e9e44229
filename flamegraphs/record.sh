#!/usr/bin/env bash
# Record a CPU flamegraph of the gateway under a named loadgen scenario.
#
#   flamegraphs/record.sh SCENARIO [SECONDS]
#
# Scenarios (all UNIX socket, json codec, the default ~200-byte log events):
#   peak-uring   io_mode = uring, null sink, 64 connections, closed loop, 32 lines per write
#   peak-epoll   the same with io_mode = epoll
#   file-uring   io_mode = uring, file sink (tmpfs-backed /tmp unless TMPDIR says otherwise)
#   envelope     io_mode = uring, file sink with metadata = "envelope" (encoding per event)
#   rate-1m      io_mode = uring, null sink, open loop at 1M events/s with stamps + latency_field
#
# Samples the gateway with `perf record -e cpu-clock` (this machine has no hardware counters)
# and DWARF call graphs, folds the stacks and renders flamegraphs/SCENARIO.svg with inferno.
# Prints the top self-time functions. Needs perf (apt-get install linux-perf) and inferno
# (installed with `cargo install inferno` if missing).
set -euo pipefail
scenario=${1:?usage: flamegraphs/record.sh SCENARIO [SECONDS]  (peak-uring, peak-epoll, file-uring, envelope, rate-1m)}
secs=${2:-5}
case "$scenario" in
    peak-uring | peak-epoll | file-uring | envelope | rate-1m) ;;
    *) echo "record.sh: unknown scenario $scenario (peak-uring, peak-epoll, file-uring, envelope, rate-1m)" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
command -v perf >/dev/null || { echo "record.sh: perf is missing (apt-get install linux-perf)" >&2; exit 2; }
if ! command -v inferno-flamegraph >/dev/null; then
    echo "record.sh: installing inferno (cargo install inferno)" >&2
    cargo install inferno --locked --quiet
fi
cargo build --release --workspace --quiet

work=$(mktemp -d "${TMPDIR:-/tmp}/ringway-flame.XXXXXX")
trap 'kill "${gw:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mode=uring sink='type = "null"' load=(--rate max) telemetry=''
case "$scenario" in
    peak-uring) ;;
    peak-epoll) mode=epoll ;;
    file-uring) sink="type = \"file\"
path = \"$work/out.ndjson\"" ;;
    envelope) sink="type = \"file\"
path = \"$work/out.ndjson\"
metadata = \"envelope\"" ;;
    rate-1m) load=(--rate 1M --stamp)
        telemetry="[telemetry]
latency_field = \"sent_ns\"" ;;
esac
cat >"$work/ringway.toml" <<EOF
io_mode = "$mode"

[[sources]]
type = "unix_socket_server"
name = "in"
path = "$work/in.sock"

[[sinks]]
$sink

$telemetry
EOF
target/release/ringway --log-level warn run --config "$work/ringway.toml" 2>"$work/ringway.log" &
gw=$!
for _ in $(seq 100); do [ -S "$work/in.sock" ] && break; sleep 0.1; done
[ -S "$work/in.sock" ] || { cat "$work/ringway.log" >&2; exit 1; }

target/release/loadgen --quiet --target "unix:$work/in.sock" -c 64 -k 32 \
    --warmup 1s --duration "$((secs + 1))s" "${load[@]}" 2>"$work/loadgen.log" &
lg=$!
sleep 1
perf record -e cpu-clock -F 997 --call-graph dwarf,16384 -p "$gw" -o "$work/perf.data" \
    -- sleep "$secs" 2>"$work/perf.log"
wait "$lg" || { cat "$work/loadgen.log" >&2; exit 1; }
kill -TERM "$gw"; wait "$gw" || true
grep -E 'throughput|summary' "$work/loadgen.log" "$work/ringway.log" | sed 's/^[^:]*://' >&2

perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf >"$work/folded"
inferno-flamegraph --title "ringway: $scenario" --subtitle "perf -e cpu-clock, $secs s, $(date -u +%F)" \
    <"$work/folded" >"flamegraphs/$scenario.svg"
echo "wrote flamegraphs/$scenario.svg" >&2
# Self time by function: inlined helpers of core/alloc (ptr::add, mem::replace…) are charged to
# the function they were inlined into.
echo "top self time ($scenario, % of samples):"
awk '{ n = $NF; $NF = ""; sub(/ $/, ""); k = split($0, f, ";")
       while (k > 1 && f[k] ~ /^<?(core|alloc)::/) k--
       self[f[k]] += n; total += n }
     END { for (s in self) printf "%6.1f%%  %s\n", 100 * self[s] / total, s }' "$work/folded" |
    sort -rn | head -12
