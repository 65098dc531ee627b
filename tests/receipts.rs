//! Receipts: signing, verification, each rejection reason, test vectors,
//! OpenSSH keys, interop with securesystemslib, and the CLI commands that
//! work on single receipts (`keygen`, `verify`, `diff`).

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use canon::digest::{Digest, JobDigest};
use canon::node::{KeyError, NodeKey};
use canon::outcome::{Outcome, OutcomeSummary, Termination, TrapKind};
use canon::receipt::{self, Engine, Envelope, EnvelopeSignature, ReceiptError, RunFacts, RunId, Statement, Timestamp, pae};
use canon::tree::{Node, Tree};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::{Scalar, clamp_integer};
use sha2::{Digest as _, Sha512};

use crate::util;

/// The key of test node `n` (seed: 32 bytes of `n`).
pub fn key(n: u8) -> NodeKey {
    NodeKey::from_seed(&[n; 32])
}

/// The digest of test job `name`.
pub fn job(name: &str) -> JobDigest {
    JobDigest::new(Digest::of(name.as_bytes()))
}

fn file(bytes: &[u8]) -> Node {
    Node::File(Arc::new(bytes.to_vec()))
}

/// A run's outcome whose stdout is `stdout`, with a small output tree.
pub fn outcome(stdout: &str) -> Outcome {
    let mut sub = Tree::new();
    sub.entries.insert("b.bin".into(), file(&[0, 1, 2]));
    let mut out = Tree::new();
    out.entries.insert("a.txt".into(), file(b"a"));
    out.entries.insert("sub".into(), Node::Dir(sub));
    let mut outputs = Tree::new();
    outputs.entries.insert("out".into(), Node::Dir(out));
    Outcome { termination: Termination::Exit(0), fuel_consumed: 12_345, stdout: stdout.as_bytes().to_vec(), stderr: Vec::new(), outputs }
}

/// The statement node `key` makes for `job` and `summary`, with fixed run id and times.
pub fn statement(key: &NodeKey, job: JobDigest, summary: OutcomeSummary) -> Statement {
    let facts = RunFacts {
        job_digest: job,
        run_id: RunId::from_uuid(uuid::Uuid::from_u128(0x6f1c3c9e_2d4b_4c8a_9b7e_0123456789ab)),
        engine: Engine::current("cranelift"),
        outcome: summary,
        started: Timestamp::from_unix(1_767_323_045).expect("time"),
        finished: Timestamp::from_unix(1_767_323_046).expect("time"),
    };
    Statement::new(key.node_id(), facts)
}

/// A signed receipt (envelope JSON) from `key` for `job` with stdout `stdout`.
pub fn receipt(key: &NodeKey, job: JobDigest, stdout: &str) -> Vec<u8> {
    statement(key, job, outcome(stdout).summary()).sign(key).expect("sign").to_json()
}

/// Re-signs an arbitrary payload, for receipts whose statement is made wrong on purpose.
pub fn sign_payload(key: &NodeKey, payload: &serde_json::Value) -> Vec<u8> {
    Envelope::sign(receipt::IN_TOTO_PAYLOAD_TYPE, serde_json::to_vec(payload).expect("json"), key).to_json()
}

/// The statement of a receipt as a JSON value, to edit.
pub fn payload_of(envelope: &[u8]) -> serde_json::Value {
    let env: Envelope = serde_json::from_slice(envelope).expect("envelope");
    serde_json::from_slice(&env.payload).expect("payload")
}

fn verify(bytes: &[u8]) -> Result<receipt::VerifiedReceipt, ReceiptError> {
    receipt::verify_envelope(bytes)
}

#[test]
fn signed_receipt_verifies_and_round_trips() {
    let k = key(1);
    let s = statement(&k, job("j"), outcome("hi").summary());
    let env = s.sign(&k).expect("sign");
    let v = verify(&env.to_json()).expect("verifies");
    assert_eq!(v.statement, s);
    assert_eq!(v.node(), k.node_id());
    // The pretty form verifies too: only the payload bytes are signed.
    assert_eq!(verify(env.to_json_pretty().as_bytes()).expect("pretty").statement, s);
    // Subjects: stdout, stderr, then files (not directories).
    let names: Vec<&str> = s.subject.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["canon:stdout", "canon:stderr", "/out/a.txt", "/out/sub/b.bin"]);
}

#[test]
fn trapped_run_still_signs_and_verifies() {
    let k = key(1);
    let mut o = outcome("partial");
    o.termination = Termination::Trap(TrapKind::OutOfFuel);
    let env = statement(&k, job("j"), o.summary()).sign(&k).expect("sign");
    let v = verify(&env.to_json()).expect("verifies");
    assert_eq!(v.statement.predicate.outcome.termination, Termination::Trap(TrapKind::OutOfFuel));
    let p = payload_of(&env.to_json());
    assert_eq!(p["predicate"]["outcome"]["trap"], "out_of_fuel");
    assert!(p["predicate"]["outcome"].get("exitCode").is_none());
}

#[test]
fn signing_a_statement_for_another_node_is_refused() {
    let s = statement(&key(1), job("j"), outcome("x").summary());
    assert!(matches!(s.sign(&key(2)), Err(receipt::SignError::NodeMismatch { .. })));
}

/// Every way a receipt can be wrong, each with its own reason.
#[test]
fn each_defect_has_its_own_reason() {
    let k = key(1);
    let good = receipt(&k, job("j"), "hi");
    let env: serde_json::Value = serde_json::from_slice(&good).expect("json");

    // Bit flip in the signature.
    let mut e: Envelope = serde_json::from_slice(&good).expect("env");
    e.signatures[0].sig[10] ^= 0x01;
    assert_eq!(verify(&e.to_json()).expect_err("flipped").code(), "bad_signature");

    // Signed by another key than its keyid.
    let mut e: Envelope = serde_json::from_slice(&good).expect("env");
    e.signatures[0].sig = key(2).sign(&e.pae()).to_bytes().to_vec();
    assert_eq!(verify(&e.to_json()).expect_err("other key").code(), "bad_signature");

    // Payload changed after signing (same length, one byte).
    let mut e: Envelope = serde_json::from_slice(&good).expect("env");
    let i = e.payload.iter().position(|&b| b == b'h').expect("an h");
    e.payload[i] = b'H';
    assert_eq!(verify(&e.to_json()).expect_err("tampered").code(), "bad_signature");

    // Malformed and truncated JSON.
    assert_eq!(verify(b"{not json").expect_err("garbage").code(), "malformed_envelope");
    assert_eq!(verify(&good[..good.len() / 2]).expect_err("truncated").code(), "malformed_envelope");
    let mut bad_b64 = env.clone();
    bad_b64["payload"] = "%%%".into();
    assert_eq!(verify(bad_b64.to_string().as_bytes()).expect_err("base64").code(), "malformed_envelope");

    // Wrong payload type (re-signed, so only the type is wrong).
    let mut e: Envelope = serde_json::from_slice(&good).expect("env");
    e = Envelope::sign("application/json", e.payload, &k);
    assert_eq!(verify(&e.to_json()).expect_err("type").code(), "wrong_payload_type");

    // No signature, two signatures.
    let mut none = env.clone();
    none["signatures"] = serde_json::json!([]);
    assert_eq!(verify(none.to_string().as_bytes()).expect_err("none"), ReceiptError::SignatureCount(0));
    let mut two = env.clone();
    let sig = two["signatures"][0].clone();
    two["signatures"] = serde_json::json!([sig.clone(), sig]);
    assert_eq!(verify(two.to_string().as_bytes()).expect_err("two"), ReceiptError::SignatureCount(2));

    // A keyid that is a did:key for another key type (secp256k1), or not a did:key.
    for keyid in ["did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme", "alice", ""] {
        let mut v = env.clone();
        v["signatures"][0]["keyid"] = keyid.into();
        assert_eq!(verify(v.to_string().as_bytes()).expect_err(keyid).code(), "bad_keyid", "{keyid}");
    }
    let mut v = env.clone();
    v["signatures"][0]["keyid"] = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme".into();
    assert!(matches!(verify(v.to_string().as_bytes()), Err(ReceiptError::KeyId(canon::node::ParseNodeIdError::NotEd25519 { .. }))));

    // A short signature.
    let mut v = env.clone();
    v["signatures"][0]["sig"] = base64::engine::general_purpose::STANDARD.encode([0u8; 32]).into();
    assert_eq!(verify(v.to_string().as_bytes()).expect_err("short sig"), ReceiptError::SignatureEncoding(32));

    // Statements made wrong, then properly signed: the signature is fine, the content is not.
    let p = payload_of(&good);
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("wrong_statement_type", Box::new(|p| p["_type"] = "https://in-toto.io/Statement/v0.1".into())),
        ("wrong_predicate_type", Box::new(|p| p["predicateType"] = "https://slsa.dev/provenance/v1".into())),
        ("node_mismatch", Box::new(|p| p["predicate"]["node"] = key(2).node_id().to_string().into())),
        ("malformed_statement", Box::new(|p| p["predicate"]["outcome"]["trap"] = "unreachable".into())),
        ("malformed_statement", Box::new(|p| p["predicate"]["runId"] = "not-a-uuid".into())),
        ("outcome_digest_mismatch", Box::new(|p| p["predicate"]["outcome"]["fuelConsumed"] = 1.into())),
        ("outcome_digest_mismatch", Box::new(|p| p["predicate"]["outcome"]["digest"] = Digest::of(b"x").to_string().into())),
        ("manifest_digest_mismatch", Box::new(|p| p["predicate"]["outcome"]["manifest"][0]["size"] = 99.into())),
        ("malformed_manifest", Box::new(|p| p["predicate"]["outcome"]["manifest"].as_array_mut().expect("list").reverse())),
        ("subject_mismatch", Box::new(|p| p["subject"][2]["digest"]["sha256"] = Digest::of(b"y").to_string().into())),
        ("subject_mismatch", Box::new(|p| p["subject"].as_array_mut().expect("list").truncate(2))),
        (
            "subject_mismatch",
            Box::new(|p| {
                let extra = p["subject"][2].clone();
                p["subject"].as_array_mut().expect("list").push(extra);
            }),
        ),
    ];
    for (code, edit) in cases {
        let mut q = p.clone();
        edit(&mut q);
        let err = verify(&sign_payload(&k, &q)).expect_err(code);
        assert_eq!(err.code(), code, "{err}");
    }
}

#[test]
fn job_check_and_artifacts() {
    let k = key(1);
    let o = outcome("hello\n");
    let v = verify(&statement(&k, job("j"), o.summary()).sign(&k).expect("sign").to_json()).expect("valid");
    v.check_job(&job("j")).expect("same job");
    assert_eq!(v.check_job(&job("other")).expect_err("other job").code(), "job_mismatch");

    let dir = util::scratch();
    fs::write(dir.path().join("stdout"), &o.stdout).expect("stdout");
    fs::write(dir.path().join("stderr"), &o.stderr).expect("stderr");
    o.outputs.write_to(dir.path()).expect("outputs");
    v.check_artifacts(dir.path()).expect("artifacts match");

    fs::write(dir.path().join("out/extra.txt"), b"!").expect("extra");
    assert_eq!(v.check_artifacts(dir.path()).expect_err("extra").code(), "artifact_tree_mismatch");
    fs::remove_file(dir.path().join("out/extra.txt")).expect("rm");
    fs::write(dir.path().join("out/a.txt"), b"b").expect("change");
    assert!(matches!(v.check_artifacts(dir.path()), Err(ReceiptError::ArtifactMismatch { subject, .. }) if subject == "/out/a.txt"));
    fs::remove_file(dir.path().join("stdout")).expect("rm");
    assert_eq!(v.check_artifacts(dir.path()).expect_err("missing").code(), "artifact_missing");
}

/// Issue 12: `canon verify --artifacts DIR` accepted files no subject names
/// outside the mounts the manifest lists, and so under a writable mount the
/// run left empty (the manifest cannot name an empty mount).
#[test]
fn artifacts_refuse_files_no_subject_names() {
    let k = key(1);
    let mut empty = outcome("hello\n");
    empty.outputs = Tree::new();
    empty.outputs.entries.insert("out".into(), Node::Dir(Tree::new()));
    for (what, o) in [("outputs", outcome("hello\n")), ("an empty /out", empty)] {
        let v = verify(&statement(&k, job("j"), o.summary()).sign(&k).expect("sign").to_json()).expect("valid");
        let dir = util::scratch();
        let d = dir.path();
        fs::write(d.join("stdout"), &o.stdout).expect("stdout");
        fs::write(d.join("stderr"), &o.stderr).expect("stderr");
        o.outputs.write_to(d).expect("outputs");
        // canon run's own records beside the artifacts are allowed.
        for record in ["outcome.json", "receipt.json", "receipt-2.json"] {
            fs::write(d.join(record), "{}").expect("record");
        }
        v.check_artifacts(d).unwrap_or_else(|e| panic!("{what}: {e}"));
        for extra in ["out/evil.bin", "evil.bin", "logs/evil.bin", "receipt-x.json"] {
            let path = d.join(extra);
            fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            fs::write(&path, b"!").expect("extra");
            let err = v.check_artifacts(d).expect_err(&format!("{what}: {extra} accepted"));
            assert_eq!(err.code(), "artifact_tree_mismatch", "{what}: {extra}: {err}");
            assert!(err.to_string().contains("evil.bin") || err.to_string().contains("receipt-x.json"), "{what}: {err}");
            fs::remove_file(&path).expect("rm");
        }
        // An empty directory no manifest names (a writable mount left empty) is fine.
        fs::create_dir_all(d.join("logs")).expect("mkdir");
        v.check_artifacts(d).unwrap_or_else(|e| panic!("{what}: {e}"));
    }
}

#[test]
fn cli_verify_artifacts_refuses_a_file_under_an_empty_mount() {
    let tmp = util::scratch();
    let key_path = tmp.path().join("node.key");
    assert!(canon(tmp.path(), &["keygen", "--out", key_path.to_str().expect("utf-8")]).status.success());
    let out = tmp.path().join("run");
    let spec = util::fixture("jobs/hello.toml");
    let run = canon(tmp.path(), &["run", spec.to_str().expect("utf-8"), "--key", key_path.to_str().expect("utf-8"), "--out", out.to_str().expect("utf-8")]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let receipt_path = out.join("receipt.json");
    let args = ["verify", "--artifacts", out.to_str().expect("utf-8"), receipt_path.to_str().expect("utf-8")];
    let ok = canon(tmp.path(), &args);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    fs::create_dir_all(out.join("out")).expect("mkdir");
    fs::write(out.join("out/planted.bin"), b"not from the run").expect("plant");
    let refused = canon(tmp.path(), &args);
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stdout));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("/out/planted.bin"), "{}", String::from_utf8_lossy(&refused.stdout));
}

#[test]
fn verify_many_agrees_with_verify_envelope() {
    let mut inputs = Vec::new();
    for n in 1..=150u8 {
        let mut r = receipt(&key(n), job("j"), "hi");
        if n % 37 == 0 {
            let last = r.len() - 5;
            r[last] ^= 1; // inside the base64 signature, or breaks the JSON
        }
        inputs.push(r);
    }
    let many = receipt::verify_many(&inputs);
    for (bytes, got) in inputs.iter().zip(many) {
        assert_eq!(got, verify(bytes));
    }
}

// ---------------------------------------------------------------- vectors

/// The vector key's seed: bytes 0, 1, ..., 31.
fn vector_key() -> NodeKey {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    NodeKey::from_seed(&seed)
}

fn vector_statement() -> Statement {
    statement(&vector_key(), job("canon test vector job"), outcome("hello\n").summary())
}

/// Compares `bytes` with the vector file, or writes it when `CANON_BLESS=1`.
pub fn check_vector(name: &str, bytes: &[u8]) {
    let path = util::fixture(&format!("vectors/{name}"));
    if std::env::var_os("CANON_BLESS").is_some() {
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        fs::write(&path, bytes).expect("bless");
        return;
    }
    let want = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run with CANON_BLESS=1 to create)", path.display()));
    assert!(want == bytes, "{} differs from what canon computes now:\n{}", path.display(), String::from_utf8_lossy(bytes));
}

#[test]
fn vectors_keys() {
    let k = vector_key();
    let openssh = k.to_openssh("canon test vector key").expect("openssh");
    let v = serde_json::json!({
        "description": "canon node key test vector: ed25519 seed = bytes 0..31; did:key = 'did:key:z' + base58btc(0xed 0x01 || public key)",
        "seed_hex": hex::encode(std::array::from_fn::<u8, 32, _>(|i| i as u8)),
        "public_hex": k.node_id().to_hex(),
        "did_key": k.node_id().to_string(),
        "openssh_private_key": openssh.as_str(),
    });
    check_vector("keys.json", format!("{}\n", serde_json::to_string_pretty(&v).expect("json")).as_bytes());
    // The stored OpenSSH text loads back to the same node.
    let dir = util::scratch();
    let path = dir.path().join("k");
    fs::write(&path, openssh.as_bytes()).expect("write");
    assert_eq!(NodeKey::load(&path).expect("load").node_id(), k.node_id());
}

#[test]
fn vectors_dsse_pae() {
    let cases = [("http://example.com/HelloWorld", "hello world"), ("application/vnd.in-toto+json", ""), ("", "")];
    let list: Vec<_> = cases
        .iter()
        .map(|(t, p)| {
            let bytes = pae(t, p.as_bytes());
            serde_json::json!({"payloadType": t, "payload": p, "pae": String::from_utf8(bytes.clone()).expect("utf8"), "pae_hex": hex::encode(&bytes)})
        })
        .collect();
    assert_eq!(list[0]["pae"], "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
    let v = serde_json::json!({"description": "DSSE v1 PAE: 'DSSEv1' SP LEN(type) SP type SP LEN(body) SP body; the first case is the DSSE specification's own example", "cases": list});
    check_vector("dsse-pae.json", format!("{}\n", serde_json::to_string_pretty(&v).expect("json")).as_bytes());
}

#[test]
fn vectors_receipt() {
    let s = vector_statement();
    let env = s.sign(&vector_key()).expect("sign");
    // The statement as signed (compact JSON, no trailing newline), its PAE, the envelope.
    check_vector("receipt-statement.json", &env.payload);
    check_vector("receipt-pae.hex", format!("{}\n", hex::encode(env.pae())).as_bytes());
    check_vector("receipt-envelope.json", &env.to_json());
    // And the stored envelope verifies to the same statement.
    let stored = fs::read(util::fixture("vectors/receipt-envelope.json")).expect("vector");
    assert_eq!(verify(&stored).expect("vector verifies").statement, s);
}

/// A receipt of a signed job names the request it answered; the field is
/// pinned, and a receipt of an unsigned job (the vector above) has none.
#[test]
fn vectors_receipt_answering_a_signed_request() {
    let request =
        canon::receipt::JobRequestRef { submitter: canon::node::NodeKey::from_seed(&[42; 32]).node_id(), sha256: canon::digest::Digest::of(b"request") };
    let s = vector_statement().answering(request.clone());
    let env = s.sign(&vector_key()).expect("sign");
    check_vector("receipt-request-statement.json", &env.payload);
    let v: serde_json::Value = serde_json::from_slice(&env.payload).expect("json");
    assert_eq!(v["predicate"]["jobRequest"]["submitter"], request.submitter.to_string());
    assert_eq!(verify(&env.to_json()).expect("verifies").statement.predicate.job_request, Some(request));
    let plain: serde_json::Value = serde_json::from_slice(&vector_statement().sign(&vector_key()).expect("sign").payload).expect("json");
    assert!(plain["predicate"].get("jobRequest").is_none());
}

// ---------------------------------------------------------------- OpenSSH keys

/// The Python that has tests/interop/requirements.txt installed:
/// `$CANON_PYTHON` (set by scripts/test.sh to its virtualenv), else `python3`.
fn python() -> std::ffi::OsString {
    std::env::var_os("CANON_PYTHON").unwrap_or_else(|| "python3".into())
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-V").output().is_ok() || Command::new(tool).arg("--version").output().is_ok()
}

/// Skips loudly locally, fails under CI, when a tool is missing.
fn require(tool: &str, why: &str) -> bool {
    if have(tool) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{tool} is required in CI ({why})");
    }
    eprintln!("\n*** SKIPPED: {tool} not found ({why}); this test fails when CI is set ***\n");
    false
}

fn ssh_keygen(dir: &Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen").args(extra).args(["-q", "-C", "test", "-f"]).arg(&path).status().expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen {extra:?} failed");
    path
}

#[test]
fn ssh_keygen_ed25519_key_signs_receipts_canon_verifies() {
    if !require("ssh-keygen", "apt-get install -y openssh-client") {
        return;
    }
    let dir = util::scratch();
    let path = ssh_keygen(dir.path(), "id_ed25519", &["-t", "ed25519", "-N", ""]);
    let k = NodeKey::load(&path).expect("ssh-keygen key loads");
    // The did:key is the same key ssh-keygen wrote in the .pub file.
    let pubfile = fs::read_to_string(path.with_extension("pub")).expect("pub");
    let blob = base64::engine::general_purpose::STANDARD.decode(pubfile.split_whitespace().nth(1).expect("blob")).expect("b64");
    assert_eq!(&blob[blob.len() - 32..], k.node_id().as_bytes());
    let v = verify(&receipt(&k, job("j"), "x")).expect("verifies");
    assert_eq!(v.node(), k.node_id());
}

#[test]
fn other_key_types_and_encrypted_keys_are_clear_errors() {
    if !require("ssh-keygen", "apt-get install -y openssh-client") {
        return;
    }
    let dir = util::scratch();
    let rsa = ssh_keygen(dir.path(), "id_rsa", &["-t", "rsa", "-b", "2048", "-N", ""]);
    let err = NodeKey::load(&rsa).expect_err("rsa");
    assert!(matches!(err, KeyError::NotEd25519 { ref algorithm, .. } if algorithm == "ssh-rsa"), "{err}");
    assert!(err.to_string().contains("id_rsa"));
    let ecdsa = ssh_keygen(dir.path(), "id_ecdsa", &["-t", "ecdsa", "-N", ""]);
    assert!(matches!(NodeKey::load(&ecdsa), Err(KeyError::NotEd25519 { .. })));
    let enc = ssh_keygen(dir.path(), "id_enc", &["-t", "ed25519", "-N", "secret passphrase"]);
    let err = NodeKey::load(&enc).expect_err("encrypted");
    assert!(matches!(err, KeyError::Encrypted { .. }), "{err}");
    assert!(err.to_string().contains("unencrypted"), "{err}");
    let pem = ssh_keygen(dir.path(), "id_pem", &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""]);
    assert!(matches!(NodeKey::load(&pem), Err(KeyError::NotOpenSsh { .. })));
    assert!(matches!(NodeKey::load(&rsa.with_extension("pub")), Err(KeyError::NotOpenSsh { .. })));
}

// ---------------------------------------------------------------- interop

#[test]
fn securesystemslib_verifies_a_canon_envelope() {
    let script = util::root().join("tests/interop/verify_securesystemslib.py");
    let probe = Command::new(python()).args(["-c", "import securesystemslib.dsse, securesystemslib.signer, cryptography"]).output();
    let available = matches!(&probe, Ok(o) if o.status.success());
    if !available {
        if std::env::var_os("CI").is_some() {
            panic!("python3 with securesystemslib[crypto] is required in CI: pip install -r tests/interop/requirements.txt");
        }
        eprintln!("\n*** SKIPPED: python3/securesystemslib missing (pip install -r tests/interop/requirements.txt); this test fails when CI is set ***\n");
        return;
    }
    let dir = util::scratch();
    let k = vector_key();
    let env_path = dir.path().join("receipt.json");
    fs::write(&env_path, vector_statement().sign(&k).expect("sign").to_json_pretty()).expect("write");
    let out = Command::new(python()).arg(&script).arg(&env_path).arg(k.node_id().to_string()).arg(k.node_id().to_hex()).output().expect("run python3");
    assert!(
        out.status.success(),
        "securesystemslib rejected canon's envelope:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------- CLI

fn canon(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(util::canon_bin()).current_dir(dir).args(args).output().expect("run canon")
}

#[test]
fn cli_keygen_writes_a_key_and_prints_only_the_id() {
    let dir = util::scratch();
    let out = canon(dir.path(), &["keygen"]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8(out.stdout).expect("utf8");
    assert!(id.trim().starts_with("did:key:z6Mk"), "{id}");
    let k = NodeKey::load(&dir.path().join("node.key")).expect("load");
    assert_eq!(k.node_id().to_string(), id.trim());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("PRIVATE"));
    let again = canon(dir.path(), &["keygen"]);
    assert_eq!(again.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn cli_verify_and_diff() {
    let dir = util::scratch();
    let d = dir.path();
    fs::write(d.join("a.json"), receipt(&key(1), job("j"), "one")).expect("a");
    fs::write(d.join("b.json"), receipt(&key(2), job("j"), "two")).expect("b");
    let mut bad = receipt(&key(3), job("j"), "one");
    let n = bad.len();
    bad[n - 10] ^= 1;
    fs::write(d.join("bad.json"), bad).expect("bad");

    let ok = canon(d, &["verify", "a.json", "b.json", "--job-digest", &job("j").to_string()]);
    assert!(ok.status.success(), "{ok:?}");
    let wrong_job = canon(d, &["verify", "a.json", "--job-digest", &job("k").to_string()]);
    assert_eq!(wrong_job.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong_job.stdout).contains("job_mismatch"));
    let fail = canon(d, &["verify", "a.json", "bad.json"]);
    assert_eq!(fail.status.code(), Some(1));

    let diff = canon(d, &["diff", "a.json", "b.json"]);
    assert_eq!(diff.status.code(), Some(1));
    let text = String::from_utf8_lossy(&diff.stdout);
    assert!(text.contains("stdout       DIFFERS"), "{text}");
    assert!(text.contains("files        same"), "{text}");
    let same = canon(d, &["diff", "a.json", "a.json"]);
    assert!(same.status.success());
}

// ---------------------------------------------------------------- crafted signatures

/// A point of order 8 (the list of small-order points in Chalkias, Garillot
/// and Nikolaenko, "Taming the many EdDSAs", 2020).
const ORDER_8_POINT: &str = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a";

/// The identity point, the simplest small-order point.
const IDENTITY_POINT: &str = "0100000000000000000000000000000000000000000000000000000000000000";

/// The group order ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
const ELL: [u8; 32] =
    [0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10];

fn point(hex_text: &str) -> EdwardsPoint {
    let bytes: [u8; 32] = hex::decode(hex_text).expect("hex").try_into().expect("32 bytes");
    CompressedEdwardsY(bytes).decompress().expect("a curve point")
}

/// ed25519's challenge, SHA-512(R ‖ A ‖ M) mod ℓ (RFC 8032, 5.1.7).
fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(message);
    Scalar::from_bytes_mod_order_wide(&h.finalize().into())
}

/// The vector key's secret scalar: the clamped first half of SHA-512(seed) (RFC 8032, 5.1.5).
fn vector_secret() -> Scalar {
    let seed: [u8; 32] = std::array::from_fn(|i| i as u8);
    let h = Sha512::digest(seed);
    Scalar::from_bytes_mod_order(clamp_integer(h[..32].try_into().expect("32 bytes")))
}

/// A nonce for crafted signatures, derived from the message (any scalar would do).
fn nonce(message: &[u8]) -> Scalar {
    Scalar::from_bytes_mod_order_wide(&Sha512::new().chain_update(b"canon crafted nonce").chain_update(message).finalize().into())
}

/// `s + ℓ`: the same scalar, non-canonically encoded (it still fits in 253 bits).
fn plus_ell(s: [u8; 32]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(s[i]) + u16::from(ELL[i]) + carry;
        out[i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    out
}

/// An envelope of `payload` carrying the signature (R, S) under `keyid`.
fn envelope_with(payload: &[u8], keyid: &str, r: [u8; 32], s: [u8; 32]) -> Envelope {
    let mut sig = r.to_vec();
    sig.extend_from_slice(&s);
    Envelope {
        payload: payload.to_vec(),
        payload_type: receipt::IN_TOTO_PAYLOAD_TYPE.to_string(),
        signatures: vec![EnvelopeSignature { keyid: keyid.to_string(), sig }],
    }
}

/// The did:key of raw public key bytes, written without canon's checks.
fn did_key_of(bytes: &[u8; 32]) -> String {
    let mut b = vec![0xed, 0x01];
    b.extend_from_slice(bytes);
    format!("did:key:z{}", bs58::encode(b).into_string())
}

/// Receipts whose signatures are crafted: each case, what it covers, its envelope.
fn crafted() -> Vec<(&'static str, &'static str, Envelope)> {
    let key = vector_key();
    let a = vector_secret();
    let pk = *key.node_id().as_bytes();
    assert_eq!(EdwardsPoint::mul_base(&a).compress().to_bytes(), pk, "the secret scalar is the vector key's");
    let valid = vector_statement().sign(&key).expect("sign");
    let payload = valid.payload.clone();
    let message = valid.pae();
    let keyid = key.node_id().to_string();
    let small_order_r = |r: EdwardsPoint| {
        // S = k·a, so [S]B = [k]A and the cofactored equation [8]([S]B − R − [k]A) = 0 holds.
        let r = r.compress().to_bytes();
        envelope_with(&payload, &keyid, r, (challenge(&r, &pk, &message) * a).to_bytes())
    };
    // R = [r]B + T, T of order 8, and S = r + k·a: only the torsion part is wrong.
    let mixed_r = {
        let r = nonce(&message);
        let big_r = (EdwardsPoint::mul_base(&r) + point(ORDER_8_POINT)).compress().to_bytes();
        envelope_with(&payload, &keyid, big_r, (r + challenge(&big_r, &pk, &message) * a).to_bytes())
    };
    let non_canonical_s = {
        let sig = &valid.signatures[0].sig;
        let (r, s): ([u8; 32], [u8; 32]) = (sig[..32].try_into().expect("R"), sig[32..].try_into().expect("S"));
        envelope_with(&payload, &keyid, r, plus_ell(s))
    };
    // A public key that is the identity: R = identity and S = 0 satisfy every equation.
    let small_order_key = {
        let identity = point(IDENTITY_POINT).compress().to_bytes();
        let mut s = vector_statement();
        s.predicate.node = key.node_id();
        envelope_with(&serde_json::to_vec(&s).expect("json"), &did_key_of(&identity), identity, [0; 32])
    };
    // A public key with a torsion component, A = [a]B + T: a node id canon
    // accepts (not of small order), whose holder signs S = r + k·a. Then
    // [S]B − [k]A = R − [k]T, which verify_strict accepts only when k ≡ 0
    // (mod 8); the run id is chosen so that k is not.
    let mixed_key = {
        let mixed = EdwardsPoint::mul_base(&a) + point(ORDER_8_POINT);
        let mixed_pk = mixed.compress().to_bytes();
        let node = canon::node::NodeId::from_bytes(&mixed_pk).expect("a mixed-order key is a valid node id");
        (0u128..)
            .find_map(|n| {
                let mut s = vector_statement();
                s.predicate.node = node;
                s.predicate.run_id = RunId::from_uuid(uuid::Uuid::from_u128(0x6f1c3c9e_2d4b_4c8a_9b7e_0123456789ab + n));
                let payload = serde_json::to_vec(&s).expect("json");
                let message = pae(receipt::IN_TOTO_PAYLOAD_TYPE, &payload);
                let r = nonce(&message);
                let big_r = EdwardsPoint::mul_base(&r).compress().to_bytes();
                let k = challenge(&big_r, &mixed_pk, &message);
                (!k.to_bytes()[0].is_multiple_of(8)).then(|| envelope_with(&payload, &node.to_string(), big_r, (r + k * a).to_bytes()))
            })
            .expect("some run id")
    };
    vec![
        ("valid", "the vector receipt as canon signs it: the control", valid.clone()),
        (
            "small-order-r-identity",
            "R is the identity (order 1), S = k·a: every check but verify_strict's small-order test passes, the batch equation too",
            small_order_r(point(IDENTITY_POINT)),
        ),
        (
            "small-order-r-order-8",
            "R is a point of order 8, S = k·a: the batch equation holds when its random coefficient for this signature is a multiple of 8, so the rest of the batch decides",
            small_order_r(point(ORDER_8_POINT)),
        ),
        (
            "mixed-order-r",
            "R = [r]B + T with T of order 8, S = r + k·a: right but for R's torsion component, which the batch equation misses for one coefficient in 8",
            mixed_r,
        ),
        ("non-canonical-s", "the valid signature with S + ℓ in place of S (S ≥ ℓ)", non_canonical_s),
        ("small-order-key", "keyid is the identity point (a small-order public key), R = identity, S = 0", small_order_key),
        (
            "mixed-order-key",
            "public key [a]B + T with T of order 8 (a valid node id), S = r + k·a with k not a multiple of 8: verify_strict rejects, the batch equation misses the torsion for some coefficients",
            mixed_key,
        ),
    ]
}

/// What ed25519-dalek's `verify_strict`, and its batch verification given
/// this one signature, say of an envelope's signature (None: the keyid is
/// not a curve point).
fn dalek_says(env: &Envelope) -> (Option<bool>, Option<bool>) {
    let sig = ed25519_dalek::Signature::from_slice(&env.signatures[0].sig).expect("64 bytes");
    let b58 = env.signatures[0].keyid.strip_prefix("did:key:z").expect("did:key");
    let bytes: [u8; 32] = bs58::decode(b58).into_vec().expect("base58")[2..].try_into().expect("32 bytes");
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&bytes) else { return (None, None) };
    let message = env.pae();
    let strict = key.verify_strict(&message, &sig).is_ok();
    let batch = ed25519_dalek::verify_batch(&[message.as_slice()], &[sig], &[key]).is_ok();
    (Some(strict), Some(batch))
}

fn verdict_of(result: &Result<receipt::VerifiedReceipt, ReceiptError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

/// `fixtures/vectors/receipt-signatures.json`: each crafted receipt, what
/// ed25519-dalek's `verify_strict` and its batch verification (given only
/// that signature) say of it, and what canon says. canon's answer is `ok`
/// exactly when `verify_strict` accepts.
#[test]
fn vectors_crafted_signatures() {
    let cases: Vec<serde_json::Value> = crafted()
        .into_iter()
        .map(|(name, covers, env)| {
            let (strict, batch) = dalek_says(&env);
            let canon_says = verdict_of(&verify(&env.to_json()));
            assert_eq!(canon_says == "ok", strict == Some(true), "{name}: canon says {canon_says}, verify_strict {strict:?}");
            serde_json::json!({
                "name": name,
                "covers": covers,
                "envelope": serde_json::from_slice::<serde_json::Value>(&env.to_json()).expect("json"),
                "verify_strict": strict,
                "batch_of_one": batch,
                "canon": canon_says,
            })
        })
        .collect();
    let v = serde_json::json!({
        "description": "ed25519 signatures crafted against canon receipts (the vector key of keys.json, the vector statement of receipt-statement.json). verify_strict and batch_of_one: what ed25519-dalek 2.2's verify_strict, and its verify_batch given only this signature, say (null: the keyid is not a curve point); in a larger batch the batch answer for the small-order cases depends on the other signatures. canon: the verification code canon gives the receipt, 'ok' exactly when verify_strict accepts, alone or among any other receipts.",
        "cases": cases,
    });
    check_vector("receipt-signatures.json", format!("{}\n", serde_json::to_string_pretty(&v).expect("json")).as_bytes());
    // The stored envelopes get the stored answers.
    let stored: serde_json::Value = serde_json::from_slice(&fs::read(util::fixture("vectors/receipt-signatures.json")).expect("vector")).expect("json");
    for case in stored["cases"].as_array().expect("cases") {
        let bytes = case["envelope"].to_string().into_bytes();
        assert_eq!(verdict_of(&verify(&bytes)), case["canon"], "{}", case["name"]);
    }
}

/// Issue 12: batch verification re-checked a signature strictly only when its
/// batch failed, so a signature with a small-order component counted or not
/// depending on which receipts were verified with it.
#[test]
fn a_receipt_is_valid_exactly_when_verify_strict_accepts_it_whatever_shares_its_batch() {
    let valid: Vec<Vec<u8>> = (1..=255u8).map(|n| receipt(&key(n), job("j"), "hi")).collect();
    let mut broken: Envelope = serde_json::from_slice(&valid[0]).expect("env");
    broken.signatures[0].sig[7] ^= 1;
    let mut with_broken = valid[..100].to_vec();
    with_broken.push(broken.to_json());
    let companies: [(&str, &[Vec<u8>]); 4] = [("alone", &[]), ("one valid", &valid[..1]), ("255 valid", &valid), ("valid and one forged", &with_broken)];
    for (name, _, env) in crafted() {
        let bytes = env.to_json();
        let alone = verdict_of(&verify(&bytes));
        for (company, others) in companies {
            for at in [0, others.len()] {
                let mut batch = others.to_vec();
                batch.insert(at, bytes.clone());
                let results = receipt::verify_many(&batch);
                assert_eq!(verdict_of(&results[at]), alone, "{name}, {company}, at {at}");
                for (i, (b, r)) in batch.iter().zip(&results).enumerate() {
                    assert_eq!(verdict_of(r), verdict_of(&verify(b)), "{name}, {company}: receipt {i}");
                }
            }
        }
    }
}

#[test]
fn verify_and_quorum_agree_on_crafted_signatures() {
    let dir = util::scratch();
    let d = dir.path();
    for (name, _, env) in crafted() {
        fs::create_dir(d.join(name)).expect("mkdir");
        for n in 1..=3u8 {
            fs::write(d.join(name).join(format!("honest-{n}.json")), receipt(&key(n), job("canon test vector job"), "hello\n")).expect("write");
        }
        let file = d.join(name).join("crafted.json");
        fs::write(&file, env.to_json()).expect("write");
        let verify = canon(d, &["verify", file.to_str().expect("utf-8")]);
        let verified = verify.status.code() == Some(0);
        let quorum = canon(d, &["quorum", "--json", d.join(name).to_str().expect("utf-8")]);
        let t: serde_json::Value = serde_json::from_slice(&quorum.stdout).expect("tally json");
        let set_aside = t["set_aside"].as_array().expect("set_aside").iter().any(|a| a["source"].as_str().is_some_and(|s| s.ends_with("crafted.json")));
        assert_eq!(verified, !set_aside, "{name}: canon verify says {}, canon quorum {:#}", String::from_utf8_lossy(&verify.stdout), t["set_aside"]);
        assert_eq!(verified, name == "valid", "{name}");
    }
}
