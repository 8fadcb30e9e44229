//! What a change of config means for the running topology: a pure function of two configs.
//!
//! In: the running config (none at start-up) and the new one. Out: a [`Plan`] (sources to add
//! and remove, sinks to retarget), or every change that needs a restart. Start-up is the diff
//! from nothing: every source is added and every sink built. What it does not do: bind, start or
//! stop anything (see `build` and `reload`).

use crate::config::{Config, SinkConfig, SinkKind};

/// What applying a config changes, once it is known to be possible. (From nothing, every sink is
/// built as well: see `build`.)
#[derive(Debug, Default)]
pub struct Plan {
    /// Sinks (by index) whose file/stdout/null target changes, with their new config.
    pub retarget: Vec<(usize, SinkConfig)>,
    /// Indices in the new config's sources.
    pub added: Vec<usize>,
    /// Names of running sources that go.
    pub removed: Vec<String>,
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

/// The plan that takes the topology from `old` (nothing, at start-up) to `new`, or every
/// change that cannot be applied live.
pub fn diff(old: Option<&Config>, new: &Config) -> Result<Plan, Vec<String>> {
    let Some(old) = old else {
        return Ok(Plan {
            added: (0..new.sources.len()).collect(),
            ..Plan::default()
        });
    };
    let mut restart = global_changes(old, new);
    let (added, removed) = source_changes(old, new, &mut restart);
    let retarget = sink_changes(old, new, &mut restart);
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

/// Typed configs compare through their (derived, deterministic) Debug form.
fn d(v: &dyn std::fmt::Debug) -> String {
    format!("{v:?}")
}

/// The settings outside sources and sinks that only a restart changes.
fn global_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut restart = Vec::new();
    let mut same = |what: &str, a: String, b: String| {
        if a != b {
            restart.push(format!("{what} changed"));
        }
    };
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
    restart
}

/// Sources, by name: (indices in `new` of the added ones, names of the removed ones).
fn source_changes(
    old: &Config,
    new: &Config,
    restart: &mut Vec<String>,
) -> (Vec<usize>, Vec<String>) {
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
    let added = (0..new.sources.len())
        .filter(|&j| find(old, new.sources[j].name()).is_none())
        .collect();
    (added, removed)
}

/// Sinks, by position: same count and names; inputs compared by stream name. Returns the sinks
/// whose target moves.
fn sink_changes(old: &Config, new: &Config, restart: &mut Vec<String>) -> Vec<(usize, SinkConfig)> {
    let mut retarget = Vec::new();
    if old.sinks.len() != new.sinks.len() {
        restart.push(format!(
            "the number of sinks changed ({} → {})",
            old.sinks.len(),
            new.sinks.len()
        ));
        return retarget;
    }
    let plain = |k: &SinkKind| {
        matches!(
            k,
            SinkKind::File { .. } | SinkKind::Stdout | SinkKind::Null | SinkKind::Memory(_)
        )
    };
    let input_names = |cfg: &Config, s: &SinkConfig| -> Vec<String> {
        s.inputs
            .iter()
            .map(|&k| cfg.streams[k].name.clone())
            .collect()
    };
    let without_inputs = |s: &SinkConfig| {
        let mut s = s.clone();
        s.inputs.clear();
        d(&s)
    };
    for (i, (a, b)) in old.sinks.iter().zip(&new.sinks).enumerate() {
        if input_names(old, a) != input_names(new, b) && matches!(a.kind, SinkKind::Client(_)) {
            restart.push(format!(
                "sinks[{i}] ({}): a unix_socket_client sink's inputs cannot change live",
                a.name
            ));
        }
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
    retarget
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(sources: &[&str], sinks: &str) -> Config {
        let mut t = String::new();
        for s in sources {
            t.push_str(&format!(
                "[[sources]]\ntype = \"unix_socket_server\"\nname = \"{s}\"\npath = \"/tmp/ringway-diff-{s}.sock\"\n"
            ));
        }
        t.push_str("[control]\nenabled = false\npath = \"/tmp/ringway-diff.ctl\"\n");
        t.push_str(sinks);
        Config::from_toml(&t).unwrap()
    }

    const NULL: &str = "[[sinks]]\ntype = \"null\"\n";

    #[test]
    fn start_up_is_the_diff_from_nothing() {
        let c = cfg(&["a", "b"], NULL);
        let p = diff(None, &c).unwrap();
        assert_eq!(p.added, vec![0, 1]);
        assert!(p.removed.is_empty() && p.retarget.is_empty());
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let c = cfg(&["a", "b"], NULL);
        let p = diff(Some(&c), &cfg(&["a", "b"], NULL)).unwrap();
        assert!(p.added.is_empty() && p.removed.is_empty() && p.retarget.is_empty());
    }

    #[test]
    fn sources_are_matched_by_name() {
        let p = diff(Some(&cfg(&["a", "b"], NULL)), &cfg(&["b", "c"], NULL)).unwrap();
        assert_eq!(p.added, vec![1]);
        assert_eq!(p.removed, vec!["a".to_string()]);
    }

    #[test]
    fn a_file_sink_may_move_but_not_become_another_kind() {
        let file =
            |p: &str| format!("[[sinks]]\ntype = \"file\"\nname = \"out\"\npath = \"{p}\"\n");
        let old = cfg(&["a"], &file("/tmp/one"));
        let p = diff(Some(&old), &cfg(&["a"], &file("/tmp/two"))).unwrap();
        assert_eq!(p.retarget.len(), 1);
        assert_eq!(p.retarget[0].0, 0);
        let err = diff(
            Some(&old),
            &cfg(&["a"], "[[sinks]]\ntype = \"null\"\nname = \"x\"\n"),
        )
        .unwrap_err();
        assert!(err[0].contains("changed beyond its target"), "{err:?}");
    }

    #[test]
    fn every_restart_change_is_listed() {
        let old = cfg(&["a"], NULL);
        let mut new = cfg(&["a"], &format!("{NULL}{NULL}"));
        new.workers = std::num::NonZeroUsize::new(old.workers.get() + 1).unwrap();
        let err = diff(Some(&old), &new).unwrap_err();
        assert!(err.iter().any(|e| e == "workers changed"), "{err:?}");
        assert!(err.iter().any(|e| e.contains("number of sinks")), "{err:?}");
    }
}
