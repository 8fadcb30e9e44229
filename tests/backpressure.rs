//! A slow sink: with when_full = "block" the gateway stops reading and writers block,
//! memory stays bounded and nothing is lost; with "drop_newest" it drops, and counts it.
//! The blocking case runs over a UNIX socket (`backpressure_<mode>`) and over TCP
//! (`backpressure_tcp_<mode>`).

mod util;

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use util::*;

/// Events of ~1 KiB: 4 producers × 73,000 ≈ 300 MB in all.
const BIG_PAD: (u64, u64) = (900, 1100);
const PRODUCERS: u64 = 4;
const PER_PRODUCER: u64 = 73_000;
const RSS_LIMIT_KIB: u64 = 200 * 1024;

io_modes!(backpressure => backpressure(Transport::Unix));

io_modes!(backpressure_tcp => backpressure(Transport::Tcp));

fn backpressure(mode: &str, transport: Transport) {
    let config = Config::new()
        .io_mode(mode)
        .workers(2)
        .source(transport.source())
        .sink(Sink::file("out.fifo"))
        .set("channel.capacity", 64)
        .set("channel.when_full", "block");
    let launch = Gateway::configure(&config.render());
    // The sink is a FIFO that the test reads — or, for now, does not.
    let mut fifo = Fifo::create(&launch.path("out.fifo"));
    let mut gw = launch.start();
    let target = gw.target();
    let mode = format!("{mode}/{transport:?}"); // for the messages below

    let pad = format!("{}:{}", BIG_PAD.0, BIG_PAD.1);
    let producers: Vec<Client> = (0..PRODUCERS)
        .map(|c| {
            let args = [
                "--conn",
                &c.to_string(),
                "--count",
                &PER_PRODUCER.to_string(),
                "--pad",
                &pad,
                "--progress",
                "--seed",
                &c.to_string(),
            ];
            Client::produce(&target, &args)
        })
        .collect();
    let total_bytes: u64 = (0..PRODUCERS)
        .flat_map(|c| (0..PER_PRODUCER).map(move |i| event(c, i, BIG_PAD).len() as u64 + 1))
        .sum();
    let sent = || producers.iter().map(|p| p.progress()).sum::<u64>();

    // Phase 1: the reader is paused. The gateway must stop reading, and writers stall.
    let mut max_rss = 0;
    let start = Instant::now();
    let mut last = (0, Instant::now());
    let stalled_at = loop {
        max_rss = max_rss.max(gw.rss_kib());
        let now = sent();
        if now != last.0 {
            last = (now, Instant::now());
        } else if now > 0 && last.1.elapsed() > Duration::from_secs(3) {
            break now;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "writers never stalled with the sink paused: {now} of {total_bytes} bytes sent, gateway RSS {max_rss} KiB"
        );
        // Time is what is measured here: "stalled" is 3 s without progress, sampled every 100 ms.
        thread::sleep(Duration::from_millis(100));
    };
    // What the writers got through is the gateway's buffers plus the kernel's: over TCP, each
    // connection's send and (autotuned) receive buffers, up to tcp_wmem/tcp_rmem's maximum.
    let kernel_allowance = match transport {
        Transport::Unix => 0,
        Transport::Tcp => PRODUCERS * (tcp_mem_max("tcp_rmem") + tcp_mem_max("tcp_wmem")),
    };
    assert!(
        stalled_at < (100 << 20) + kernel_allowance,
        "with the sink paused, writers got {stalled_at} of {total_bytes} bytes through \
         (kernel TCP buffers allowed for: {kernel_allowance}): the gateway buffers without bound"
    );
    // Time passing is the test: a second more, and the writers are still where they stalled.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sent(),
        stalled_at,
        "writers must stay blocked while the sink is paused"
    );
    assert!(gw.is_running());
    max_rss = max_rss.max(gw.rss_kib());
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "gateway RSS {max_rss} KiB with the sink paused (limit {RSS_LIMIT_KIB} KiB)"
    );

    eprintln!("{mode}: sink paused; writers stalled after {stalled_at} of {total_bytes} bytes; gateway RSS {max_rss} KiB");

    // Phase 2: read everything; every event arrives exactly once, in per-connection order.
    let mut check = SeqChecker::new(BIG_PAD);
    let mut reads = 0u64;
    let mut rest = fifo.read_checked(
        &mut check,
        PRODUCERS * PER_PRODUCER,
        Duration::from_secs(60),
        || {
            reads += 1;
            if reads.is_multiple_of(64) {
                max_rss = max_rss.max(gw.rss_kib());
            }
        },
        || format!("sent {} bytes", sent()),
    );
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "gateway RSS reached {max_rss} KiB (limit {RSS_LIMIT_KIB} KiB)"
    );
    for p in producers {
        p.finish();
    }
    let summary = gw.stop();

    // Nothing more after the last expected event: no duplicates at the end.
    drop(fifo.keeper.take());
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = fifo.read_timeout(&mut buf, Duration::from_secs(5)).unwrap();
        if n == 0 {
            break;
        }
        rest.extend_from_slice(&buf[..n]);
    }
    assert!(
        rest.is_empty(),
        "extra output after all events: {}",
        show(&rest)
    );
    for c in 0..PRODUCERS {
        assert_eq!(check.counts()[&c], PER_PRODUCER);
    }
    eprintln!(
        "{mode}: all {} events read; max gateway RSS {max_rss} KiB",
        check.lines
    );
    let n = PRODUCERS * PER_PRODUCER;
    assert_eq!(
        summary,
        Summary {
            events_in: n,
            events_out: n,
            dead_lettered: 0,
            dropped: 0
        }
    );
}

// ---------------------------------------------------------------------------------

io_modes!(drop_newest_counts => drop_newest_counts());

fn drop_newest_counts(mode: &str) {
    let config = Config::new()
        .io_mode(mode)
        .workers(2)
        .source(Source::unix("in"))
        .sink(Sink::stdout())
        .set("channel.capacity", 2)
        .set("channel.when_full", "drop_newest");
    let mut gw = Gateway::configure(&config.render()).stdout_piped().start();
    // Nobody reads the gateway's stdout yet: the sink blocks once the pipe is full.
    let stdout = gw.take_stdout();

    let producers: Vec<Client> = (0..4)
        .map(|c| {
            Client::produce(
                gw.socket(),
                &[
                    "--conn",
                    &c.to_string(),
                    "--count",
                    "50000",
                    "--seed",
                    &c.to_string(),
                ],
            )
        })
        .collect();
    // A fifth writer mixes bad lines in: their dead-letter records are dropped with their
    // batches too, and must not be counted as dropped events.
    let mixed = gw.path("mixed.ndjson");
    let mut payload = Vec::new();
    for k in 0..20_000 {
        payload.extend_from_slice(format!("{{\"x\":{k}}}\nbad {k}\n").as_bytes());
    }
    std::fs::write(&mixed, payload).unwrap();
    let mixer = Client::produce(gw.socket(), &["--file", mixed.to_str().unwrap()]);
    // With drop_newest the gateway keeps reading, so writers finish although the sink is stuck.
    for p in producers {
        p.finish();
    }
    mixer.finish();
    let reader = LineReader::spawn(stdout);
    let summary = gw.stop();
    let lines = reader.finish();

    // What arrived is intact, in per-connection order, without duplicates (gaps allowed).
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for line in lines.iter().filter(|l| !l.starts_with(b"{\"x\":")) {
        let (c, i) = parse_ci(line).unwrap_or_else(|| panic!("not an event: {}", show(line)));
        assert_eq!(
            line.as_slice(),
            event(c, i, PAD).as_slice(),
            "event c={c} i={i} corrupted"
        );
        if let Some(prev) = last.insert(c, i) {
            assert!(
                i > prev,
                "connection {c}: event {i} after {prev} (reordered or duplicated)"
            );
        }
    }
    assert_eq!(
        summary.events_in, 220_000,
        "every valid event read counts as in: {summary:?}"
    );
    assert_eq!(summary.dead_lettered, 20_000, "{summary:?}");
    assert_eq!(
        summary.events_in,
        summary.events_out + summary.dropped,
        "{summary:?}"
    );
    assert_eq!(
        summary.events_out,
        lines.len() as u64,
        "events_out vs lines on stdout: {summary:?}"
    );
    assert!(
        summary.dropped > 0,
        "a stuck sink with drop_newest must drop: {summary:?}"
    );
    eprintln!("{mode}: {summary:?}");
}
