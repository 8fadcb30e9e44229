//! The crate's module graph, read from the sources: which top-level module of `src/` names which
//! (`crate::x`). Dependencies must point down (see docs/design.md): `event` imports nothing of
//! the crate, and no two modules import each other. Print the graph with
//! `cargo test --test layering -- --nocapture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module → the top-level modules it names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let module_of = |p: &Path| -> Option<String> {
        let rel = p.strip_prefix(&src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?;
        let m = first.trim_end_matches(".rs");
        (m != "lib" && m != "main").then(|| m.to_string())
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|p| module_of(p)).collect();
    let mut g: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for f in &files {
        let Some(m) = module_of(f) else { continue };
        let text = std::fs::read_to_string(f).unwrap();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + "crate::".len()..];
                let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                    group
                        .split(['}', ','])
                        .map(|s| s.trim().split("::").next().unwrap_or(""))
                        .collect()
                } else {
                    vec![rest
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or("")]
                };
                for n in names {
                    if n != m && modules.contains(n) {
                        g.get_mut(&m).unwrap().insert(n.to_string());
                    }
                }
            }
        }
    }
    g
}

#[test]
fn dependencies_point_down() {
    let g = graph();
    for (m, deps) in &g {
        println!(
            "{m} -> {}",
            deps.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    assert!(g.contains_key("event"), "src/event is missing");
    assert!(
        g["event"].is_empty(),
        "event must import nothing of the crate, but names {:?}",
        g["event"]
    );
    let mut both = Vec::new();
    for (a, deps) in &g {
        for b in deps {
            if a < b && g[b].contains(a) {
                both.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(both.is_empty(), "modules that import each other: {both:?}");
    // The topology wires sources and sinks; the control socket and the gateway sit on it.
    for low in ["source", "sink", "topology"] {
        for high in ["control", "gateway"] {
            assert!(
                !g[low].contains(high),
                "{low} must not depend on {high} (it sits below it)"
            );
        }
    }
    for low in ["source", "sink"] {
        assert!(
            !g[low].contains("topology"),
            "{low} must not depend on topology (it sits below it)"
        );
    }
    for low in ["channel", "ingest", "reply"] {
        for high in ["source", "sink", "topology", "control", "gateway"] {
            assert!(
                !g[low].contains(high),
                "{low} must not depend on {high} (it sits below it)"
            );
        }
    }
}
