//! What the benches share: a deterministic generator for their synthetic NDJSON, and the
//! metadata of the one fake connection their batches come from.

use std::sync::Arc;

use ringway::event::{Codec, ConnMeta, SourceKind, SourceMeta};

/// xorshift64: the same corpus on every run, without a dependency.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The metadata of connection `id` of a json source named "bench".
#[allow(dead_code)] // not every bench builds batches
pub fn conn_meta(id: u64) -> Arc<ConnMeta> {
    let source = Arc::new(SourceMeta {
        name: "bench".into(),
        kind: SourceKind::UnixSocketServer,
        path: "/run/ringway-bench.sock".into(),
        codec: Codec::Json,
        latency_field: None,
        stream: 0,
        counters: Default::default(),
        pause: Default::default(),
    });
    Arc::new(ConnMeta::new(source, id))
}
