//! In-process: the per-batch delivery report. A connection's batches go through the real
//! ingest (framing, codec, batching) and the real channel; each is told to its connection's
//! delivery target once the last sink holding it lets go, naming its events by their place on
//! the connection, or when the channel drops it.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use ringway::channel;
use ringway::config::{ChannelConfig, WhenFull};
use ringway::event::{ConnMeta, Delivered, DeliveryTarget, SourceMeta};
use ringway::framing::FramingConfig;
use ringway::ingest::Feeder;
use ringway::sink::Delivery;
use ringway::telemetry::Counters;

#[derive(Debug, Default)]
struct Reports(Mutex<Vec<(u64, u64, Delivered)>>);

impl DeliveryTarget for Reports {
    fn delivered(&self, first_event: u64, events: u64, outcome: Delivered) {
        self.0.lock().unwrap().push((first_event, events, outcome));
    }
}

fn channel_cfg(capacity: usize, batch_events: usize, when_full: WhenFull) -> ChannelConfig {
    ChannelConfig {
        capacity: NonZeroUsize::new(capacity).unwrap(),
        when_full,
        batch_max_events: NonZeroUsize::new(batch_events).unwrap(),
        batch_max_bytes: NonZeroUsize::new(1 << 20).unwrap(),
    }
}

/// A feeder for one connection whose reports go to `reports`.
fn feeder(cfg: &ChannelConfig, reports: &Arc<Reports>) -> (Feeder, Vec<channel::Receiver>) {
    let counters = Arc::new(Counters::default());
    let (tx, rx) = channel::bounded(1, cfg.capacity.get(), cfg.when_full, Arc::clone(&counters));
    let mut conn = ConnMeta::new(Arc::new(SourceMeta::plain("in", 0)), 1);
    conn.on_delivery = Some(Arc::clone(reports) as Arc<dyn DeliveryTarget>);
    let f = Feeder::new(
        Arc::new(conn),
        FramingConfig::default(),
        cfg.clone(),
        counters,
        tx,
    );
    (f, rx)
}

#[test]
fn each_batch_is_reported_once_when_the_last_sink_lets_go() {
    let reports = Arc::new(Reports::default());
    let cfg = channel_cfg(16, 3, WhenFull::Block);
    let (mut f, mut rx) = feeder(&cfg, &reports);
    // 7 events and a bad line, read one line at a time: a batch goes once it holds 3 events;
    // the bad line is dead-lettered.
    for line in [
        "{\"a\":1}\n{\"a\":",
        "2}\n",
        "not json\n",
        "{\"a\":3}\n",
        "{\"a\":4}\n",
        "{\"a\":5}\n",
        "{\"a\":6}\n",
        "{\"a\":7}",
    ] {
        assert!(f.feed(line.as_bytes()));
    }
    f.finish();
    let counters = Arc::new(Counters::default());
    let mut held = Vec::new();
    while let Ok(b) = rx[0].try_recv() {
        let d = Delivery::new(b, &counters);
        // Two sinks take the stream: each holds the batch.
        held.push((Arc::clone(&d), d));
    }
    assert_eq!(held.len(), 3, "7 events in batches of 3, 3 and 1");
    // The first sink is done with every batch: nothing is reported yet.
    let second: Vec<_> = held.into_iter().map(|(a, b)| (drop(a), b).1).collect();
    assert!(reports.0.lock().unwrap().is_empty());
    // The second lets go of them last batch first: each is reported then, once.
    for d in second.into_iter().rev() {
        drop(d);
    }
    let mut got = reports.0.lock().unwrap().clone();
    got.sort_by_key(|r| r.0);
    let mut next = 0;
    for &(first, events, outcome) in &got {
        assert_eq!(outcome, Delivered::Written);
        assert_eq!(
            first, next,
            "batches cover the connection's events without gap: {got:?}"
        );
        next += events;
    }
    assert_eq!(next, 7, "{got:?}");
}

#[test]
fn a_batch_the_channel_drops_is_reported_dropped() {
    let reports = Arc::new(Reports::default());
    let cfg = channel_cfg(1, 2, WhenFull::DropNewest);
    let (mut f, _rx) = feeder(&cfg, &reports);
    // Nobody reads the lane: the first batch fills it, the next ones are dropped.
    for i in 0..6 {
        assert!(f.feed(format!("{{\"n\":{i}}}\n").as_bytes()));
    }
    f.finish();
    let got = reports.0.lock().unwrap().clone();
    assert!(!got.is_empty(), "dropped batches are reported");
    assert!(got.iter().all(|r| r.2 == Delivered::Dropped), "{got:?}");
    assert_eq!(
        got[0].0, 2,
        "the first batch (events 0..2) sits in the lane: {got:?}"
    );
}

/// A batch that a bad line opened names its first event right, and a batch a sink gave up on
/// is reported lost.
#[test]
fn a_batch_opened_by_a_bad_line_and_a_lost_batch_are_reported() {
    let reports = Arc::new(Reports::default());
    let cfg = channel_cfg(16, 2, WhenFull::Block);
    let (mut f, mut rx) = feeder(&cfg, &reports);
    // Events 0 and 1 fill the first batch; the bad line opens the second, then event 2.
    for line in ["{\"a\":1}\n", "{\"a\":2}\n", "bad\n", "{\"a\":3}\n"] {
        assert!(f.feed(line.as_bytes()));
    }
    f.finish();
    let counters = Arc::new(Counters::default());
    let first = Delivery::new(rx[0].try_recv().unwrap(), &counters);
    let second = Delivery::new(rx[0].try_recv().unwrap(), &counters);
    assert!(rx[0].try_recv().is_err(), "two batches");
    assert_eq!(
        second.batch.dead.len(),
        1,
        "the bad line is in the second batch"
    );
    second.fail(); // the sink that had it gave up
    drop(second);
    drop(first);
    let got = reports.0.lock().unwrap().clone();
    assert_eq!(
        got,
        [(2, 1, Delivered::Lost), (0, 2, Delivered::Written)],
        "in the order they were let go"
    );
}
