//! The gateway crate is layered: shared types and HTTP helpers at the
//! bottom, then the services stages use, then the stages, the pipeline, the
//! request handler and the server. A module may use modules of its own
//! layer or below, and no modules use each other in a circle. This test
//! reads the sources and keeps it so (docs/ARCHITECTURE.md draws the same).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `src/` and its layer, lowest first.
const LAYERS: &[(&str, u8)] = &[
    ("context", 0),
    ("http", 0),
    ("edge", 0),
    ("client_ip", 0),
    ("files", 0),
    ("worker", 0),
    ("demo", 0),
    ("h1", 0),
    ("hot_metrics", 1),
    ("metrics", 1),
    ("bans", 1),
    ("snapshot", 1),
    ("events", 1),
    ("policy", 1),
    ("risk", 1),
    ("trust", 1),
    ("control", 1),
    ("origin", 1),
    ("runtime", 2),
    ("shared", 3),
    ("body", 3),
    ("answers", 4),
    ("stages", 4),
    ("pipeline", 5),
    ("proxy", 6),
    ("conn_io", 0),
    ("server", 7),
    ("reload", 7),
    ("console", 7),
    ("admin", 7),
];

/// Which top-level modules each module names as `crate::name`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).expect("under src");
            let first = relative.components().next().expect("a component");
            let module = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if module == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let used = graph.entry(module.clone()).or_default();
            for (at, _) in text.match_indices("crate::") {
                let name: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                if !name.is_empty() && name != module {
                    used.insert(name);
                }
            }
        }
    }
    graph
}

fn layer(module: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
        .unwrap_or_else(|| panic!("module `{module}` has no layer in tests/layers.rs"))
}

#[test]
fn modules_only_use_their_own_layer_or_below() {
    let mut wrong = Vec::new();
    for (module, used) in imports() {
        for other in used {
            if layer(&other) > layer(&module) {
                wrong.push(format!(
                    "{module} (layer {}) uses {other} (layer {})",
                    layer(&module),
                    layer(&other)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn no_modules_use_each_other_in_a_circle() {
    let graph = imports();
    // Depth-first search with colours: grey on the path, black done.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        colour: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match colour.get(node) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|n| *n == node).unwrap_or(0);
                let mut circle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                circle.push(node.to_owned());
                return Some(circle);
            }
            _ => {}
        }
        colour.insert(node, 1);
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, colour, path) {
                return Some(circle);
            }
        }
        path.pop();
        colour.insert(node, 2);
        None
    }
    let mut colour = BTreeMap::new();
    for module in graph.keys() {
        let circle = visit(module, &graph, &mut colour, &mut Vec::new());
        assert!(
            circle.is_none(),
            "import circle: {}",
            circle.unwrap_or_default().join(" -> ")
        );
    }
}
