#!/usr/bin/env bash
# Gateway CPU per event (utime + stime of the ringway process, from /proc/PID/stat) of two
# ringway binaries, alternated run by run so the machine's noise falls on both alike: for a
# before/after comparison of a change. Each run: a UNIX source, a null sink, 2 workers, loadgen
# sending N events over 64 connections, 32 lines per write; both io modes, REPS pairs each.
# Every run checks that the gateway received all N events.
#
#   benches/cpu_per_event.sh BEFORE_RINGWAY AFTER_RINGWAY [N=4000000] [REPS=3]
#
# loadgen is target/release/loadgen (built first). Prints one line per run and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n 2,9p "$0"; exit 2; }
before=$1 after=$2 n=${3:-4000000} reps=${4:-3}
cargo build --release -p loadgen --quiet
loadgen=target/release/loadgen
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tick=$(getconf CLK_TCK)
one() { # mode binary → ns of gateway CPU per event
    local mode=$1 bin=$2 sock=$work/in.sock pid ticks got
    rm -f "$sock"
    cat >"$work/gw.toml" <<T
io_mode = "$mode"
workers = 2
[control]
enabled = false
path = "$work/ctl.sock"
[[sources]]
type = "unix_socket_server"
path = "$sock"
[[sinks]]
type = "null"
T
    "$bin" run --config "$work/gw.toml" 2>"$work/gw.err" &
    pid=$!
    for _ in $(seq 200); do [ -S "$sock" ] && break; sleep 0.05; done
    "$loadgen" -t "unix:$sock" -n "$n" -c 64 -k 32 --quiet >/dev/null 2>"$work/lg.err"
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill -TERM "$pid"
    wait "$pid"
    got=$(grep -o 'events_in=[0-9]*' "$work/gw.err" | tail -1)
    [ "$got" = "events_in=$n" ] || { echo "$bin ($mode): $got of $n" >&2; exit 1; }
    echo $((ticks * 1000000000 / tick / n))
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for mode in uring epoll; do
    : >"$work/b" && : >"$work/a"
    for _ in $(seq "$reps"); do
        one "$mode" "$before" | tee -a "$work/b" | sed "s/^/$mode before: /;s/$/ ns/"
        one "$mode" "$after" | tee -a "$work/a" | sed "s/^/$mode after:  /;s/$/ ns/"
    done
    b=$(median <"$work/b") a=$(median <"$work/a")
    awk -v m="$mode" -v b="$b" -v a="$a" \
        'BEGIN {printf "%s: median %d ns before, %d ns after: after/before = %.2f\n", m, b, a, a / b}'
done
