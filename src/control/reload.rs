//! `reload` (and SIGHUP): read the config file again, validate it, and apply what can change
//! while running; refuse the rest, changing nothing.
//!
//! Live:
//! - sources added (bound first: a taken path or port refuses the reload) and removed (no new
//!   connections; its connections are read to their end, so what their clients sent is
//!   delivered, then they see EOF). Sources are matched by name; the connections of the others
//!   are not touched;
//! - which streams each file/stdout/null/reply sink takes (`inputs`, e.g. a new source);
//! - a file/stdout/null sink's target (same name and format);
//! - the channel's `when_full`, and `log_level`.
//!
//! The sink thread switches between two batches, so each event is written once, before or
//! after. Everything else (a source's settings, client sinks, the channel's sizes, workers,
//! io_mode, the control socket…) needs a restart: such a reload is refused with the list of
//! those changes, and the running config stays as it was.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::commands::Control;
use crate::codec::Codec;
use crate::config::{Config, SinkConfig, SinkKind};
use crate::sink::{encode, Change};
use crate::source::running;

/// What a reload changes, once it is known to be possible.
struct Plan {
    retarget: Vec<(usize, SinkConfig)>,
    /// Indices in the new config's sources.
    added: Vec<usize>,
    removed: Vec<String>,
}

impl Control {
    pub async fn reload(&self) -> Result<Value, String> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let old = self.config.lock().unwrap().clone();
        let Some(path) = old.file.clone() else {
            return Err(
                "this gateway runs the embedded default config: there is no file to read again"
                    .into(),
            );
        };
        let new = Config::from_file(&path).map_err(|e| {
            format!(
                "{} is not a valid config, so the running one stays: {e}",
                path.display()
            )
        })?;
        let plan = diff(&old, &new).map_err(|restart| {
            format!(
                "these changes need a restart, so nothing was applied: {}",
                restart.join("; ")
            )
        })?;
        if self.running.is_stopping() {
            return Err("the gateway is shutting down".into());
        }
        // New sources are bound before anything changes.
        let first_index = self.running.table.snapshot().len();
        let mut bound = Vec::with_capacity(plan.added.len());
        for (n, &i) in plan.added.iter().enumerate() {
            let src = &new.sources[i];
            let b = running::bind(src, self.workers, first_index + n)
                .map_err(|e| format!("{e}; the source cannot be added, so nothing was applied"))?;
            bound.push((src.clone(), b));
        }
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
            let (k, tx, rx) = self.running.new_lane();
            lane_of.insert(src.name().to_string(), (k, src.codec()));
            new_lanes.push((k, rx));
            starts.push((src, b, k, tx));
        }
        let live = |k: usize| lane_of.values().any(|&(l, _)| l == k);
        // Each sink's streams: as the new config names them, plus the lanes of removed
        // sources it took (what is still in them is delivered as before).
        let mut inputs = Vec::with_capacity(new.sinks.len());
        let mut names = Vec::with_capacity(new.sinks.len());
        for (j, s) in new.sinks.iter().enumerate() {
            let wanted: Vec<String> = s
                .inputs
                .iter()
                .map(|&k| new.streams[k].name.clone())
                .collect();
            let mut lanes: Vec<(usize, Codec)> = wanted.iter().map(|n| lane_of[n]).collect();
            let view = &self.sinks[j];
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
        let retargeted: Vec<String> = plan
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
            .map_err(|e| {
                format!("a new sink target cannot be opened, so nothing was applied: {e}")
            })?;
        let mut applied = retargeted;
        // Sources: the new ones start, the removed ones end (unless shutdown began meanwhile).
        let grace = old.shutdown_timeout;
        let replied = replied_sources(&new);
        let changed = self.running.change(|| {
            let mut streams = self.streams.lock().unwrap();
            for (src, b, k, tx) in starts {
                let reply = replied[new
                    .sources
                    .iter()
                    .position(|s| s.name() == src.name())
                    .unwrap()];
                let rt = self.running.start(src, b, k, tx, reply);
                applied.push(format!("source {} added ({})", rt.meta.name, rt.describe()));
                streams.push((Arc::clone(&rt.meta), rt.describe()));
            }
            for name in &plan.removed {
                if let Some(rt) = self.running.remove(name, grace) {
                    let open = rt
                        .meta
                        .counters
                        .connections_active
                        .load(std::sync::atomic::Ordering::Relaxed);
                    applied.push(format!(
                        "source {name} removed ({open} connections read to their end and closed)"
                    ));
                }
                streams.retain(|(m, _)| &m.name != name);
            }
        });
        if changed.is_none() {
            return Err(
                "the gateway began shutting down during the reload; sources were not changed"
                    .into(),
            );
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
        if new.log_level != old.log_level {
            if let Some(level) = &new.log_level {
                (self.set_log_level)(level)?;
                *self.log_level.lock().unwrap() = level.clone();
                applied.push(format!("log_level → {level}"));
            }
        }
        tracing::info!(file = %path.display(), "config reloaded: {}",
            if applied.is_empty() { "no changes".to_string() } else { applied.join("; ") });
        *self.config.lock().unwrap() = new;
        Ok(json!({"file": path.display().to_string(), "applied": applied}))
    }
}

fn describe(k: &SinkKind) -> String {
    match k {
        SinkKind::File { path, .. } => path.display().to_string(),
        other => other.type_name().to_string(),
    }
}

/// Which sources (by index) get reply queues for their connections: those a reply sink takes,
/// or all that can be replied to when it routes by a field.
pub fn replied_sources(cfg: &Config) -> Vec<bool> {
    (0..cfg.sources.len())
        .map(|i| {
            cfg.sinks.iter().any(|s| match &s.kind {
                SinkKind::Reply(r) => r.route_field.is_some() || s.inputs.contains(&i),
                _ => false,
            })
        })
        .collect()
}

/// What a reload changes, or every change that cannot be applied live.
fn diff(old: &Config, new: &Config) -> Result<Plan, Vec<String>> {
    let mut restart = Vec::new();
    let mut same = |what: &str, a: String, b: String| {
        if a != b {
            restart.push(format!("{what} changed"));
        }
    };
    // Typed configs compare through their (derived, deterministic) Debug form.
    let d = |v: &dyn std::fmt::Debug| format!("{v:?}");
    same("io_mode", d(&old.io_mode), d(&new.io_mode));
    same("workers", d(&old.workers), d(&new.workers));
    same(
        "shutdown_timeout",
        d(&old.shutdown_timeout),
        d(&new.shutdown_timeout),
    );
    same(
        "channel.capacity",
        d(&old.channel.capacity),
        d(&new.channel.capacity),
    );
    same(
        "channel batch sizes",
        d(&(old.channel.batch_max_events, old.channel.batch_max_bytes)),
        d(&(new.channel.batch_max_events, new.channel.batch_max_bytes)),
    );
    same("dead_letter", d(&old.dead_letter), d(&new.dead_letter));
    same("telemetry", d(&old.telemetry), d(&new.telemetry));
    same("metrics", d(&old.metrics), d(&new.metrics));
    same("log_format", d(&old.log_format), d(&new.log_format));
    if old.control.path != new.control.path {
        restart.push(format!(
            "control.path changed ({} → {}; it defaults to beside the first UNIX source: set [control] path to keep it)",
            old.control.path.display(),
            new.control.path.display()
        ));
    } else {
        same("control", d(&old.control), d(&new.control));
    }

    // Sources, by name.
    let find = |cfg: &'_ Config, name: &str| cfg.sources.iter().position(|s| s.name() == name);
    let (old_replied, new_replied) = (replied_sources(old), replied_sources(new));
    let mut removed = Vec::new();
    for (i, a) in old.sources.iter().enumerate() {
        match find(new, a.name()) {
            None => removed.push(a.name().to_string()),
            Some(j) => {
                if d(a) != d(&new.sources[j]) {
                    restart.push(format!(
                        "source {:?} changed (a source's settings cannot change live: remove it in one reload and add it back in the next)",
                        a.name()
                    ));
                } else if old_replied[i] != new_replied[j] {
                    restart.push(format!(
                        "whether the reply sink takes source {:?} changed",
                        a.name()
                    ));
                }
            }
        }
    }
    let added: Vec<usize> = (0..new.sources.len())
        .filter(|&j| find(old, new.sources[j].name()).is_none())
        .collect();

    // Sinks, by position: same count and names; inputs compared by stream name.
    let mut retarget = Vec::new();
    if old.sinks.len() != new.sinks.len() {
        restart.push(format!(
            "the number of sinks changed ({} → {})",
            old.sinks.len(),
            new.sinks.len()
        ));
        return Err(restart);
    }
    let plain =
        |k: &SinkKind| matches!(k, SinkKind::File { .. } | SinkKind::Stdout | SinkKind::Null);
    let input_names = |cfg: &Config, s: &SinkConfig| -> Vec<String> {
        s.inputs
            .iter()
            .map(|&k| cfg.streams[k].name.clone())
            .collect()
    };
    for (i, (a, b)) in old.sinks.iter().zip(&new.sinks).enumerate() {
        let inputs_changed = input_names(old, a) != input_names(new, b);
        if inputs_changed && matches!(a.kind, SinkKind::Client(_)) {
            restart.push(format!(
                "sinks[{i}] ({}): a unix_socket_client sink's inputs cannot change live",
                a.name
            ));
        }
        let without_inputs = |s: &SinkConfig| {
            let mut s = s.clone();
            s.inputs.clear();
            d(&s)
        };
        if without_inputs(a) == without_inputs(b) {
            continue;
        }
        let movable =
            a.name == b.name && d(&a.format) == d(&b.format) && plain(&a.kind) && plain(&b.kind);
        if movable {
            retarget.push((i, b.clone()));
        } else {
            restart.push(format!(
                "sinks[{i}] ({}) changed beyond its target and inputs (only a file, stdout or null sink's target can change live)",
                a.name
            ));
        }
    }
    if restart.is_empty() {
        Ok(Plan {
            retarget,
            added,
            removed,
        })
    } else {
        Err(restart)
    }
}
