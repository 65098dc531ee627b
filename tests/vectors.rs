//! Test vectors for the outcome and manifest encodings
//! (`fixtures/vectors/outcome-v1.json`). Another implementation can check
//! its bytes against these. `CANON_BLESS=1` rewrites the file.

use std::sync::Arc;

use serde_json::{Value, json};

use canon::outcome::{Outcome, Termination, TrapKind, encode_outcome};
use canon::tree::{Node, Tree};

use crate::util::fixture;

fn file(s: &str) -> Node {
    Node::File(Arc::new(s.as_bytes().to_vec()))
}

/// The output tree every case uses: `/out/a.txt`, `/out/link -> a.txt`,
/// `/out/sub/empty`, and an empty `/out/sub/dir`.
fn outputs() -> Tree {
    let mut sub = Tree::new();
    sub.entries.insert("empty".into(), file(""));
    sub.entries.insert("dir".into(), Node::Dir(Tree::new()));
    let mut out = Tree::new();
    out.entries.insert("a.txt".into(), file("hello\n"));
    out.entries.insert("link".into(), Node::Symlink("a.txt".into()));
    out.entries.insert("sub".into(), Node::Dir(sub));
    let mut root = Tree::new();
    root.entries.insert("out".into(), Node::Dir(out));
    root
}

fn cases() -> Vec<(&'static str, Outcome)> {
    let base = Outcome { termination: Termination::Exit(0), fuel_consumed: 12345, stdout: b"hello\n".to_vec(), stderr: Vec::new(), outputs: outputs() };
    vec![
        ("exit-0", base.clone()),
        ("exit-255-no-outputs", Outcome { termination: Termination::Exit(255), outputs: Tree::new(), stderr: b"oops\n".to_vec(), ..base.clone() }),
        ("trap-out-of-fuel", Outcome { termination: Termination::Trap(TrapKind::OutOfFuel), fuel_consumed: 1_000_000, ..base }),
    ]
}

fn computed() -> Value {
    let cases: Vec<Value> = cases()
        .into_iter()
        .map(|(name, o)| {
            let s = o.summary();
            json!({
                "name": name,
                "termination": s.termination,
                "fuel_consumed": s.fuel_consumed,
                "stdout_hex": hex::encode(&o.stdout),
                "stderr_hex": hex::encode(&o.stderr),
                "manifest": s.manifest,
                "manifest_encoding_hex": hex::encode(s.manifest.encode()),
                "manifest_digest": s.manifest_digest,
                "outcome_encoding_hex": hex::encode(encode_outcome(&s.termination, s.fuel_consumed, &s.stdout_sha256, &s.stderr_sha256, &s.manifest_digest)),
                "outcome_digest": s.outcome_digest,
            })
        })
        .collect();
    json!({
        "about": "canon/outcome/v1 and canon/manifest/v1 test vectors; layouts in docs/ENCODINGS.md",
        "cases": cases,
    })
}

#[test]
fn outcome_and_manifest_vectors_match() {
    let path = fixture("vectors/outcome-v1.json");
    let got = computed();
    if std::env::var_os("CANON_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&got).expect("json") + "\n").expect("bless");
    }
    let want: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("vectors exist (CANON_BLESS=1 writes them)")).expect("json");
    assert_eq!(got, want, "the outcome or manifest encoding changed: that is a new version, not an edit");
}

#[test]
fn manifest_layout_is_as_documented() {
    // One entry, by hand: tag, count, path, kind, size, sha256.
    let mut t = Tree::new();
    t.entries.insert("x".into(), file("hi"));
    let mut want = b"canon/manifest/v1\n".to_vec();
    want.extend_from_slice(&1u64.to_le_bytes());
    want.extend_from_slice(&1u64.to_le_bytes());
    want.push(b'x');
    want.push(1);
    want.extend_from_slice(&2u64.to_le_bytes());
    want.extend_from_slice(canon::digest::Digest::of(b"hi").as_bytes());
    assert_eq!(t.manifest().encode(), want);
}
