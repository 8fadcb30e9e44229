//! Framing throughput: `Framer` (fed 64 KiB chunks, as a socket would, and
//! fed the whole buffer at once) against the reference `split_naive` and a
//! bare `slice::split` iterator, over ~64 MiB of ~170-byte NDJSON log lines.
//!
//! Before timing, every contender must yield the expected line count, and a
//! warmed-up `Framer` must frame the whole corpus without one allocation.
//!
//! `cargo bench --bench framing` measures; `cargo test --benches` runs each
//! routine once on a 1 MiB corpus so that it stays fast in debug builds.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringway::framing::{split_naive, Frame, Framer, FramingConfig};

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

const CHUNK: usize = 64 * 1024;

/// `cargo bench` passes `--bench`; `cargo test --benches` does not.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// Deterministic NDJSON log lines (~170 bytes each, some with escapes) until
/// the buffer holds at least `bytes`; returns the buffer and its line count.
fn corpus(bytes: usize) -> (Vec<u8>, u64) {
    const LEVELS: [&str; 4] = ["debug", "info", "info", "warn"];
    const SERVICES: [&str; 4] = ["checkout", "auth", "search", "inventory"];
    const MESSAGES: [&str; 4] = [
        "request completed",
        r#"user \"alice\" logged in"#,
        "cache miss, fetching upstream",
        r#"retrying C:\\tmp\\spool"#,
    ];
    let mut out = Vec::with_capacity(bytes + 256);
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut lines = 0;
    while out.len() < bytes {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
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
        lines += 1;
    }
    (out, lines)
}

/// Frames `data` fed in `chunk`-byte pieces; returns (lines, line bytes).
fn framer(framer: &mut Framer, cfg: &FramingConfig, data: &[u8], chunk: usize) -> (u64, usize) {
    let (mut lines, mut bytes) = (0, 0);
    let mut out = |frame: Frame<'_>| {
        if let Frame::Line { bytes: line, .. } = frame {
            lines += 1;
            bytes += line.len();
        }
    };
    for piece in data.chunks(chunk) {
        framer.feed(cfg, piece, &mut out);
    }
    framer.finish(cfg, &mut out);
    (lines, bytes)
}

fn slice_split(data: &[u8]) -> (u64, usize) {
    let (mut lines, mut bytes) = (0, 0);
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        lines += 1;
        bytes += line.len();
    }
    (lines, bytes)
}

fn bench_framing(c: &mut Criterion) {
    let (data, lines) = corpus(if measuring() { 64 << 20 } else { 1 << 20 });
    let cfg = FramingConfig::default();
    let line_bytes = data.len() - lines as usize;

    let expected = (lines, line_bytes);
    assert_eq!(framer(&mut Framer::new(), &cfg, &data, CHUNK), expected);
    assert_eq!(
        framer(&mut Framer::new(), &cfg, &data, data.len()),
        expected
    );
    assert_eq!(slice_split(&data), expected);
    assert_eq!(split_naive(&cfg, &data, true).len() as u64, lines);
    let mut warm = Framer::new();
    framer(&mut warm, &cfg, &data, CHUNK);
    let allocations = allocations_in(|| {
        framer(&mut warm, &cfg, &data, CHUNK);
    });
    assert_eq!(allocations, 0, "a warmed-up Framer allocated");

    let mut group = c.benchmark_group("framing");
    group
        .throughput(Throughput::Bytes(data.len() as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("framer_64KiB_feeds", |b| {
        b.iter(|| framer(&mut Framer::new(), &cfg, black_box(&data), CHUNK))
    });
    group.bench_function("framer_one_feed", |b| {
        b.iter(|| framer(&mut Framer::new(), &cfg, black_box(&data), data.len()))
    });
    group.bench_function("slice_split", |b| b.iter(|| slice_split(black_box(&data))));
    group.bench_function("split_naive", |b| {
        b.iter(|| split_naive(&cfg, black_box(&data), true).len())
    });
    group.finish();
}

criterion_group!(benches, bench_framing);
criterion_main!(benches);
