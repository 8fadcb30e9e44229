//! Ingest pipeline without sockets: 200k deterministic log-like NDJSON lines
//! (150–250 bytes, varied fields, one line in 1000 invalid in one of four
//! ways) pushed, in 64 KiB pieces as if received, through
//! - `gateway_ingest`: the real per-connection ingest (`source::conn::Conn`
//!   with the default framing and channel settings: batches of at most 1024
//!   events or 256 KiB) sending each full batch with `Sender::send_blocking`
//!   over `channel::bounded` (256 slots, `block`) to a null-sink thread that
//!   counts events and dead letters;
//! - `gateway_ingest_no_channel`: the same ingest, its batches counted and
//!   dropped on the ingest thread (what the channel and a second thread cost);
//! - `parse_limit`: one loop of `memchr` line splitting and
//!   `codec::Decoder::check` over the whole buffer, nothing copied or sent;
//! - `naive`: a 64 KiB `BufReader` split by `BufRead::split` (a fresh `Vec`
//!   per line) → `String` → `serde_json::Value` → one `tokio::sync::mpsc` send
//!   (256 slots) per line: the `String` of an event, the bytes of a bad line.
//!
//! Before timing, every contender must count the same valid events and
//! invalid lines as the corpus holds, and the gateway's counters must agree.
//!
//! `cargo bench --bench pipeline` measures (throughput in events and bytes);
//! `cargo test --benches` runs each routine once on 5k lines so that it stays
//! fast in debug builds.

use std::hint::black_box;
use std::io::{BufRead as _, BufReader, Write as _};
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

mod common;

use common::{conn_meta, XorShift};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use memchr::{memchr_iter, memmem};
use ringway::channel::bounded;
use ringway::codec::{Codec, Decoder};
use ringway::config::{ChannelConfig, WhenFull};
use ringway::event::Batch;
use ringway::framing::FramingConfig;
use ringway::ingest::{Conn, IngestCtx};
use ringway::telemetry::Counters;

/// The allocator the gateway ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The size of each piece fed, as one receive would hand it over.
const CHUNK: usize = 64 * 1024;
/// One line in this many is made invalid.
const INVALID_EVERY: usize = 1000;

/// What a contender saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    events: u64,
    invalid: u64,
}

/// `cargo bench` passes `--bench`; `cargo test --benches` does not.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// `lines` deterministic NDJSON log lines, newline-terminated, and what they
/// hold. Line `k * INVALID_EVERY - 1` is broken: cut in half, given a
/// trailing comma, given a byte that is not UTF-8, or replaced by plain text.
fn corpus(lines: usize) -> (Vec<u8>, Counts) {
    const LEVELS: [&str; 6] = ["debug", "info", "info", "info", "warn", "error"];
    const SERVICES: [&str; 5] = ["checkout", "auth", "search", "billing", "edge"];
    const METHODS: [&str; 4] = ["GET", "GET", "POST", "DELETE"];
    const PATHS: [&str; 4] = ["/v1/items/", "/v1/users/", "/v2/orders/", "/cart?id="];
    const MESSAGES: [&str; 6] = [
        "ok",
        "request completed",
        r#"user \"alice\" logged in"#,
        "cache miss, fetching upstream",
        r#"retrying C:\\tmp\\spool"#,
        "Zeitüberschreitung \u{2014} retry \u{1F6A6}",
    ];
    const EXTRAS: [&str; 4] = [
        r#","user":{"id":48213,"tier":"gold","beta":true}"#,
        r#","tags":["canary","az-2"],"retries":1"#,
        r#","error":null,"cached":false"#,
        "",
    ];
    let mut out = Vec::with_capacity(lines * 210);
    let mut gen = XorShift(0x9E37_79B9_7F4A_7C15);
    for i in 0..lines {
        let rng = gen.next();
        let r = rng as usize;
        let start = out.len();
        write!(
            out,
            r#"{{"ts":{},"level":"{}","service":"{}","method":"{}","path":"{}{}","status":{},"dur_ms":{}.{:03}{},"msg":"{}","trace":"{rng:016x}"}}"#,
            1_714_560_000_000 + i as u64 * 7 + (rng % 7),
            LEVELS[r % 6],
            SERVICES[(r >> 3) % 5],
            METHODS[(r >> 12) % 4],
            PATHS[(r >> 14) % 4],
            (r >> 16) % 1_000_000,
            [200, 200, 201, 204, 404, 500][(r >> 36) % 6],
            (r >> 39) % 900,
            (r >> 49) % 1000,
            EXTRAS[(r >> 59) % 4],
            MESSAGES[(r >> 42) % 6],
        )
        .expect("writing to a Vec cannot fail");
        if i % INVALID_EVERY == INVALID_EVERY - 1 {
            break_line(&mut out, start, i / INVALID_EVERY);
        }
        out.push(b'\n');
    }
    let invalid = (lines / INVALID_EVERY) as u64;
    let events = lines as u64 - invalid;
    (out, Counts { events, invalid })
}

/// Makes the last line of `out` (starting at `start`) invalid, in way `k % 4`.
fn break_line(out: &mut Vec<u8>, start: usize, k: usize) {
    match k % 4 {
        0 => out.truncate(start + (out.len() - start) / 2),
        1 => {
            out.pop();
            out.extend_from_slice(b",}");
        }
        2 => {
            let msg = memmem::find(&out[start..], br#""msg":""#).expect("every line has a msg");
            out.insert(start + msg + 7, 0xFF);
        }
        _ => {
            out.truncate(start);
            out.extend_from_slice(b"GET /healthz 200 0.4ms - plain text, not JSON");
        }
    }
}

/// The gateway's defaults.
fn channel_config() -> ChannelConfig {
    let nz = |n| NonZeroUsize::new(n).expect("not zero");
    ChannelConfig {
        capacity: nz(256),
        when_full: WhenFull::Block,
        batch_max_events: nz(1024),
        batch_max_bytes: nz(256 * 1024),
    }
}

fn count(counts: &mut Counts, b: &Batch) {
    counts.events += b.events() as u64;
    counts.invalid += b.dead.len() as u64;
}

/// One connection's ingest of `data`, as the io_uring loop drives it: feed
/// each piece, hand over the batch when `feed` says it is full, and the last
/// one after `finish`.
fn ingest(ctx: &IngestCtx<'_>, dec: &mut Decoder, data: &[u8], mut emit: impl FnMut(Batch)) {
    let mut conn = Conn::new(conn_meta(0));
    for piece in data.chunks(CHUNK) {
        if conn.feed(ctx, dec, piece) {
            emit(conn.take_batch(ctx.counters).expect("a full batch"));
        }
    }
    conn.finish(ctx, dec);
    if let Some(b) = conn.take_batch(ctx.counters) {
        emit(b);
    }
}

/// `ingest` → `channel::bounded` → a null-sink thread.
fn gateway(ctx: &IngestCtx<'_>, dec: &mut Decoder, data: &[u8]) -> Counts {
    let counters = Arc::new(Counters::default());
    let (tx, rx) = bounded(
        1,
        ctx.channel.capacity.get(),
        ctx.channel.when_full,
        counters,
    );
    let mut rx = rx.into_iter().next().expect("one lane");
    thread::scope(|s| {
        let sink = s.spawn(move || {
            let mut counts = Counts::default();
            while let Some(b) = rx.blocking_recv() {
                count(&mut counts, &b);
            }
            counts
        });
        ingest(ctx, dec, data, |b| {
            assert!(tx.send_blocking(b).is_ok(), "sink gone");
        });
        drop(tx);
        sink.join().expect("sink panicked")
    })
}

fn gateway_no_channel(ctx: &IngestCtx<'_>, dec: &mut Decoder, data: &[u8]) -> Counts {
    let mut counts = Counts::default();
    ingest(ctx, dec, data, |b| count(&mut counts, &b));
    counts
}

fn parse_limit(dec: &mut Decoder, data: &[u8]) -> Counts {
    let mut counts = Counts::default();
    let mut start = 0;
    let mut check = |line: &[u8]| {
        if !line.is_empty() {
            match dec.check(line) {
                Ok(()) => counts.events += 1,
                Err(_) => counts.invalid += 1,
            }
        }
    };
    for end in memchr_iter(b'\n', data) {
        check(&data[start..end]);
        start = end + 1;
    }
    check(&data[start..]);
    counts
}

fn naive(data: &[u8]) -> Counts {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<String, Vec<u8>>>(256);
    thread::scope(|s| {
        let sink = s.spawn(move || {
            let mut counts = Counts::default();
            while let Some(line) = rx.blocking_recv() {
                match black_box(line) {
                    Ok(_) => counts.events += 1,
                    Err(_) => counts.invalid += 1,
                }
            }
            counts
        });
        for bytes in BufReader::with_capacity(CHUNK, data).split(b'\n') {
            let bytes = bytes.expect("reading a slice cannot fail");
            if bytes.is_empty() {
                continue;
            }
            let line = match String::from_utf8(bytes) {
                Ok(s) => match serde_json::from_str::<serde_json::Value>(&s) {
                    Ok(_) => Ok(s),
                    Err(_) => Err(s.into_bytes()),
                },
                Err(e) => Err(e.into_bytes()),
            };
            assert!(tx.blocking_send(line).is_ok(), "sink gone");
        }
        drop(tx);
        sink.join().expect("sink panicked")
    })
}

fn bench_pipeline(c: &mut Criterion) {
    let (data, want) = corpus(if measuring() { 200_000 } else { 5_000 });
    let (framing, counters) = (FramingConfig::default(), Counters::default());
    let channel = channel_config();
    let ctx = IngestCtx {
        framing: &framing,
        channel: &channel,
        counters: &counters,
        latency_field: None,
    };
    let mut dec = Decoder::new(Codec::Json);

    assert_eq!(gateway(&ctx, &mut dec, &data), want, "gateway_ingest");
    assert_eq!(counters.events_in.load(Relaxed), want.events);
    assert_eq!(counters.dead_lettered.load(Relaxed), want.invalid);
    assert_eq!(counters.bytes_in.load(Relaxed), data.len() as u64);
    assert_eq!(gateway_no_channel(&ctx, &mut dec, &data), want);
    assert_eq!(parse_limit(&mut dec, &data), want, "parse_limit");
    assert_eq!(naive(&data), want, "naive");

    let mut group = c.benchmark_group("pipeline");
    group
        .throughput(Throughput::ElementsAndBytes {
            elements: want.events,
            bytes: data.len() as u64,
        })
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("gateway_ingest", |b| {
        b.iter(|| gateway(&ctx, &mut dec, black_box(&data)))
    });
    group.bench_function("gateway_ingest_no_channel", |b| {
        b.iter(|| gateway_no_channel(&ctx, &mut dec, black_box(&data)))
    });
    group.bench_function("parse_limit", |b| {
        b.iter(|| parse_limit(&mut dec, black_box(&data)))
    });
    group.bench_function("naive", |b| b.iter(|| naive(black_box(&data))));
    group.finish();
}

criterion_group!(benches, bench_pipeline);
criterion_main!(benches);
