//! `reload` (and SIGHUP): read the config file again, validate it, and apply what can change
//! while running; refuse the rest, changing nothing.
//!
//! Live: a file/stdout/null sink's target (same name, inputs and format; the sink thread
//! switches between two batches, so nothing is lost or written twice), the channel's
//! `when_full`, and `log_level`. Everything else (sources, other sinks, the channel's sizes,
//! workers, io_mode, the control socket…) needs a restart: such a reload is refused with the
//! list of those changes, and the running config stays as it was.

use serde_json::{json, Value};

use super::commands::Control;
use crate::config::{Config, SinkKind};

impl Control {
    pub async fn reload(&self) -> Result<Value, String> {
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
        let (retarget, needs_restart) = diff(&old, &new);
        if !needs_restart.is_empty() {
            return Err(format!(
                "these changes need a restart, so nothing was applied: {}",
                needs_restart.join("; ")
            ));
        }
        let mut applied = Vec::new();
        if !retarget.is_empty() {
            let names: Vec<String> = retarget
                .iter()
                .map(|(i, c)| format!("sinks[{i}] ({}) → {}", c.name, describe(&c.kind)))
                .collect();
            self.reconfig.retarget(retarget).await.map_err(|e| {
                format!("a new sink target cannot be opened, so nothing was applied: {e}")
            })?;
            applied.extend(names);
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

/// The sinks to point elsewhere, and every change that cannot be applied live.
#[allow(clippy::type_complexity)]
fn diff(old: &Config, new: &Config) -> (Vec<(usize, crate::config::SinkConfig)>, Vec<String>) {
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
    same("sources", d(&old.sources), d(&new.sources));
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
    same("control", d(&old.control), d(&new.control));
    same("metrics", d(&old.metrics), d(&new.metrics));
    same("log_format", d(&old.log_format), d(&new.log_format));
    let mut retarget = Vec::new();
    if old.sinks.len() != new.sinks.len() {
        restart.push(format!(
            "the number of sinks changed ({} → {})",
            old.sinks.len(),
            new.sinks.len()
        ));
        return (retarget, restart);
    }
    let plain =
        |k: &SinkKind| matches!(k, SinkKind::File { .. } | SinkKind::Stdout | SinkKind::Null);
    for (i, (a, b)) in old.sinks.iter().zip(&new.sinks).enumerate() {
        if d(a) == d(b) {
            continue;
        }
        let movable = a.name == b.name
            && a.inputs == b.inputs
            && d(&a.format) == d(&b.format)
            && plain(&a.kind)
            && plain(&b.kind);
        if movable {
            retarget.push((i, b.clone()));
        } else {
            restart.push(format!(
                "sinks[{i}] ({}) changed beyond its target (only a file, stdout or null sink's target can change live)",
                a.name
            ));
        }
    }
    (retarget, restart)
}
