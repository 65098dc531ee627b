//! The quorum: verdicts, adversarial receipts that must never change what
//! honest receipts decide, byzantine minorities and majorities, the
//! reputation ledger, and `canon quorum`.

use std::fs;
use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use canon::digest::OutcomeDigest;
use canon::node::NodeKey;
use canon::quorum::{EngineVersion, Ledger, Policy, SetAsideReason, Tally, TallyOptions, TrustedNode, Verdict, tally};
use canon::receipt::{Engine, Envelope};

use crate::receipts::{job, key, outcome, payload_of, receipt, sign_payload, statement};
use crate::util;

fn digest_of(stdout: &str) -> OutcomeDigest {
    outcome(stdout).summary().outcome_digest
}

fn policy(nodes: &[(&NodeKey, &str)]) -> Policy {
    Policy {
        nodes: nodes.iter().map(|(k, name)| TrustedNode { id: k.node_id(), name: Some(name.to_string()), weight: 1.0 }).collect(),
        implicit: false,
        unknown_weight: 0.0,
        ..Policy::implicit()
    }
}

pub fn labelled(receipts: Vec<Vec<u8>>) -> Vec<(String, Vec<u8>)> {
    receipts.into_iter().enumerate().map(|(i, r)| (format!("r{i}.json"), r)).collect()
}

fn run(receipts: Vec<Vec<u8>>, options: &TallyOptions) -> Tally {
    tally(&labelled(receipts), options)
}

fn implicit() -> TallyOptions {
    TallyOptions::default()
}

#[test]
fn honest_nodes_agreeing_are_accepted() {
    let t = run((1..=3).map(|n| receipt(&key(n), job("j"), "good")).collect(), &implicit());
    assert_eq!(t.verdict, Verdict::Accepted);
    assert_eq!(t.accepted, Some(digest_of("good")));
    assert_eq!(t.groups.len(), 1);
    assert!((t.groups[0].score - 1.0).abs() < 1e-12);
    assert!(t.policy.implicit);
    assert!(t.dissenters.is_empty() && t.set_aside.is_empty());
}

/// Issue 12: one node against another was called `nondeterministic`, as if
/// the job were to blame; it is evidence only that the nodes disagree.
#[test]
fn one_node_against_another_is_disputed_not_nondeterministic() {
    for n in 2..=6u8 {
        let t = run((1..=n).map(|i| receipt(&key(i), job("j"), &format!("out{i}"))).collect(), &implicit());
        assert_eq!(t.verdict, Verdict::Disputed, "n={n}: every outcome different");
        assert_eq!(t.accepted, None);
    }
}

/// `nondeterministic` is kept for a node's own receipts showing the same job
/// on the same engine giving two outcomes, and only for a node that counts.
#[test]
fn a_counted_node_signing_two_outcomes_on_one_engine_is_nondeterministic() {
    let keys: Vec<NodeKey> = (1..=4).map(key).collect();
    let named: Vec<(&NodeKey, &str)> = keys.iter().zip(["alice", "bob", "carol", "dave"]).collect();
    let options = TallyOptions { policy: policy(&named), expected_job: Some(job("j")), ledger: None };
    let split = || vec![receipt(&keys[0], job("j"), "x"), receipt(&keys[1], job("j"), "x"), receipt(&keys[3], job("j"), "y")];
    assert_eq!(run(split(), &options).verdict, Verdict::Disputed);
    let mut rs = split();
    rs.extend([receipt(&keys[2], job("j"), "x"), receipt(&keys[2], job("j"), "z")]);
    let t = run(rs, &options);
    assert_eq!(t.verdict, Verdict::Nondeterministic);
    assert_eq!(t.equivocators.iter().map(|e| e.label()).collect::<Vec<_>>(), ["carol"]);
    // A stranger's two outcomes change nothing.
    let mut rs = split();
    rs.extend([receipt(&key(50), job("j"), "x"), receipt(&key(50), job("j"), "z")]);
    assert_eq!(run(rs, &options).verdict, Verdict::Disputed);
    // Nor does an equivocating trusted minority when the rest accept.
    let k5 = key(5);
    let mut five = named.clone();
    five.push((&k5, "erin"));
    let options = TallyOptions { policy: policy(&five), ..options };
    let mut rs: Vec<Vec<u8>> = [&keys[0], &keys[1], &keys[2], &k5].iter().map(|k| receipt(k, job("j"), "x")).collect();
    rs.extend([receipt(&keys[3], job("j"), "x"), receipt(&keys[3], job("j"), "y")]);
    let t = run(rs, &options);
    assert_eq!((t.verdict, t.accepted), (Verdict::Accepted, Some(digest_of("x"))), "dave's receipts are void, 4 of 5 remain");
}

pub fn engine(canon: &str, abi: u32) -> Engine {
    Engine { canon: canon.to_string(), wasmtime: "48.0.8".to_string(), backend: "cranelift".to_string(), determinism_abi: abi }
}

/// A receipt like [`receipt`], made on `engine`.
pub fn receipt_on(k: &NodeKey, j: canon::digest::JobDigest, stdout: &str, engine: Engine) -> Vec<u8> {
    let mut s = statement(k, j, outcome(stdout).summary());
    s.predicate.engine = engine;
    s.sign(k).expect("sign").to_json()
}

/// Issue 12: a node that signed a job, upgraded canon, and signed it again
/// with the new engine's outcome was voided as an equivocator and named a
/// dissenter. Different engines are not equivocation.
#[test]
fn an_upgraded_node_is_neither_voided_nor_a_dissenter() {
    let keys: Vec<NodeKey> = (1..=4).map(key).collect();
    let named: Vec<(&NodeKey, &str)> = keys.iter().zip(["alice", "bob", "carol", "dave"]).collect();
    let options = TallyOptions { policy: policy(&named), expected_job: Some(job("j")), ledger: None };
    let (old, new) = (engine("0.1.0", 2), engine("0.2.0", 3));
    let honest = || keys[..3].iter().map(|k| receipt_on(k, job("j"), "x", old.clone())).collect::<Vec<_>>();
    // dave ran it on both engines (in either order), or only on the new one.
    let both = vec![receipt_on(&keys[3], job("j"), "x", old.clone()), receipt_on(&keys[3], job("j"), "y", new.clone())];
    let reversed: Vec<Vec<u8>> = both.iter().rev().cloned().collect();
    for (what, dave) in
        [("both engines", both), ("both engines, new first", reversed), ("only the new one", vec![receipt_on(&keys[3], job("j"), "y", new.clone())])]
    {
        let mut rs = honest();
        rs.extend(dave);
        let t = run(rs, &options);
        assert_eq!((t.verdict, t.accepted), (Verdict::Accepted, Some(digest_of("x"))), "{what}");
        assert!(t.equivocators.is_empty(), "{what}: {:?}", t.equivocators);
        assert!(t.dissenters.is_empty(), "{what}: {:?}", t.dissenters);
        let accepted = t.accepted_group().expect("accepted");
        assert_eq!(accepted.engines, [EngineVersion::of(&old)], "{what}");
        let other = t.groups.iter().find(|g| g.outcome == digest_of("y")).expect("dave's group");
        assert_eq!((other.engines.as_slice(), other.votes[0].name.as_deref()), ([EngineVersion::of(&new)].as_slice(), Some("dave")), "{what}");
        assert!(t.set_aside.iter().all(|a| a.reason.code() == "superseded"), "{what}: {:?}", t.set_aside);
    }
    // A stranger who signs the accepted outcome on the new engine does not make dave a dissenter.
    let mut rs = honest();
    rs.extend([receipt_on(&keys[3], job("j"), "y", new.clone()), receipt_on(&key(60), job("j"), "x", new.clone())]);
    let t = run(rs, &options);
    assert_eq!(t.verdict, Verdict::Accepted);
    assert!(t.dissenters.is_empty(), "{:?}", t.dissenters);
    // An upgrade that does not change the outcome: one vote, both engines in the group.
    let mut rs = honest();
    rs.extend([receipt_on(&keys[3], job("j"), "x", old.clone()), receipt_on(&keys[3], job("j"), "x", new.clone())]);
    let t = run(rs, &options);
    assert_eq!(t.accepted_group().map(|g| (g.votes.len(), g.engines.clone())), Some((4, vec![EngineVersion::of(&old), EngineVersion::of(&new)])));
    assert_eq!(t.set_aside.iter().map(|a| a.reason.code()).collect::<Vec<_>>(), ["duplicate"]);
    // Two outcomes on one engine, even from two backends, are equivocation:
    // every backend of an engine must give the same bytes.
    let winch = Engine { backend: "winch".to_string(), ..old.clone() };
    let mut rs = honest();
    rs.extend([receipt_on(&keys[3], job("j"), "x", old.clone()), receipt_on(&keys[3], job("j"), "y", winch)]);
    let t = run(rs, &options);
    assert_eq!(t.equivocators.iter().map(|e| e.label()).collect::<Vec<_>>(), ["dave"]);
    // Nodes split between engines are not in dispute: no engine has two outcomes.
    let split = vec![
        receipt_on(&keys[0], job("j"), "x", old.clone()),
        receipt_on(&keys[1], job("j"), "x", old.clone()),
        receipt_on(&keys[2], job("j"), "y", new.clone()),
        receipt_on(&keys[3], job("j"), "y", new.clone()),
    ];
    assert_eq!(run(split, &options).verdict, Verdict::Insufficient);
}

#[test]
fn engines_are_ordered_by_abi_then_versions() {
    let v = |canon: &str, abi: u32| EngineVersion::of(&engine(canon, abi));
    assert!(v("0.10.0", 2) > v("0.9.0", 2), "semantic versions, not text");
    assert!(v("0.1.0", 3) > v("9.0.0", 2), "the ABI first");
    assert!(v("0.1.0", 2) > v("not a version", 2));
    assert_eq!(v("0.1.0", 2).to_string(), "canon 0.1.0 (ABI 2, wasmtime 48.0.8)");
}

#[test]
fn two_tied_groups_are_disputed() {
    let rs = vec![receipt(&key(1), job("j"), "a"), receipt(&key(2), job("j"), "a"), receipt(&key(3), job("j"), "b"), receipt(&key(4), job("j"), "b")];
    let t = run(rs, &implicit());
    assert_eq!(t.verdict, Verdict::Disputed);
    assert_eq!(t.accepted, None);
    // Also a tie where both groups reach a low threshold.
    let mut o = implicit();
    o.policy.threshold = 0.5;
    let rs = vec![receipt(&key(1), job("j"), "a"), receipt(&key(2), job("j"), "a"), receipt(&key(3), job("j"), "b"), receipt(&key(4), job("j"), "b")];
    assert_eq!(run(rs, &o).verdict, Verdict::Disputed);
}

#[test]
fn too_few_receipts_are_insufficient() {
    assert_eq!(run(vec![], &implicit()).verdict, Verdict::Insufficient);
    assert_eq!(run(vec![receipt(&key(1), job("j"), "a")], &implicit()).verdict, Verdict::Insufficient);
    // Agreement, but from too little of the trusted weight: 2 of 5 listed nodes.
    let keys: Vec<NodeKey> = (1..=5).map(key).collect();
    let p = policy(&keys.iter().map(|k| (k, "n")).collect::<Vec<_>>());
    let t = run(vec![receipt(&keys[0], job("j"), "a"), receipt(&keys[1], job("j"), "a")], &TallyOptions { policy: p, ..implicit() });
    assert_eq!(t.verdict, Verdict::Insufficient);
    assert!((t.groups[0].score - 0.4).abs() < 1e-12);
}

/// Honest nodes 1..=4 and mallory (5) are trusted; node 9 is a stranger.
struct Scene {
    honest: Vec<NodeKey>,
    mallory: NodeKey,
    stranger: NodeKey,
    options: TallyOptions,
}

fn scene() -> Scene {
    let honest: Vec<NodeKey> = (1..=4).map(key).collect();
    let mallory = key(5);
    let mut trusted: Vec<(&NodeKey, &str)> = honest.iter().zip(["alice", "bob", "carol", "dave"]).collect();
    trusted.push((&mallory, "mallory"));
    let options = TallyOptions { policy: policy(&trusted), expected_job: Some(job("j")), ledger: None };
    Scene { honest, mallory, stranger: key(9), options }
}

/// Every adversarial receipt, with the reason code the tally must give it
/// (`None`: not set aside, but must not count).
/// One adversarial case: what it is, its receipts, the expected set-aside code.
type Case = (&'static str, Vec<Vec<u8>>, Option<&'static str>);

fn adversarial(s: &Scene) -> Vec<Case> {
    let bad = |k: &NodeKey| receipt(k, job("j"), "bad");
    let mut forged: Envelope = serde_json::from_slice(&bad(&s.mallory)).expect("env");
    forged.signatures[0].sig[3] ^= 0x40;
    let mut impersonated: Envelope = serde_json::from_slice(&bad(&s.mallory)).expect("env");
    impersonated.signatures[0].keyid = s.honest[0].node_id().to_string();
    let mut tampered: Envelope = serde_json::from_slice(&receipt(&s.honest[1], job("j"), "good")).expect("env");
    let p = String::from_utf8(tampered.payload.clone()).expect("utf8").replace(&digest_of("good").to_string(), &digest_of("bad").to_string());
    tampered.payload = p.into_bytes();
    let mut wrong_type: Envelope = serde_json::from_slice(&bad(&s.mallory)).expect("env");
    wrong_type = Envelope::sign("application/json", wrong_type.payload, &s.mallory);
    let mut other_codec: serde_json::Value = serde_json::from_slice(&bad(&s.mallory)).expect("json");
    other_codec["signatures"][0]["keyid"] = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme".into();
    let mut inconsistent = payload_of(&bad(&s.mallory));
    inconsistent["predicate"]["outcome"]["digest"] = digest_of("good").to_string().into();
    let truncated = {
        let r = bad(&s.mallory);
        r[..r.len() - 20].to_vec()
    };
    let mut bad_b64: serde_json::Value = serde_json::from_slice(&bad(&s.mallory)).expect("json");
    bad_b64["signatures"][0]["sig"] = base64::engine::general_purpose::STANDARD.encode([1u8; 63]).into();
    vec![
        ("forged signature (bit flip)", vec![forged.to_json()], Some("bad_signature")),
        ("signed by a key other than keyid", vec![impersonated.to_json()], Some("bad_signature")),
        ("payload tampered after signing", vec![tampered.to_json()], Some("bad_signature")),
        ("receipt for another job (replay)", vec![receipt(&s.mallory, job("other"), "bad")], Some("wrong_job")),
        ("same node voting twice, same outcome", vec![receipt(&s.honest[0], job("j"), "good")], Some("duplicate")),
        ("same node voting twice, different outcomes", vec![receipt(&s.mallory, job("j"), "good"), bad(&s.mallory)], Some("equivocation")),
        ("unknown node", vec![bad(&s.stranger)], None),
        ("malformed JSON", vec![b"{\"payload\": ".to_vec()], Some("malformed_envelope")),
        ("truncated JSON", vec![truncated], Some("malformed_envelope")),
        ("wrong payload type", vec![wrong_type.to_json()], Some("wrong_payload_type")),
        ("non-ed25519 keyid", vec![other_codec.to_string().into_bytes()], Some("bad_keyid")),
        ("63-byte signature", vec![bad_b64.to_string().into_bytes()], Some("bad_signature_encoding")),
        ("outcome digest inconsistent with its parts", vec![sign_payload(&s.mallory, &inconsistent)], Some("outcome_digest_mismatch")),
    ]
}

fn honest_receipts(s: &Scene) -> Vec<Vec<u8>> {
    s.honest.iter().map(|k| receipt(k, job("j"), "good")).collect()
}

#[test]
fn adversarial_receipts_never_change_what_honest_receipts_decide() {
    let s = scene();
    let base = run(honest_receipts(&s), &s.options);
    assert_eq!(base.verdict, Verdict::Accepted);
    assert_eq!(base.accepted, Some(digest_of("good")));
    assert!((base.groups[0].score - 0.8).abs() < 1e-12, "4 of 5 trusted");

    let mut everything = honest_receipts(&s);
    for (what, extra, code) in adversarial(&s) {
        everything.extend(extra.iter().cloned());
        let mut rs = honest_receipts(&s);
        rs.extend(extra.iter().cloned());
        let t = run(rs, &s.options);
        assert_eq!(t.verdict, Verdict::Accepted, "{what}");
        assert_eq!(t.accepted, base.accepted, "{what}");
        let good = t.accepted_group().expect("group");
        assert_eq!(good.votes.iter().map(|v| v.node).collect::<Vec<_>>(), base.groups[0].votes.iter().map(|v| v.node).collect::<Vec<_>>(), "{what}");
        assert!((good.score - base.groups[0].score).abs() < 1e-12, "{what}");
        match code {
            Some(code) => {
                assert!(!t.set_aside.is_empty(), "{what}: nothing set aside");
                assert!(t.set_aside.iter().all(|a| a.reason.code() == code), "{what}: {:?}", t.set_aside);
            }
            None => {
                // The stranger is listed, with weight 0, in its own group.
                let g = t.groups.iter().find(|g| g.outcome == digest_of("bad")).expect("stranger's group");
                assert_eq!((g.counted, g.weight, g.votes[0].trusted), (0, 0.0, false), "{what}");
            }
        }
    }
    // All of them at once.
    let t = run(everything, &s.options);
    assert_eq!((t.verdict, t.accepted), (Verdict::Accepted, base.accepted));
    assert_eq!(t.equivocators.len(), 1);
    assert_eq!(t.equivocators[0].name.as_deref(), Some("mallory"));
}

#[test]
fn equivocation_voids_every_vote_of_the_node() {
    let s = scene();
    let mut rs = honest_receipts(&s)[..2].to_vec();
    rs.push(receipt(&s.mallory, job("j"), "good"));
    rs.push(receipt(&s.mallory, job("j"), "bad"));
    let t = run(rs, &s.options);
    assert!(t.groups.iter().all(|g| g.votes.iter().all(|v| v.node != s.mallory.node_id())));
    assert_eq!(t.set_aside.iter().filter(|a| matches!(a.reason, SetAsideReason::Equivocation { .. })).count(), 2);
}

/// A small deterministic shuffle (xorshift), so orderings vary without a dependency.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

#[test]
fn byzantine_minority_never_flips_an_accepted_verdict() {
    for n in 3..=10u8 {
        let f = (n - 1) / 3; // the largest F with 3F < N
        let keys: Vec<NodeKey> = (1..=n).map(key).collect();
        let named: Vec<(&NodeKey, &str)> = keys.iter().map(|k| (k, "n")).collect();
        for (label, options) in [("policy", TallyOptions { policy: policy(&named), ..implicit() }), ("implicit", implicit())] {
            for seed in 1..=4u64 {
                let mut rs: Vec<Vec<u8>> = Vec::new();
                for (i, k) in keys.iter().enumerate() {
                    if i < f as usize {
                        // Byzantine: collude on one wrong outcome, and try every trick too.
                        rs.push(receipt(k, job("j"), "wrong"));
                        rs.push(receipt(k, job("j"), "wrong"));
                        rs.push(receipt(k, job("other"), "wrong"));
                    } else {
                        rs.push(receipt(k, job("j"), "right"));
                    }
                }
                shuffle(&mut rs, seed * 7919 + u64::from(n));
                let t = run(rs, &options);
                assert_eq!(t.verdict, Verdict::Accepted, "N={n} F={f} {label} seed={seed}");
                assert_eq!(t.accepted, Some(digest_of("right")), "N={n} F={f} {label}");
                assert_eq!(t.dissenters.len(), f as usize);
            }
        }
    }
}

/// What a quorum cannot do: a colluding majority of the trusted weight wins.
/// The tally reports it as exactly what it is: accepted, for their outcome,
/// with the honest minority named as dissenters.
#[test]
fn colluding_majority_is_accepted_for_the_wrong_outcome_and_reported_as_such() {
    let keys: Vec<NodeKey> = (1..=4).map(key).collect();
    let named: Vec<(&NodeKey, &str)> = keys.iter().zip(["honest", "evil1", "evil2", "evil3"]).collect();
    let mut rs = vec![receipt(&keys[0], job("j"), "right")];
    rs.extend(keys[1..].iter().map(|k| receipt(k, job("j"), "wrong")));
    let t = run(rs, &TallyOptions { policy: policy(&named), ..implicit() });
    assert_eq!(t.verdict, Verdict::Accepted);
    assert_eq!(t.accepted, Some(digest_of("wrong")));
    assert_eq!(t.dissenters.iter().map(|d| d.label()).collect::<Vec<_>>(), ["honest"]);
}

/// Issue 12: under a policy trusting three nodes, four fresh keys signing
/// receipts for another job made that job the tallied one (it had more
/// signers), and the trusted nodes' agreement was set aside as replays.
#[test]
fn strangers_signing_another_job_never_change_the_verdict() {
    let honest: Vec<NodeKey> = (1..=3).map(key).collect();
    let named: Vec<(&NodeKey, &str)> = honest.iter().zip(["alice", "bob", "carol"]).collect();
    let options = TallyOptions { policy: policy(&named), ..implicit() };
    let honest_receipts = || honest.iter().map(|k| receipt(k, job("hello"), "good")).collect::<Vec<_>>();
    let base = run(honest_receipts(), &options);
    assert_eq!((base.verdict, base.job), (Verdict::Accepted, Some(job("hello"))));
    for strangers in [1u8, 4, 10, 40] {
        // All on one other job, each on its own job, and on the tallied job with another outcome.
        let attacks: [(&str, Vec<Vec<u8>>); 3] = [
            ("one other job", (0..strangers).map(|i| receipt(&key(100 + i), job("other"), "bad")).collect()),
            ("many other jobs", (0..strangers).map(|i| receipt(&key(100 + i), job(&format!("other{i}")), "bad")).collect()),
            ("the same job", (0..strangers).map(|i| receipt(&key(100 + i), job("hello"), "bad")).collect()),
        ];
        for (what, extra) in attacks {
            let mut rs = honest_receipts();
            rs.extend(extra);
            shuffle(&mut rs, u64::from(strangers));
            let t = run(rs, &options);
            assert_eq!(t.job, Some(job("hello")), "{strangers} strangers, {what}");
            assert_eq!((t.verdict, t.accepted), (base.verdict, base.accepted), "{strangers} strangers, {what}");
            assert_eq!(t.total_weight, base.total_weight, "{strangers} strangers, {what}");
            assert!(t.dissenters.is_empty(), "{strangers} strangers, {what}: strangers are no dissenters: {:?}", t.dissenters);
        }
    }
}

#[test]
fn job_is_the_heaviest_when_not_given_and_replays_are_set_aside() {
    let mut rs: Vec<Vec<u8>> = (1..=3).map(|n| receipt(&key(n), job("j"), "a")).collect();
    rs.push(receipt(&key(4), job("old"), "a"));
    let t = run(rs, &implicit());
    assert_eq!(t.job, Some(job("j")));
    assert_eq!(t.verdict, Verdict::Accepted);
    assert_eq!(t.set_aside.len(), 1);
    assert!(matches!(t.set_aside[0].reason, SetAsideReason::WrongJob { found, .. } if found == job("old")));
    // The stale node is not part of the implicit total weight.
    assert!((t.total_weight - 3.0).abs() < 1e-12);
}

#[test]
fn ledger_records_once_and_credibility_weights_votes() {
    let keys: Vec<NodeKey> = (1..=3).map(key).collect();
    let named: Vec<(&NodeKey, &str)> = keys.iter().zip(["a", "b", "c"]).collect();
    let mut options = TallyOptions { policy: policy(&named), ..implicit() };
    let mut ledger = Ledger::default();
    for round in 0..5 {
        let j = job(&format!("j{round}"));
        let rs = vec![receipt(&keys[0], j, "x"), receipt(&keys[1], j, "x"), receipt(&keys[2], j, "y")];
        options.expected_job = Some(j);
        let t = run(rs, &options);
        assert_eq!(t.verdict, Verdict::Accepted);
        assert_eq!(ledger.record(&t), Ok(3));
        assert_eq!(ledger.record(&t), Ok(0), "a job is recorded once");
    }
    assert_eq!(ledger.record_of(&keys[0].node_id()).agreed, 5);
    assert_eq!(ledger.record_of(&keys[2].node_id()).dissented, 5);

    options.policy.credibility = true;
    options.ledger = Some(ledger.clone());
    let j = job("next");
    options.expected_job = Some(j);
    let t = run(vec![receipt(&keys[0], j, "x"), receipt(&keys[2], j, "y")], &options);
    let weight = |n: &NodeKey| t.groups.iter().flat_map(|g| &g.votes).find(|v| v.node == n.node_id()).expect("vote").weight;
    assert!(weight(&keys[0]) > 0.9 && weight(&keys[2]) < 0.2, "{} {}", weight(&keys[0]), weight(&keys[2]));
    assert!(t.groups.iter().all(|g| (0.0..=1.0).contains(&g.score)));

    let dir = util::scratch();
    let path = dir.path().join("ledger.json");
    ledger.save(&path).expect("save");
    assert_eq!(Ledger::load(&path).expect("load"), ledger);
}

/// Issue 12: the ledger was updated under the implicit policy, where every
/// key is a vote, so throwaway keys could out-vote honest nodes and record
/// them as dissenters; and only the first tally of a job was recorded.
#[test]
fn the_ledger_cannot_be_gamed_by_key_count() {
    let honest: Vec<NodeKey> = (1..=3).map(key).collect();
    let named: Vec<(&NodeKey, &str)> = honest.iter().zip(["alice", "bob", "carol"]).collect();
    let honest_receipts = || honest.iter().map(|k| receipt(k, job("j"), "x")).collect::<Vec<_>>();

    // Under the implicit policy seven throwaway keys win the verdict, but nothing is recorded.
    let mut rs = honest_receipts();
    rs.extend((0..7u8).map(|i| receipt(&key(100 + i), job("j"), "y")));
    let t = run(rs, &implicit());
    assert_eq!((t.verdict, t.accepted), (Verdict::Accepted, Some(digest_of("y"))));
    let mut ledger = Ledger::default();
    assert_eq!(ledger.record(&t), Err(canon::quorum::NotRecorded::ImplicitPolicy));
    assert_eq!(ledger, Ledger::default());

    // Under a policy, any number of strangers, doing anything, records exactly what the honest nodes alone do.
    let options = TallyOptions { policy: policy(&named), expected_job: Some(job("j")), ledger: None };
    let mut alone = Ledger::default();
    assert_eq!(alone.record(&run(honest_receipts(), &options)), Ok(3));
    for strangers in [1u8, 10, 50] {
        let mut rs = honest_receipts();
        rs.extend((0..strangers).map(|i| receipt(&key(100 + i), job("j"), "y")));
        rs.extend((0..strangers).map(|i| receipt(&key(150 + i), job("j"), "x")));
        rs.extend((0..strangers).map(|i| receipt(&key(200 + i), job("other"), "x")));
        let mut ledger = Ledger::default();
        assert_eq!(ledger.record(&run(rs, &options)), Ok(3), "{strangers} strangers");
        assert_eq!(ledger, alone, "{strangers} strangers");
        assert_eq!(ledger.record_of(&key(100).node_id()), Default::default());
        assert_eq!(ledger.record_of(&key(150).node_id()), Default::default(), "agreeing costs a stranger nothing and earns nothing");
    }

    // A policy that gives strangers weight lets key count decide: not recorded.
    let mut weighted = options.clone();
    weighted.policy.unknown_weight = 0.5;
    let t = run(honest_receipts(), &weighted);
    assert_eq!(t.verdict, Verdict::Accepted);
    assert_eq!(Ledger::default().record(&t), Err(canon::quorum::NotRecorded::UnlistedWeight(0.5)));
}

#[test]
fn the_ledger_records_late_receipts_and_not_the_order_of_tallies() {
    let keys: Vec<NodeKey> = (1..=4).map(key).collect();
    let named: Vec<(&NodeKey, &str)> = keys.iter().zip(["alice", "bob", "carol", "dave"]).collect();
    let mut p = policy(&named);
    p.threshold = 0.5;
    let options = TallyOptions { policy: p, expected_job: Some(job("j")), ledger: None };
    let early = run(vec![receipt(&keys[0], job("j"), "x"), receipt(&keys[1], job("j"), "x")], &options);
    let all = run(
        vec![receipt(&keys[0], job("j"), "x"), receipt(&keys[1], job("j"), "x"), receipt(&keys[2], job("j"), "y"), receipt(&keys[3], job("j"), "x")],
        &options,
    );
    let mut first = Ledger::default();
    assert_eq!(first.record(&early), Ok(2));
    assert_eq!(first.record(&all), Ok(2), "carol's late dissent and dave's late agreement count");
    let mut second = Ledger::default();
    assert_eq!(second.record(&all), Ok(4));
    assert_eq!(second.record(&early), Ok(0));
    assert_eq!(first, second);
    assert_eq!(first.record_of(&keys[2].node_id()), canon::quorum::Record { agreed: 0, dissented: 1 });
    // A node that agreed and is later shown to have signed another outcome on the same engine dissented.
    let liar = run(
        vec![receipt(&keys[0], job("j"), "x"), receipt(&keys[1], job("j"), "x"), receipt(&keys[3], job("j"), "x"), receipt(&keys[3], job("j"), "z")],
        &options,
    );
    assert_eq!(first.record(&liar), Ok(1));
    assert_eq!(first.record_of(&keys[3].node_id()), canon::quorum::Record { agreed: 0, dissented: 1 });
    // An upgraded node on another engine is recorded neither way.
    let new = engine("0.2.0", 3);
    let upgraded =
        run(vec![receipt(&keys[0], job("k"), "x"), receipt(&keys[1], job("k"), "x"), receipt_on(&keys[2], job("k"), "y", new)], &options_for(&options, "k"));
    let mut ledger = Ledger::default();
    assert_eq!(ledger.record(&upgraded), Ok(2));
    assert_eq!(ledger.record_of(&keys[2].node_id()), Default::default());
    // Another outcome accepted for a recorded job is refused.
    let other = run(vec![receipt(&keys[2], job("j"), "y"), receipt(&keys[3], job("j"), "y")], &options);
    assert!(matches!(first.record(&other), Err(canon::quorum::NotRecorded::Conflict { .. })));
    // Round trip, counts derived from the jobs; version 1 ledgers are refused.
    let dir = util::scratch();
    let path = dir.path().join("ledger.json");
    first.save(&path).expect("save");
    assert_eq!(Ledger::load(&path).expect("load"), first);
    fs::write(&path, r#"{"version": 1, "nodes": {}, "jobs": []}"#).expect("write");
    assert!(Ledger::load(&path).expect_err("v1").to_string().contains("version 1"));
}

fn options_for(options: &TallyOptions, name: &str) -> TallyOptions {
    TallyOptions { expected_job: Some(job(name)), ..options.clone() }
}

#[test]
fn tally_json_has_the_documented_fields() {
    let s = scene();
    let mut rs = honest_receipts(&s);
    rs.push(receipt(&s.mallory, job("other"), "bad"));
    let t = run(rs, &s.options);
    let v = serde_json::to_value(&t).expect("json");
    for field in
        ["version", "job", "job_chosen_by", "verdict", "accepted", "policy", "total_weight", "receipts", "groups", "dissenters", "equivocators", "set_aside"]
    {
        assert!(v.get(field).is_some(), "missing {field}");
    }
    assert_eq!(v["verdict"], "accepted");
    assert_eq!(v["version"], 2);
    assert_eq!(v["job_chosen_by"], "expected");
    assert_eq!(v["groups"][0]["engines"][0]["determinism_abi"], canon::receipt::DETERMINISM_ABI);
    assert_eq!(v["groups"][0]["votes"][0]["engine"]["canon"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["groups"][0]["votes"][0]["backend"], "cranelift");
    assert_eq!(v["groups"][0]["votes"][0]["name"], "alice");
    assert_eq!(v["set_aside"][0]["code"], "wrong_job");
    assert_eq!(v["groups"][0]["outcome"], digest_of("good").to_string());
}

/// The receipts and options of `fixtures/vectors/tally-v2.json` (engines
/// named explicitly, so a canon release does not move it): six listed
/// nodes of which one upgraded, one equivocated and one dissented, a
/// replay, a stranger and a forged receipt.
pub fn tally_v2_inputs() -> (TallyOptions, Vec<(String, Vec<u8>)>) {
    let keys: Vec<NodeKey> = (1..=6).map(key).collect();
    let named: Vec<(&NodeKey, &str)> = keys.iter().zip(["alice", "bob", "carol", "dave", "erin", "frank"]).collect();
    let options = TallyOptions { policy: Policy { threshold: 0.5, ..policy(&named) }, expected_job: Some(job("j")), ledger: None };
    let (old, new) = (engine("0.1.0", 2), engine("0.2.0", 3));
    let mut forged: Envelope = serde_json::from_slice(&receipt_on(&keys[4], job("j"), "y", old.clone())).expect("env");
    forged.signatures[0].sig[0] ^= 1;
    let rs = vec![
        receipt_on(&keys[0], job("j"), "x", old.clone()),
        receipt_on(&keys[1], job("j"), "x", Engine { backend: "winch".to_string(), ..old.clone() }),
        receipt_on(&keys[2], job("j"), "x", old.clone()),
        receipt_on(&keys[5], job("j"), "w", old.clone()),
        receipt_on(&keys[3], job("j"), "x", old.clone()),
        receipt_on(&keys[3], job("j"), "y", new.clone()),
        receipt_on(&keys[4], job("j"), "x", old.clone()),
        receipt_on(&keys[4], job("j"), "z", old.clone()),
        receipt_on(&keys[0], job("other"), "x", old.clone()),
        receipt_on(&key(9), job("j"), "y", old.clone()),
        forged.to_json(),
    ];
    (options, labelled(rs))
}

/// `fixtures/vectors/tally-v2.json`: the tally JSON of
/// [`tally_v2_inputs`], and `tally-v2-inputs.json`: those inputs (policy in
/// full, job, each receipt's bytes), so that another implementation can
/// recompute the tally. `CANON_BLESS=1` rewrites them.
#[test]
fn vectors_tally_json() {
    let (options, rs) = tally_v2_inputs();
    let t = tally(&rs, &options);
    assert_eq!((t.verdict, t.accepted), (Verdict::Accepted, Some(digest_of("x"))));
    let json = serde_json::to_string_pretty(&t).expect("json") + "\n";
    crate::receipts::check_vector("tally-v2.json", json.as_bytes());
    let inputs = serde_json::json!({
        "description": "the inputs of tally-v2.json: tally these receipts under this policy, for this job, and get that tally (set_aside reasons are prose and may differ)",
        "policy": canon::web::report::policy_json(&options.policy),
        "expected_job": options.expected_job.map(|j| j.to_string()),
        "receipts": rs.iter().map(|(source, bytes)| serde_json::json!({"source": source, "envelope": String::from_utf8_lossy(bytes)})).collect::<Vec<_>>(),
    });
    let json = serde_json::to_string_pretty(&inputs).expect("json") + "\n";
    crate::receipts::check_vector("tally-v2-inputs.json", json.as_bytes());
}

// ---------------------------------------------------------------- CLI

fn canon(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(util::canon_bin()).current_dir(dir).args(args).output().expect("run canon")
}

#[test]
fn cli_quorum_reads_a_directory_and_shows_trust() {
    let dir = util::scratch();
    let d = dir.path();
    fs::create_dir_all(d.join("receipts/more")).expect("mkdir");
    fs::write(d.join("receipts/a.json"), receipt(&key(1), job("j"), "good")).expect("a");
    fs::write(d.join("receipts/b.json"), receipt(&key(2), job("j"), "good")).expect("b");
    fs::write(d.join("receipts/more/c.json"), receipt(&key(3), job("j"), "bad")).expect("c");
    fs::write(d.join("receipts/more/notes.txt"), "not a receipt").expect("txt");
    fs::write(d.join("receipts/more/broken.json"), "{").expect("broken");

    let out = canon(d, &["quorum", "receipts"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("trusting every node that signed a valid receipt"), "{text}");
    assert!(text.contains("███████░░░ 0.67"), "{text}");
    let engine = format!("canon {} ABI {}", env!("CARGO_PKG_VERSION"), canon::receipt::DETERMINISM_ABI);
    assert!(text.lines().filter(|l| l.contains(&engine)).count() == 2, "each group names its engine: {text}");
    assert!(text.contains("ACCEPTED"), "{text}");
    assert!(text.contains("broken.json") && text.contains("malformed_envelope"), "{text}");

    let policy = format!(
        "min_quorum = 2\nthreshold = 0.75\n[[node]]\nid = \"{}\"\nname = \"alice\"\n[[node]]\nid = \"{}\"\nname = \"bob\"\n[[node]]\nid = \"{}\"\nname = \"carol\"\n",
        key(1).node_id(),
        key(2).node_id(),
        key(3).node_id()
    );
    fs::write(d.join("policy.toml"), policy).expect("policy");
    let out = canon(d, &["quorum", "receipts", "--policy", "policy.toml", "--json", "--job-digest", &job("j").to_string(), "--ledger", "ledger.json"]);
    assert_eq!(out.status.code(), Some(1), "2 of 3 is below 0.75");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(v["verdict"], "disputed");
    assert_eq!(v["groups"][0]["votes"][0]["name"], "alice");
    assert!(!d.join("ledger.json").exists(), "only accepted tallies are recorded");

    // Accepted, but under the implicit policy: not recorded, and canon says why.
    let out = canon(d, &["quorum", "receipts", "--ledger", "ledger.json"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("implicit policy"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!d.join("ledger.json").exists(), "no ledger under the implicit policy");

    fs::write(d.join("policy.toml"), fs::read_to_string(d.join("policy.toml")).expect("policy").replace("threshold = 0.75\n", "")).expect("policy");
    let out = canon(d, &["quorum", "receipts", "--policy", "policy.toml", "--ledger", "ledger.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let ledger = Ledger::load(&d.join("ledger.json")).expect("ledger");
    assert_eq!(ledger.record_of(&key(3).node_id()).dissented, 1);
    assert_eq!(ledger.record_of(&key(1).node_id()).agreed, 1);

    let bad_policy = canon(d, &["quorum", "receipts", "--policy", "nope.toml"]);
    assert_eq!(bad_policy.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&bad_policy.stderr).contains("nope.toml"));
}
