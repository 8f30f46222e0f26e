//! Keeps the module map in `src/lib.rs` true: every `crate::` import in the edge's sources
//! points to its own layer or one below, and no two modules import each other, directly or
//! round a loop. Test modules (`#[cfg(test)] mod tests`) and the fuzzing harness are exempt:
//! they may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers of `src/lib.rs`'s module map, top first. `body` is split into its parts, which
/// sit on both sides of `origin`.
const LAYERS: &[&[&str]] = &[
    &["server"],
    &["operator", "attack_watch", "cpu_watch"],
    &["listener", "conn", "h2_conn", "h2_flood", "h2_writes"],
    &["pipeline", "phases"],
    &[
        "own_responses",
        "abuse_intake",
        "protection",
        "origin_gate",
        "cpu_priority",
        "snapshot",
        "tls",
        "site_table",
        "router",
        "state",
        "tunnel",
    ],
    &[
        "body",
        "body::to_client",
        "body::to_origin",
        "body::client",
        "body::limits",
        "origin",
        "conn_context",
    ],
    &[
        "http",
        "metrics",
        "access_log",
        "clock",
        "conn_guard",
        "fingerprint",
    ],
];

/// Modules outside the map: the crate root, test and fuzzing harnesses.
const EXEMPT: &[&str] = &["lib", "fuzzing", "test_input"];

const BODY_PARTS: &[&str] = &["to_client", "to_origin", "client", "limits"];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The map's name for the module a file belongs to: its top-level module, or `body::part`.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).expect("under src");
    let parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [top, part, ..] if top == "body" && part != "mod" => format!("body::{part}"),
        [top, ..] => top.clone(),
        [] => unreachable!("a file has a name"),
    }
}

/// What a file's non-test code imports from the crate, as modules of the map.
fn imports(module: &str, text: &str) -> BTreeSet<String> {
    let code = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut found = BTreeSet::new();
    let ident = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let top = ident(rest);
            let target = if top == "body" {
                let part = rest
                    .strip_prefix("body::")
                    .map(ident)
                    .filter(|p| BODY_PARTS.contains(&p.as_str()));
                part.map_or("body".to_string(), |p| format!("body::{p}"))
            } else {
                top
            };
            if !target.is_empty() && target != module {
                found.insert(target);
            }
        }
        // Inside body/, `super::part` names a sibling part.
        if let Some(own) = module.strip_prefix("body::") {
            for (at, _) in line.match_indices("super::") {
                let part = ident(&line[at + "super::".len()..]);
                if BODY_PARTS.contains(&part.as_str()) && part != own {
                    found.insert(format!("body::{part}"));
                }
            }
        }
    }
    found
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let module = module_of(&src, &file);
        if EXEMPT.contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("a source file is readable");
        let uses = imports(&module, &text)
            .into_iter()
            .filter(|m| !EXEMPT.contains(&m.as_str()));
        graph.entry(module).or_default().extend(uses);
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

#[test]
fn every_module_is_on_the_map_and_imports_point_down() {
    let graph = graph();
    let mut wrong = Vec::new();
    for (module, uses) in &graph {
        let Some(mine) = layer_of(module) else {
            wrong.push(format!("{module} is not on the module map"));
            continue;
        };
        for used in uses {
            match layer_of(used) {
                None => wrong.push(format!("{module} uses {used}, which is not on the map")),
                Some(theirs) if theirs < mine => {
                    wrong.push(format!("{module} uses {used}, a layer above it"))
                }
                Some(_) => {}
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The check reads what it should: the pipeline calls the phases, a phase reads the state.
    assert!(graph["pipeline"].contains("phases"), "{graph:?}");
    assert!(graph["phases"].contains("state"), "{graph:?}");
}

#[test]
fn no_two_modules_import_each_other_even_round_a_loop() {
    let graph = graph();
    // Depth-first search for a path back to where it started.
    fn reaches(
        graph: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        to: &str,
        seen: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> bool {
        for next in graph.get(from).into_iter().flatten() {
            path.push(next.clone());
            if next == to || (seen.insert(next.clone()) && reaches(graph, next, to, seen, path)) {
                return true;
            }
            path.pop();
        }
        false
    }
    for module in graph.keys() {
        let mut path = vec![module.clone()];
        let found = reaches(&graph, module, module, &mut BTreeSet::new(), &mut path);
        assert!(!found, "import cycle: {}", path.join(" -> "));
    }
}

#[test]
fn the_check_finds_an_import_that_points_up() {
    // What the checks above would see in a file of `origin` that imported a phase.
    let uses = imports(
        "origin",
        "use crate::phases::respond;\n// crate::server in a comment\n#[cfg(test)]\nmod tests {\n    use crate::server;\n}\n",
    );
    assert_eq!(uses, BTreeSet::from(["phases".to_string()]));
    assert!(layer_of("phases") < layer_of("origin"));
    let parts = imports("body::to_origin", "use super::client::ClientBody;\n");
    assert_eq!(parts, BTreeSet::from(["body::client".to_string()]));
}
