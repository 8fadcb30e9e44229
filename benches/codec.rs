//! Line validation cost: `codec::Decoder::check` (simd-json, and UTF-8 only)
//! against serde_json parsing into a `Value` and into `IgnoredAny` (the
//! cheapest serde_json validation, which however does not check the UTF-8 of
//! strings: hence also `IgnoredAny` after `str::from_utf8`), over 100k
//! ~170-byte NDJSON log lines.
//!
//! Before timing, every contender must accept every line, and a warmed-up
//! `Decoder` must check the whole corpus without one allocation.
//!
//! `cargo bench --bench codec` measures; `cargo test --benches` runs each
//! routine once on 2k lines so that it stays fast in debug builds.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

mod common;

use common::XorShift;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringway::codec::{Codec, Decoder};
use serde::de::IgnoredAny;

/// The allocator the gateway ships with, counting allocations while asked to.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to MiMalloc, which upholds the
// GlobalAlloc contract; the counting touches only atomics, never memory.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn count() {
    if COUNTING.load(Relaxed) {
        ALLOCATIONS.fetch_add(1, Relaxed);
    }
}

/// Allocations made by `f`.
fn allocations_in(f: impl FnOnce()) -> usize {
    ALLOCATIONS.store(0, Relaxed);
    COUNTING.store(true, Relaxed);
    f();
    COUNTING.store(false, Relaxed);
    ALLOCATIONS.load(Relaxed)
}

/// `cargo bench` passes `--bench`; `cargo test --benches` does not.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// `lines` deterministic NDJSON log lines (~170 bytes each, some with
/// escapes), newline-terminated, in one buffer.
fn corpus(lines: usize) -> Vec<u8> {
    const LEVELS: [&str; 4] = ["debug", "info", "info", "warn"];
    const SERVICES: [&str; 4] = ["checkout", "auth", "search", "inventory"];
    const MESSAGES: [&str; 4] = [
        "request completed",
        r#"user \"alice\" logged in"#,
        "cache miss, fetching upstream",
        r#"retrying C:\\tmp\\spool"#,
    ];
    let mut out = Vec::with_capacity(lines * 180);
    let mut gen = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..lines {
        let rng = gen.next();
        let r = rng as usize;
        writeln!(
            out,
            r#"{{"ts":"2024-05-01T12:{:02}:{:02}.{:03}Z","level":"{}","host":"web-{:02}","service":"{}","msg":"{}","status":{},"latency_ms":{}.{},"trace":"{:016x}"}}"#,
            r % 60,
            (r >> 6) % 60,
            (r >> 12) % 1000,
            LEVELS[(r >> 22) % 4],
            (r >> 24) % 32,
            SERVICES[(r >> 29) % 4],
            MESSAGES[(r >> 31) % 4],
            [200, 200, 201, 404, 500][(r >> 33) % 5],
            (r >> 36) % 900,
            (r >> 46) % 10,
            rng,
        )
        .expect("writing to a Vec cannot fail");
    }
    out
}

/// How many of `lines` `valid` accepts.
fn count_valid(lines: &[&[u8]], mut valid: impl FnMut(&[u8]) -> bool) -> usize {
    lines.iter().filter(|line| valid(line)).count()
}

fn bench_codec(c: &mut Criterion) {
    let data = corpus(if measuring() { 100_000 } else { 2_000 });
    let lines: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let n = lines.len();

    let mut json = Decoder::new(Codec::Json);
    let mut string = Decoder::new(Codec::String);
    assert_eq!(count_valid(&lines, |l| json.check(l).is_ok()), n);
    assert_eq!(count_valid(&lines, |l| string.check(l).is_ok()), n);
    let serde_value = |l: &[u8]| serde_json::from_slice::<serde_json::Value>(l).is_ok();
    let serde_ignored = |l: &[u8]| serde_json::from_slice::<IgnoredAny>(l).is_ok();
    // IgnoredAny skips strings without checking their UTF-8; this adds the check.
    let serde_ignored_utf8 = |l: &[u8]| std::str::from_utf8(l).is_ok() && serde_ignored(l);
    assert_eq!(count_valid(&lines, serde_value), n);
    assert_eq!(count_valid(&lines, serde_ignored), n);
    assert_eq!(count_valid(&lines, serde_ignored_utf8), n);
    let allocations = allocations_in(|| {
        count_valid(&lines, |l| json.check(l).is_ok());
    });
    assert_eq!(allocations, 0, "a warmed-up json Decoder allocated");

    let mut group = c.benchmark_group("codec");
    group
        .throughput(Throughput::Elements(n as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("decoder_json_simd", |b| {
        b.iter(|| count_valid(black_box(&lines), |l| json.check(l).is_ok()))
    });
    group.bench_function("serde_json_value", |b| {
        b.iter(|| count_valid(black_box(&lines), serde_value))
    });
    group.bench_function("serde_json_ignored_any", |b| {
        b.iter(|| count_valid(black_box(&lines), serde_ignored))
    });
    group.bench_function("serde_json_ignored_any_plus_utf8", |b| {
        b.iter(|| count_valid(black_box(&lines), serde_ignored_utf8))
    });
    group.bench_function("decoder_string_utf8", |b| {
        b.iter(|| count_valid(black_box(&lines), |l| string.check(l).is_ok()))
    });
    group.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
