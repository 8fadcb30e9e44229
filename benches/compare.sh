#!/usr/bin/env bash
# The performance table of docs/performance.md, measured in one run (ratios cancel the noise of a shared
# machine): peak ingest (ringway uring / epoll / naive tokio baseline / parse limit), latency at
# 10/50/80% of peak (open loop), RSS per idle connection, and scaling over connection counts.
#
#   benches/compare.sh [--out-dir DIR] [any other `loadgen compare` option, see --help]
#
# Builds both binaries in release mode first. Prints a Markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace --quiet
exec target/release/loadgen compare --ringway target/release/ringway "$@"
