//! The allowed import graph between the crate's top-level modules, checked: a module may
//! use only modules of a lower layer (see docs/architecture.md). Test code (`mod tests`
//! blocks, `tests.rs` and `testkit.rs` files) may exercise the whole chain and is not
//! checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The layers, lowest first. A module may `use crate::X` only for X in a lower layer (or
/// itself). `main.rs` and `src/bin/` are on top of everything and are not listed.
const LAYERS: &[&[&str]] = &[
    &["error", "memory", "private_fs"],
    &["config"],
    &["pacing", "journal"],
    &["aws"],
    &["inventory", "delivery", "accounts"],
    &["baseline"],
    &["metrics"],
    &["notify", "export"],
    &["apply", "http"],
    &["controller"],
    &["sources"],
    &["app"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules that the non-test code of `source` names as `crate::X`.
fn crate_uses(source: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for line in source.lines() {
        let code = line.trim_start();
        if code.starts_with("mod tests") || code.starts_with("pub(crate) mod tests") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        let code = code.split(" //").next().unwrap_or(code);
        for (i, _) in code.match_indices("crate::") {
            if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue; // e.g. `my_crate::`
            }
            let rest = &code[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

/// Every backward edge `(file, from, to)` in `src/`.
fn backward_edges(src: &Path) -> Vec<(String, String, String)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut bad = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let mut parts = rel.iter().map(|p| p.to_string_lossy().into_owned());
        let first = parts.next().expect("a path");
        let file_name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if first == "bin" || first == "main.rs" || first == "lib.rs" {
            continue;
        }
        if file_name == "tests.rs" || file_name == "testkit.rs" || first == "architecture.rs" {
            continue;
        }
        let module = first.trim_end_matches(".rs").to_owned();
        let from = layer_of(&module)
            .unwrap_or_else(|| panic!("module `{module}` is in no layer; add it to LAYERS"));
        let source = std::fs::read_to_string(&file).expect("readable source");
        for used in crate_uses(&source) {
            if used == module {
                continue;
            }
            // Items of lib.rs (`crate::Error`, `crate::Result`) are not modules.
            let Some(to) = layer_of(&used) else { continue };
            if to >= from {
                bad.push((rel.display().to_string(), module.clone(), used));
            }
        }
    }
    bad.sort();
    bad
}

#[test]
fn every_module_is_in_a_layer() {
    let lib = include_str!("lib.rs");
    for line in lib.lines() {
        if let Some(m) = line.strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            assert!(layer_of(m).is_some(), "module `{m}` is in no layer");
        }
    }
}

#[test]
fn imports_flow_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let bad = backward_edges(&src);
    assert!(
        bad.is_empty(),
        "backward imports (a module may use only lower layers):\n{}",
        bad.iter()
            .map(|(f, from, to)| format!("  {f}: {from} -> {to}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn the_check_sees_backward_edges() {
    let uses = crate_uses(
        "use crate::config::Config;\n// crate::app in a comment\nfn f() { crate::sources::x(); }\nmod tests {\n use crate::app;\n}\n",
    );
    assert_eq!(
        uses.into_iter().collect::<Vec<_>>(),
        vec!["config".to_owned(), "sources".to_owned()]
    );
    assert!(layer_of("controller") < layer_of("sources"));
    assert!(layer_of("inventory") < layer_of("baseline"));
    assert!(layer_of("baseline") < layer_of("apply"));
    assert!(layer_of("apply") < layer_of("controller"));
    assert!(layer_of("controller") < layer_of("app"));
}
