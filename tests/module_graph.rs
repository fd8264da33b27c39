//! No module circles: in each crate of the workspace, the modules a file names through
//! `crate::` (and `super::`) paths, its `use` lines and its doc links, form no cycle, among
//! files or among the top-level modules they belong to. A circle means two modules cannot be
//! read, tested or changed apart; this keeps the one-way layering docs/architecture.md
//! describes from eroding.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module: its path inside the crate (`["net", "accounts"]`; `[]` is the crate root).
type Module = Vec<String>;

/// Every `.rs` file under `root`, by module path.
fn modules(root: &Path) -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<Module, PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(root).unwrap().with_extension("");
                let mut module: Module = relative
                    .iter()
                    .map(|part| part.to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    module.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    module.pop();
                }
                out.insert(module, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The source without its `#[cfg(test)] mod tests` (tests may use anything).
fn without_tests(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .map_or(text, |at| &text[..at])
}

/// The module paths a source names after `crate::`, with `{a, b::c}` groups expanded.
fn crate_paths(text: &str) -> Vec<Module> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let base: Module = rest[..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        if rest[end..].starts_with('{') {
            let close = rest[end..].find('}').map_or(rest.len(), |c| end + c);
            for item in rest[end + 1..close].split(',') {
                let mut path = base.clone();
                path.extend(
                    item.split(" as ")
                        .next()
                        .unwrap_or("")
                        .split("::")
                        .map(|s| s.trim().trim_matches(|c| c == '{' || c == '}'))
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
                out.push(path);
            }
        }
        out.push(base);
    }
    out
}

/// The longest prefix of `path` that is a module.
fn resolve(modules: &BTreeMap<Module, PathBuf>, path: &[String]) -> Option<Module> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|prefix| modules.contains_key(prefix))
}

/// Which modules each module depends on (never itself or one of its ancestors).
fn dependencies(root: &Path) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules = modules(root);
    let mut graph = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("a source file");
        let text = without_tests(&text);
        let mut paths = crate_paths(text);
        let parent = &module[..module.len().saturating_sub(1)];
        let mut rest = text;
        while let Some(at) = rest.find("super::") {
            rest = &rest[at + "super::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let mut path = parent.to_vec();
            path.push(name);
            paths.push(path);
        }
        let targets: BTreeSet<Module> = paths
            .iter()
            .filter_map(|path| resolve(&modules, path))
            .filter(|target| !module.starts_with(target))
            .collect();
        graph.insert(module.clone(), targets);
    }
    graph
}

/// The strongly connected components of more than one node (Tarjan).
fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        found: Vec<Vec<Module>>,
    }
    fn visit<'a>(state: &mut State<'a>, node: &'a Module) {
        let n = state.index.len();
        state.index.insert(node, n);
        state.low.insert(node, n);
        state.stack.push(node);
        let graph = state.graph;
        for next in graph.get(node).into_iter().flatten() {
            if !state.index.contains_key(next) {
                visit(state, next);
                let low = state.low[next].min(state.low[node]);
                state.low.insert(node, low);
            } else if state.stack.contains(&next) {
                let low = state.index[next].min(state.low[node]);
                state.low.insert(node, low);
            }
        }
        if state.low[node] == state.index[node] {
            let at = state.stack.iter().position(|m| *m == node).unwrap();
            let component: Vec<Module> = state.stack.drain(at..).cloned().collect();
            if component.len() > 1 {
                state.found.push(component);
            }
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !state.index.contains_key(node) {
            visit(&mut state, node);
        }
    }
    state.found
}

/// The graph among the children of each module: an edge `a -> b` between two siblings when
/// anything inside `a` depends on anything inside `b`.
fn sibling_graph(graph: &BTreeMap<Module, BTreeSet<Module>>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut out: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, targets) in graph {
        for to in targets {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                out.entry(from[..=common].to_vec())
                    .or_default()
                    .insert(to[..=common].to_vec());
            }
        }
    }
    out
}

fn describe(circles: &[Vec<Module>]) -> Vec<String> {
    circles
        .iter()
        .map(|c| {
            c.iter()
                .map(|m| {
                    if m.is_empty() {
                        "<crate root>".into()
                    } else {
                        m.join("/")
                    }
                })
                .collect::<Vec<_>>()
                .join(" <-> ")
        })
        .collect()
}

#[test]
fn no_crate_of_the_workspace_has_a_module_circle() {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for crate_src in ["src", "systems/src", "components/src", "client/src"] {
        let graph = dependencies(&workspace.join(crate_src));
        for circle in describe(&circles(&graph)) {
            found.push(format!("{crate_src}: files {circle}"));
        }
        for circle in describe(&circles(&sibling_graph(&graph))) {
            found.push(format!("{crate_src}: modules {circle}"));
        }
    }
    assert!(found.is_empty(), "module circles:\n{}", found.join("\n"));
}

#[test]
fn a_circle_is_seen_when_there_is_one() {
    let a = vec!["a".to_string()];
    let b = vec!["b".to_string(), "inner".to_string()];
    let graph = BTreeMap::from([
        (a.clone(), BTreeSet::from([b.clone()])),
        (b.clone(), BTreeSet::from([a.clone()])),
    ]);
    assert_eq!(circles(&graph).len(), 1);
    let paths = crate_paths("use crate::net::{accounts::X, resume};");
    assert!(paths.contains(&vec![
        "net".to_string(),
        "accounts".to_string(),
        "X".to_string()
    ]));
    assert!(paths.contains(&vec!["net".to_string(), "resume".to_string()]));
}
