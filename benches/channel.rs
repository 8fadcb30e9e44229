//! Channel cost per event against per batch: the real `channel::bounded`
//! (`when_full = "block"`, the default 256 slots) carrying one `Batch` per
//! event, batches of 64 events and batches of 256 events, against the naive
//! reference of a tokio MPSR example: a `tokio::sync::mpsc` channel of the
//! same 256 slots carrying one `Vec<u8>` per event (one allocation and one send
//! per event). Events are ~150–250-byte NDJSON lines, copied into the batch
//! (`Batch::push`) or into their `Vec` by 1 or 2 producer threads
//! (`Sender::send_blocking` / `blocking_send`); one consumer thread drains the
//! receiver with `blocking_recv`, counts events and bytes, and drops what it
//! got. Every iteration starts its threads afresh (a few tens of µs against
//! hundreds of ms). On a 2-core machine, 2 producers and the consumer share
//! 2 cores.
//!
//! Before timing, every contender and producer count must deliver exactly
//! the events and bytes sent.
//!
//! `cargo bench --bench channel` measures 500k events per iteration;
//! `cargo test --benches` runs each routine once on 10k events so that it
//! stays fast in debug builds.

use std::hint::black_box;
use std::io::Write as _;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

mod common;

use common::{conn_meta, XorShift};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringway::channel::bounded;
use ringway::config::WhenFull;
use ringway::event::Batch;
use ringway::telemetry::Counters;

/// The allocator the gateway ships with.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The gateway's default `[channel] capacity`, used for every contender.
const CAPACITY: usize = 256;

/// `cargo bench` passes `--bench`; `cargo test --benches` does not.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test")
}

/// 1024 deterministic NDJSON events of 150–250 bytes (without `\n`), cycled
/// through by the producers.
fn events() -> Vec<Vec<u8>> {
    const LEVELS: [&str; 3] = ["info", "warn", "error"];
    let mut gen = XorShift(0x2545_F491_4F6C_DD1D);
    (0..1024)
        .map(|i| {
            let rng = gen.next();
            let mut e = Vec::with_capacity(256);
            write!(
                e,
                r#"{{"ts":{},"level":"{}","svc":"api-{}","status":{},"trace":"{:016x}","msg":""#,
                1_714_560_000_000_u64 + i,
                LEVELS[(rng % 3) as usize],
                (rng >> 8) % 50,
                [200, 201, 404, 500][((rng >> 16) % 4) as usize],
                rng,
            )
            .expect("writing to a Vec cannot fail");
            let target = 150 + (rng >> 24) as usize % 101;
            while e.len() + 2 < target {
                e.push(b"abcdefghij klmnopqrstuvwxyz"[e.len() % 27]);
            }
            e.extend_from_slice(br#""}"#);
            e
        })
        .collect()
}

/// What the consumer received: (events, event bytes).
type Received = (u64, u64);

/// The events producer `p` of `producers` sends: `total` split evenly, the
/// remainder to producer 0, each starting at a different place in `events`.
fn share(
    events: &[Vec<u8>],
    total: usize,
    producers: usize,
    p: usize,
) -> impl Iterator<Item = &[u8]> {
    let n = total / producers + if p == 0 { total % producers } else { 0 };
    (0..n).map(move |i| events[(i + p * 331) % events.len()].as_slice())
}

/// The bytes `total` events add up to, whatever the producer count.
fn expected(events: &[Vec<u8>], total: usize, producers: usize) -> Received {
    let bytes = (0..producers)
        .flat_map(|p| share(events, total, producers, p))
        .map(|e| e.len() as u64)
        .sum();
    (total as u64, bytes)
}

/// `ringway::channel`, `per_batch` events per `Batch`.
fn batches(events: &[Vec<u8>], total: usize, producers: usize, per_batch: usize) -> Received {
    let (tx, rx) = bounded(1, CAPACITY, WhenFull::Block, Arc::new(Counters::default()));
    let mut rx = rx.into_iter().next().expect("one lane");
    let hint = per_batch * 256;
    thread::scope(|s| {
        let consumer = s.spawn(move || {
            let (mut n, mut bytes) = (0, 0);
            while let Some(b) = rx.blocking_recv() {
                n += b.events() as u64;
                bytes += (b.data.len() - b.events()) as u64;
            }
            (n, bytes)
        });
        for p in 0..producers {
            let tx = tx.clone();
            s.spawn(move || {
                let meta = conn_meta(p as u64);
                let mut open: Option<Batch> = None;
                for e in share(events, total, producers, p) {
                    let b = open.get_or_insert_with(|| Batch::new(Arc::clone(&meta), hint));
                    b.push(e);
                    if b.events() == per_batch {
                        let full = open.take().expect("just pushed to");
                        assert!(tx.send_blocking(full).is_ok(), "consumer gone");
                    }
                }
                if let Some(b) = open {
                    assert!(tx.send_blocking(b).is_ok(), "consumer gone");
                }
            });
        }
        drop(tx);
        consumer.join().expect("consumer panicked")
    })
}

/// The naive reference: `tokio::sync::mpsc` of one `Vec<u8>` per event.
fn naive(events: &[Vec<u8>], total: usize, producers: usize) -> Received {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(CAPACITY);
    thread::scope(|s| {
        let consumer = s.spawn(move || {
            let (mut n, mut bytes) = (0, 0);
            while let Some(e) = rx.blocking_recv() {
                n += 1;
                bytes += e.len() as u64;
            }
            (n, bytes)
        });
        for p in 0..producers {
            let tx = tx.clone();
            s.spawn(move || {
                for e in share(events, total, producers, p) {
                    assert!(tx.blocking_send(e.to_vec()).is_ok(), "consumer gone");
                }
            });
        }
        drop(tx);
        consumer.join().expect("consumer panicked")
    })
}

/// The contenders, by name; `0` events per batch is the naive reference.
const CONTENDERS: [(&str, usize); 4] = [
    ("batch_1", 1),
    ("batch_64", 64),
    ("batch_256", 256),
    ("tokio_mpsc_vec_per_event", 0),
];

fn run(events: &[Vec<u8>], total: usize, producers: usize, per_batch: usize) -> Received {
    match per_batch {
        0 => naive(events, total, producers),
        n => batches(events, total, producers, n),
    }
}

fn bench_channel(c: &mut Criterion) {
    let events = events();
    let total = if measuring() { 500_000 } else { 10_000 };
    for producers in [1, 2] {
        let want = expected(&events, total, producers);
        for (name, per_batch) in CONTENDERS {
            let got = run(&events, total, producers, per_batch);
            assert_eq!(got, want, "{name} with {producers} producer(s)");
        }
    }

    let mut group = c.benchmark_group("channel");
    group
        .throughput(Throughput::Elements(total as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for producers in [1, 2] {
        for (name, per_batch) in CONTENDERS {
            let id = BenchmarkId::new(name, format!("{producers}_producers"));
            group.bench_function(id, |b| {
                b.iter(|| run(black_box(&events), total, producers, per_batch))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_channel);
criterion_main!(benches);
