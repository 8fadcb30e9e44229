# Sourced by the bench scripts (run from the repo's root, with `lines` and `clients` set): builds
# the release binary, makes a work directory (removed on exit, with every process whose command
# line names it), writes the NDJSON load file (`load.py`) and defines the shared helpers.
cargo build --release --quiet -p ringway
bin=target/release/ringway
work=$(mktemp -d)
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
python3 benches/common/load.py "$work/load.ndjson" "$lines"
total=$((lines * clients))
tck=$(getconf CLK_TCK)
now() { date +%s.%N; }
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }   # utime + stime, clock ticks
wait_sock() { for _ in $(seq 200); do [ -S "$1" ] && return 0; sleep 0.05; done; echo "no socket $1" >&2; exit 1; }
# SIGTERM a gateway (a child of this shell: call it directly, not in $(…)) and wait for its
# clean exit; sets `ticks` to its CPU time, sampled until it is gone (the last sample is at most
# 10 ms before the exit).
term_cpu() { # pid name
    local t
    ticks=0
    kill -TERM "$1"
    while t=$(cpu "$1" 2>/dev/null) && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; do
        ticks=$t
        sleep 0.01
    done
    wait "$1" || { echo "$2 exited non-zero" >&2; exit 1; }
}
