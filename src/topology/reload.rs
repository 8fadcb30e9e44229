//! A reload: the diff from the running config, applied live; or refused, changing nothing.
//!
//! Live:
//! - sources added (bound first: a taken path or port refuses the reload) and removed (no new
//!   connections; its connections are read to their end, so what their clients sent is
//!   delivered, then they see EOF). Sources are matched by name; the connections of the others
//!   are not touched;
//! - which streams each file/stdout/null/reply sink takes (`inputs`, e.g. a new source);
//! - a file/stdout/null sink's target (same name and format);
//! - the channel's `when_full`.
//!
//! The sink thread switches between two batches, so each event is written once, before or
//! after. Everything else (a source's settings, client sinks, the channel's sizes, workers,
//! io_mode, the control socket…) needs a restart: such a reload is refused with the list of
//! those changes, and the running config stays as it was. (`log_level` is the control socket's:
//! see `control`.)

use std::collections::HashMap;

use super::build::bind_added;
use super::{diff, sources, Plan, Topology};
use crate::codec::Codec;
use crate::config::{Config, SinkKind};
use crate::sink::{encode, Change};

/// Why a reload changed nothing (or, for [`ReloadError::ShutdownBegan`], no source).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("these changes need a restart, so nothing was applied: {}", .0.join("; "))]
    NeedsRestart(Vec<String>),
    #[error("the gateway is shutting down")]
    ShuttingDown,
    #[error("{0}; the source cannot be added, so nothing was applied")]
    Bind(#[from] sources::Error),
    #[error("a new sink target cannot be opened, so nothing was applied: {0}")]
    Retarget(String),
    #[error("the gateway began shutting down during the reload; sources were not changed")]
    ShutdownBegan,
}

/// Each sink's lanes from now on: (stream names it takes as configured, lanes with codecs).
type SinkLanes = Vec<(Vec<String>, Vec<(usize, Codec)>)>;

impl Topology {
    /// Take the topology to `new`: returns what changed, one line each. The caller holds off
    /// other reloads while this runs.
    pub async fn reload(&self, new: Config) -> Result<Vec<String>, ReloadError> {
        let old = self.config.lock().unwrap().clone();
        let plan = diff(Some(&old), &new).map_err(ReloadError::NeedsRestart)?;
        if self.sources.is_stopping() {
            return Err(ReloadError::ShuttingDown);
        }
        // New sources are bound before anything changes.
        let first = self.sources.table.snapshot().len();
        let bound = bind_added(&new, &plan.added, first)?;
        // Each stream's lane by name: the running ones, then a new lane per added source.
        let mut lane_of: HashMap<String, (usize, Codec)> = self
            .streams
            .lock()
            .unwrap()
            .iter()
            .map(|(m, _)| (m.name.clone(), (m.stream, m.codec)))
            .collect();
        let mut new_lanes = Vec::with_capacity(bound.len());
        let mut starts = Vec::with_capacity(bound.len());
        for (src, b) in bound {
            let (k, tx, rx) = self.sources.new_lane();
            lane_of.insert(src.name().to_string(), (k, src.codec()));
            new_lanes.push((k, rx));
            starts.push((src, b, k, tx));
        }
        let (inputs, names) = self.sink_lanes(&new, &plan, &lane_of);
        let mut applied: Vec<String> = plan
            .retarget
            .iter()
            .map(|(i, c)| format!("sinks[{i}] ({}) → {}", c.name, describe(&c.kind)))
            .collect();
        self.reconfig
            .apply(Change {
                retarget: plan.retarget,
                lanes: new_lanes,
                inputs,
            })
            .await
            .map_err(ReloadError::Retarget)?;
        // Sources: the new ones start, the removed ones end (unless shutdown began meanwhile).
        let grace = old.shutdown_timeout;
        let changed = self.sources.change(|| {
            for rt in self.start_sources(&new, starts) {
                applied.push(format!("source {} added ({})", rt.meta.name, rt.describe()));
            }
            for name in &plan.removed {
                if let Some(rt) = self.sources.remove(name, grace) {
                    let open = rt
                        .meta
                        .counters
                        .connections_active
                        .load(std::sync::atomic::Ordering::Relaxed);
                    applied.push(format!(
                        "source {name} removed ({open} connections read to their end and closed)"
                    ));
                }
                self.streams
                    .lock()
                    .unwrap()
                    .retain(|(m, _)| &m.name != name);
            }
        });
        if changed.is_none() {
            return Err(ReloadError::ShutdownBegan);
        }
        for (view, (wanted, lanes)) in self.sinks.iter().zip(names) {
            let mut current = view.inputs.lock().unwrap();
            if *current != wanted {
                applied.push(format!(
                    "sink {} takes [{}]",
                    view.cfg.name,
                    wanted.join(", ")
                ));
                *current = wanted;
            }
            *view.lanes.lock().unwrap() = lanes;
        }
        if new.channel.when_full != old.channel.when_full {
            self.policy.set(new.channel.when_full);
            applied.push(format!("channel.when_full → {:?}", new.channel.when_full));
        }
        *self.config.lock().unwrap() = new;
        Ok(applied)
    }

    /// Each sink's streams under `new`: as the new config names them, plus the lanes of removed
    /// sources it took (what is still in them is delivered as before). Returns the sink
    /// thread's inputs (lanes, passthrough) and the views' (names, lanes).
    fn sink_lanes(
        &self,
        new: &Config,
        plan: &Plan,
        lane_of: &HashMap<String, (usize, Codec)>,
    ) -> (Vec<(Vec<usize>, bool)>, SinkLanes) {
        let live = |k: usize| lane_of.values().any(|&(l, _)| l == k);
        let mut inputs = Vec::with_capacity(new.sinks.len());
        let mut names = Vec::with_capacity(new.sinks.len());
        for (s, view) in new.sinks.iter().zip(&self.sinks) {
            let wanted: Vec<String> = s
                .inputs
                .iter()
                .map(|&k| new.streams[k].name.clone())
                .collect();
            let mut lanes: Vec<(usize, Codec)> = wanted.iter().map(|n| lane_of[n]).collect();
            lanes.extend(
                view.lanes
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|&&(k, _)| !live(k) || plan.removed.iter().any(|r| lane_of[r].0 == k)),
            );
            lanes.sort_unstable_by_key(|l| l.0);
            lanes.dedup_by_key(|l| l.0);
            let passthrough = lanes
                .iter()
                .all(|&(_, c)| encode::is_passthrough(&s.format, c));
            inputs.push((lanes.iter().map(|l| l.0).collect(), passthrough));
            names.push((wanted, lanes));
        }
        (inputs, names)
    }
}

fn describe(k: &SinkKind) -> String {
    match k {
        SinkKind::File { path, .. } => path.display().to_string(),
        other => other.type_name().to_string(),
    }
}
