//! The crate's layering, as src/lib.rs states it: nothing depends on
//! anything above it, and the verifying side (node, receipt, quorum) and the
//! running side (instrument, sandbox) do not depend on each other, so a
//! client that only checks receipts builds without a WebAssembly runtime
//! (scripts/test.sh also runs `cargo check --no-default-features`). This
//! reads every `crate::…` path in the library's code (comments aside) and
//! checks it against the table.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module, and the modules it may use.
const LAYERS: &[(&str, &[&str])] = &[
    ("abi", &[]),
    ("digest", &[]),
    ("encoding", &["digest"]),
    ("tree", &["digest", "encoding"]),
    ("outcome", &["digest", "encoding", "tree"]),
    ("job", &["abi", "digest", "encoding", "tree", "outcome"]),
    // The verifying side.
    ("node", &["abi", "digest", "encoding"]),
    ("receipt", &["abi", "digest", "encoding", "tree", "outcome", "job", "node"]),
    ("quorum", &["abi", "digest", "encoding", "tree", "outcome", "job", "node", "receipt"]),
    // The running side.
    ("instrument", &["abi", "digest", "encoding", "tree", "outcome", "job"]),
    ("sandbox", &["abi", "digest", "encoding", "tree", "outcome", "job", "instrument"]),
    // Test support, above both.
    ("fuzzing", &["abi", "digest", "encoding", "tree", "outcome", "job", "instrument", "sandbox"]),
    // What a person sees of the verifying side: badges, static reports and
    // the dashboard's assets, with the browser verifier. It runs nothing,
    // so the coordinator that serves it (pool) sits above it.
    ("web", &["abi", "digest", "encoding", "tree", "outcome", "job", "node", "receipt", "quorum"]),
    // The pool joins both sides: its coordinator verifies and tallies, its
    // worker runs.
    ("pool", &["abi", "digest", "encoding", "tree", "outcome", "job", "node", "receipt", "quorum", "web", "instrument", "sandbox"]),
];

/// The top-level modules that `text` names as `crate::NAME` or inside
/// `crate::{…}`, outside comments.
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                found.insert(name);
            }
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_module_uses_one_above_it_and_verifying_never_uses_running() {
    let src = crate::util::root().join("src");
    let mut violations = Vec::new();
    for (module, allowed) in LAYERS {
        let mut paths = Vec::new();
        let file = src.join(format!("{module}.rs"));
        if file.exists() {
            paths.push(file);
        }
        let dir = src.join(module);
        if dir.is_dir() {
            files(&dir, &mut paths);
        }
        assert!(!paths.is_empty(), "src/{module}: no such module");
        for path in paths {
            let text = std::fs::read_to_string(&path).expect("readable");
            for used in uses(&text) {
                if used != *module && !allowed.contains(&used.as_str()) {
                    violations.push(format!("{}: uses crate::{used}", path.strip_prefix(&src).unwrap_or(&path).display()));
                }
            }
        }
    }
    assert!(violations.is_empty(), "layering broken:\n{}", violations.join("\n"));
}

#[test]
fn every_library_module_has_a_layer() {
    let lib = std::fs::read_to_string(crate::util::root().join("src/lib.rs")).expect("lib.rs");
    let declared: BTreeSet<&str> = lib.lines().filter_map(|l| l.trim().strip_prefix("pub mod ")).map(|m| m.trim_end_matches(';')).collect();
    let layered: BTreeSet<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    assert_eq!(declared, layered);
}
