//! The main job on one machine: `canon run --nodes N [--faulty F]` runs N
//! independent executors, signs every receipt, tallies them, and a client
//! can verify each receipt and artifact afterwards with `canon verify` and
//! `canon quorum`.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::util::{canon_bin, fixture, scratch};

fn canon(args: &[&str], keys: &Path, threads: &str) -> Output {
    Command::new(canon_bin()).args(args).env("CANON_KEYS_DIR", keys).env("RAYON_NUM_THREADS", threads).output().expect("spawn canon")
}

fn tally(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("tally.json")).expect("tally.json")).expect("tally json")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn three_honest_nodes_agree_and_every_receipt_verifies() {
    let tmp = scratch();
    let keys = tmp.path().join("keys");
    let out = tmp.path().join("run");
    let spec = fixture("jobs/hello.toml");
    let spec = spec.to_str().expect("utf-8 path");
    let o = canon(&["run", spec, "--nodes", "3", "--out", out.to_str().expect("utf-8")], &keys, "2");
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("ACCEPTED"), "{stdout}");
    let t = tally(&out);
    assert_eq!(t["verdict"], "accepted");
    assert_eq!(t["groups"].as_array().map(Vec::len), Some(1));
    // Keys were created on first use, one per node.
    assert_eq!(std::fs::read_dir(&keys).expect("keys dir").count(), 3);
    for i in 1..=3 {
        let node = out.join(format!("node-{i}"));
        let receipt = node.join("receipt.json");
        let v = Command::new(canon_bin()).args(["verify", "--job", spec, "--artifacts"]).arg(&node).arg(&receipt).output().expect("spawn verify");
        assert!(v.status.success(), "node {i}: {}{}", String::from_utf8_lossy(&v.stdout), stderr(&v));
    }
    let q = Command::new(canon_bin()).arg("quorum").arg(&out).output().expect("spawn quorum");
    assert!(q.status.success(), "{}", String::from_utf8_lossy(&q.stdout));

    // Again with one thread and existing keys: same nodes, same outcome.
    let again = tmp.path().join("again");
    let o = canon(&["run", spec, "--nodes", "3", "--out", again.to_str().expect("utf-8")], &keys, "1");
    assert!(o.status.success(), "{}", stderr(&o));
    let (a, b) = (tally(&out), tally(&again));
    assert_eq!(a["accepted"], b["accepted"], "outcome changed with the thread count");
    let ids = |t: &Value| t["groups"][0]["votes"].as_array().expect("votes").iter().map(|v| v["node"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b), "node keys were not reused");
}

#[test]
fn a_byzantine_minority_does_not_flip_the_verdict() {
    let tmp = scratch();
    let out = tmp.path().join("run");
    let spec = fixture("jobs/probe-random.toml");
    let o =
        canon(&["run", spec.to_str().expect("utf-8"), "--nodes", "7", "--faulty", "2", "--out", out.to_str().expect("utf-8")], &tmp.path().join("keys"), "2");
    assert!(o.status.success(), "{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    let t = tally(&out);
    assert_eq!(t["verdict"], "accepted");
    // The honest outcome won: node-1's.
    let honest: Value = serde_json::from_str(&std::fs::read_to_string(out.join("node-1/outcome.json")).expect("outcome")).expect("json");
    assert_eq!(t["accepted"], honest["outcome_digest"]);
    // node-6 flipped a byte: a named dissenter. node-7 signed for another job: set aside.
    let dissent: Vec<&str> = t["dissenters"].as_array().expect("dissenters").iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(dissent, ["node-6"]);
    let reasons: Vec<&str> = t["set_aside"].as_array().expect("set_aside").iter().filter_map(|a| a["code"].as_str()).collect();
    assert_eq!(reasons, ["wrong_job"], "{:#}", t["set_aside"]);
}

#[test]
fn faulty_nodes_each_misbehave_as_documented() {
    let tmp = scratch();
    let out = tmp.path().join("run");
    let spec = fixture("jobs/hello.toml");
    let o =
        canon(&["run", spec.to_str().expect("utf-8"), "--nodes", "4", "--faulty", "3", "--out", out.to_str().expect("utf-8")], &tmp.path().join("keys"), "2");
    assert_eq!(o.status.code(), Some(1), "not accepted with 3 of 4 faulty: {}", String::from_utf8_lossy(&o.stdout));
    let t = tally(&out);
    assert_ne!(t["verdict"], "accepted");
    assert!(out.join("node-4/receipt-2.json").exists(), "the equivocating node signs twice");
    let equivocators: Vec<&str> = t["equivocators"].as_array().expect("equivocators").iter().filter_map(|d| d["name"].as_str()).collect();
    assert_eq!(equivocators, ["node-4"]);
    // The flipping node's artifacts match its own (false) receipt: the lie
    // is consistent, and only the quorum exposes it.
    let v = Command::new(canon_bin()).args(["verify", "--artifacts"]).arg(out.join("node-2")).arg(out.join("node-2/receipt.json")).output().expect("verify");
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn a_single_node_signs_with_its_key() {
    let tmp = scratch();
    let key = tmp.path().join("node.key");
    let k = Command::new(canon_bin()).args(["keygen", "--out"]).arg(&key).output().expect("keygen");
    assert!(k.status.success(), "{}", stderr(&k));
    let out = tmp.path().join("run");
    let o = Command::new(canon_bin()).arg("run").arg(fixture("jobs/fswalk.toml")).arg("--key").arg(&key).arg("--out").arg(&out).output().expect("run");
    assert!(o.status.success(), "{}", stderr(&o));
    let v = Command::new(canon_bin())
        .arg("verify")
        .arg("--job")
        .arg(fixture("jobs/fswalk.toml"))
        .arg("--artifacts")
        .arg(&out)
        .arg(out.join("receipt.json"))
        .output()
        .expect("verify");
    assert!(v.status.success(), "{}{}", String::from_utf8_lossy(&v.stdout), stderr(&v));
    // A receipt checked against another job fails.
    let w = Command::new(canon_bin()).arg("verify").arg("--job").arg(fixture("jobs/hello.toml")).arg(out.join("receipt.json")).output().expect("verify");
    assert_eq!(w.status.code(), Some(1));
}
