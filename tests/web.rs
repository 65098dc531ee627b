//! The web side in real headless Chromium: the browser verifier must give
//! every receipt the answer `canon verify` gives it and every set of
//! receipts the tally `canon quorum` computes (the vectors under
//! fixtures/vectors/, and crafted hostile receipts); the static report
//! verifies itself offline and shows an edited receipt as invalid.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/test.sh
//! installs them); `CANON_CHROMEDRIVER` and `CANON_CHROMIUM` override the
//! paths.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use canon::digest::{Digest, JobDigest};
use canon::node::NodeKey;
use canon::quorum::{Policy, TallyOptions, TrustedNode, tally};
use canon::receipt::{self, Envelope};
use serde_json::{Value, json};

use crate::receipts::{job, key, outcome, payload_of, receipt, statement};
use crate::util;

// ---------------------------------------------------------------- the browser

/// A headless Chromium driven over WebDriver by a chromedriver this test
/// started; both end when it is dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::blocking::Client,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn tool(var: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    assert!(path.exists(), "{} not found: install Debian's {package} (scripts/test.sh does), or set {var}", path.display());
    path
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile and
    /// no background networking.
    pub fn start() -> Browser {
        let driver_path = tool("CANON_CHROMEDRIVER", "/usr/bin/chromedriver", "chromium-driver");
        let chromium = tool("CANON_CHROMIUM", "/usr/bin/chromium", "chromium");
        let port = free_port();
        let driver = Command::new(driver_path).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("start chromedriver");
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{base}/status")).send().map(|r| !r.status().is_success()).unwrap_or(true) {
            assert!(Instant::now() < deadline, "chromedriver did not come up on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".to_string(),
            "--disable-gpu".to_string(),
            "--disable-quic".to_string(),
            "--no-first-run".to_string(),
            "--disable-background-networking".to_string(),
            "--disable-component-update".to_string(),
            "--disable-sync".to_string(),
            "--disable-dev-shm-usage".to_string(),
            "--window-size=1280,900".to_string(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
        }}});
        let mut browser = Browser { driver, base, session: String::new(), http, _profile: profile };
        let v = browser.call("POST", "/session", caps);
        browser.session = v["sessionId"].as_str().expect("session id").to_string();
        browser.cmd("POST", "/timeouts", json!({"script": 120_000, "pageLoad": 60_000}));
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "POST" => self.http.post(url).json(&body),
            "DELETE" => self.http.delete(url),
            _ => self.http.get(url),
        };
        let resp = req.send().unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "webdriver {method} {path}: {status}: {v}");
        v.get("value").cloned().unwrap_or(Value::Null).pipe_session(v)
    }

    fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": args}))
    }

    /// Runs `script`, which ends by calling `done(value)`, and returns the value.
    pub fn exec_async(&self, script: &str, args: Value) -> Value {
        let body = format!("const done = arguments[arguments.length - 1];\n{script}");
        self.cmd("POST", "/execute/async", json!({"script": body, "args": args}))
    }

    /// Waits until `condition` (a JavaScript expression) is truthy, and returns it.
    pub fn wait_for(&self, condition: &str, what: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.exec(&format!("return ({condition});"), json!([]));
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what} ({condition}); page text:\n{}", self.text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The page's visible text.
    pub fn text(&self) -> String {
        self.exec("return document.body ? document.body.innerText : '';", json!([])).as_str().unwrap_or_default().to_string()
    }

    /// Saves what the page downloads into `dir`, without asking (Chrome
    /// DevTools' `Browser.setDownloadBehavior`, through chromedriver).
    pub fn allow_downloads(&self, dir: &Path) {
        let params = json!({"behavior": "allow", "downloadPath": dir.display().to_string()});
        self.cmd("POST", "/goog/cdp/execute", json!({"cmd": "Browser.setDownloadBehavior", "params": params}));
    }

    /// Clicks the first element matching `css` as a person would (WebDriver's
    /// element click: scrolled into view, with user activation, which a
    /// download needs).
    pub fn click(&self, css: &str) {
        let found = self.cmd("POST", "/element", json!({"using": "css selector", "value": css}));
        let id = found.as_object().and_then(|o| o.values().next()).and_then(Value::as_str).unwrap_or_else(|| panic!("no element {css}: {found}")).to_string();
        self.cmd("POST", &format!("/element/{id}/click"), json!({}));
    }

    /// Sets the window size (CSS pixels).
    pub fn resize(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", json!({"width": width, "height": height}));
    }

    /// Saves a PNG screenshot of the viewport.
    pub fn screenshot(&self, path: &Path) {
        let v = self.cmd("GET", "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD.decode(v.as_str().expect("screenshot")).expect("png");
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).expect("mkdir");
        }
        fs::write(path, png).expect("write screenshot");
    }
}

trait PipeSession {
    fn pipe_session(self, whole: Value) -> Value;
}

impl PipeSession for Value {
    /// New-session replies put `sessionId` inside `value`; keep it reachable.
    fn pipe_session(self, whole: Value) -> Value {
        if self.get("sessionId").is_some() || whole.get("sessionId").is_none() { self } else { json!({"sessionId": whole["sessionId"]}) }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A page with the browser verifier loaded as `window.canon`, on file://.
fn harness(dir: &Path) -> String {
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>loading</title><script type=module>\n{}\nwindow.canon = {{ verify, tally, tallyJson, implicitPolicy, supported }};\ndocument.title = 'ready';\n</script>",
        canon::web::VERIFY_JS
    );
    let path = dir.join("harness.html");
    fs::write(&path, page).expect("write harness");
    format!("file://{}", path.display())
}

fn open_harness(dir: &Path) -> Browser {
    let b = Browser::start();
    b.goto(&harness(dir));
    b.wait_for("document.title === 'ready'", "the verifier module");
    assert_eq!(b.exec_async("canon.supported().then(done);", json!([])), json!(true), "WebCrypto Ed25519 on a file:// page");
    b
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What the page says of each envelope: "ok" or a reason code.
fn page_verdicts(b: &Browser, cases: &[(String, Vec<u8>, Option<JobDigest>)]) -> Vec<String> {
    let input: Vec<Value> = cases.iter().map(|(_, bytes, job)| json!({"b64": b64(bytes), "job": job.map(|j| j.to_string())})).collect();
    let v = b.exec_async(
        "(async () => { const out = []; for (const c of arguments[0]) {
            const bytes = Uint8Array.from(atob(c.b64), (ch) => ch.charCodeAt(0));
            const r = await canon.verify(bytes, { expectedJob: c.job });
            out.push(r.ok ? 'ok' : r.code);
          } return out; })().then(done, (e) => done('page error: ' + e));",
        json!([input]),
    );
    serde_json::from_value(v.clone()).unwrap_or_else(|_| panic!("page answered {v}"))
}

/// What canon says: "ok" or a reason code (a panic is a failure of its own).
fn canon_verdict(bytes: &[u8], job: Option<JobDigest>) -> String {
    let r = std::panic::catch_unwind(|| receipt::verify_envelope(bytes).and_then(|r| job.map_or(Ok(()), |j| r.check_job(&j))));
    match r {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => e.code().to_string(),
        Err(_) => "canon panicked".to_string(),
    }
}

// ---------------------------------------------------------------- crafted receipts

fn envelope_with_payload(k: &NodeKey, payload: &[u8]) -> Vec<u8> {
    Envelope::sign(receipt::IN_TOTO_PAYLOAD_TYPE, payload.to_vec(), k).to_json()
}

fn payload_text(envelope: &[u8]) -> String {
    let env: Envelope = serde_json::from_slice(envelope).expect("envelope");
    String::from_utf8(env.payload).expect("utf-8")
}

/// Receipts made wrong, or made unusual but valid, in every way the
/// verifier distinguishes, each with a name.
fn hostile_cases() -> Vec<(String, Vec<u8>, Option<JobDigest>)> {
    let k = key(1);
    let other = key(2);
    let good = receipt(&k, job("j"), "hi");
    let text = payload_text(&good);
    let mut out: Vec<(String, Vec<u8>, Option<JobDigest>)> = Vec::new();
    let mut add = |name: &str, bytes: Vec<u8>, j: Option<JobDigest>| out.push((name.to_string(), bytes, j));
    let signed = |p: &str| envelope_with_payload(&k, p.as_bytes());
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = payload_of(&good);
        f(&mut v);
        envelope_with_payload(&k, &serde_json::to_vec(&v).expect("json"))
    };
    let env = |f: &dyn Fn(&mut Value)| {
        let mut v: Value = serde_json::from_slice(&good).expect("json");
        f(&mut v);
        serde_json::to_vec(&v).expect("json")
    };

    add("the control", good.clone(), None);
    add("the right job", good.clone(), Some(job("j")));
    add("the wrong job digest", good.clone(), Some(job("other")));
    let mut flipped: Envelope = serde_json::from_slice(&good).expect("env");
    flipped.signatures[0].sig[10] ^= 1;
    add("a flipped signature byte", flipped.to_json(), None);
    let mut flipped: Envelope = serde_json::from_slice(&good).expect("env");
    flipped.signatures[0].sig[40] ^= 0x80;
    add("a flipped byte of S", flipped.to_json(), None);
    let mut swapped: Envelope = serde_json::from_slice(&good).expect("env");
    swapped.signatures[0].keyid = other.node_id().to_string();
    add("another node's keyid on the signature", swapped.to_json(), None);
    let mut changed: Envelope = serde_json::from_slice(&good).expect("env");
    changed.payload = text.replace("cranelift", "winch").into_bytes();
    add("the payload changed after signing", changed.to_json(), None);
    add("a statement naming another node", edit(&|v| v["predicate"]["node"] = json!(other.node_id().to_string())), None);
    let mut two: Envelope = serde_json::from_slice(&good).expect("env");
    two.signatures.push(two.signatures[0].clone());
    add("two signatures", two.to_json(), None);
    let mut none: Envelope = serde_json::from_slice(&good).expect("env");
    none.signatures.clear();
    add("no signature", none.to_json(), None);
    let mut short: Envelope = serde_json::from_slice(&good).expect("env");
    short.signatures[0].sig.pop();
    add("a 63-byte signature", short.to_json(), None);
    add("another payload type", env(&|v| v["payloadType"] = json!("application/json")), None);
    add("a secp256k1 keyid", env(&|v| v["signatures"][0]["keyid"] = json!("did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme")), None);
    add("no keyid", env(&|v| v["signatures"][0].as_object_mut().expect("sig").retain(|k, _| k != "keyid")), None);
    add("keyid not a did", env(&|v| v["signatures"][0]["keyid"] = json!("alice")), None);
    add("keyid with a bad base58 character", env(&|v| v["signatures"][0]["keyid"] = json!("did:key:z6Mk0OIl")), None);
    let sig_b64 = |v: &Value| v["signatures"][0]["sig"].as_str().expect("sig").to_string();
    let payload_b64 = |v: &Value| v["payload"].as_str().expect("payload").to_string();
    add(
        "URL-safe unpadded base64",
        env(&|v| {
            let raw = base64::engine::general_purpose::STANDARD.decode(payload_b64(v)).expect("b64");
            v["payload"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
        }),
        None,
    );
    add(
        "base64 with its padding cut short",
        env(&|v| {
            let s = sig_b64(v);
            v["signatures"][0]["sig"] = json!(s.trim_end_matches('=').to_string() + "=");
        }),
        None,
    );
    add("base64 with too much padding", env(&|v| v["signatures"][0]["sig"] = json!(sig_b64(v) + "==")), None);
    add(
        "base64 with padding inside",
        env(&|v| {
            let s = sig_b64(v);
            v["signatures"][0]["sig"] = json!(format!("{}={}", &s[..4], &s[4..]));
        }),
        None,
    );
    add(
        "base64 with trailing bits set",
        env(&|v| {
            let s = sig_b64(v).trim_end_matches('=').to_string();
            let last = s.chars().last().expect("char");
            let bumped = (b'A'..=b'Z').map(char::from).find(|c| *c != last && !(*c as u8 - b'A').is_multiple_of(16)).expect("char");
            v["signatures"][0]["sig"] = json!(format!("{}{bumped}==", &s[..s.len() - 1]));
        }),
        None,
    );
    add("an envelope with an unknown field", env(&|v| v["extra"] = json!([1, {"x": null}])), None);
    let e: Value = serde_json::from_slice(&good).expect("json");
    add(
        "an envelope as an array of its fields",
        serde_json::to_vec(&json!([e["payload"], e["payloadType"], [[e["signatures"][0]["keyid"], e["signatures"][0]["sig"]]]])).expect("json"),
        None,
    );
    add("an envelope with a duplicate payloadType", format!("{{\"payloadType\":\"x\",{}", String::from_utf8_lossy(&good[1..])).into_bytes(), None);
    add("an envelope with a byte-order mark", [b"\xef\xbb\xbf".as_slice(), &good].concat(), None);
    add("an envelope with trailing whitespace", [good.as_slice(), b" \n\t\r"].concat(), None);
    add("an envelope with trailing garbage", [good.as_slice(), b" x"].concat(), None);
    add("not JSON", b"{".to_vec(), None);
    add("an empty file", Vec::new(), None);

    // Payloads: serde's rules for canon's types, one at a time.
    add("a payload with an unknown field", signed(&text.replacen('{', "{\"zzz\":{\"deep\":[1,2,{\"a\":\"b\"}]},", 1)), None);
    add("a duplicate jobDigest", signed(&text.replacen("\"jobDigest\"", &format!("\"jobDigest\":\"{}\",\"jobDigest\"", job("x")), 1)), None);
    add("a duplicate unknown field", signed(&text.replacen('{', "{\"zzz\":1,\"zzz\":2,", 1)), None);
    add("invalid UTF-8 inside an unknown field", envelope_with_payload(&k, &[b"{\"zzz\":\"\xff\xfe\",".as_slice(), &text.as_bytes()[1..]].concat()), None);
    let raw_ff = |t: &str| envelope_with_payload(&k, &t.bytes().map(|b| if b == b'!' { 0xff } else { b }).collect::<Vec<u8>>());
    add("raw invalid UTF-8 in the backend", raw_ff(&text.replace("cranelift", "crane!lift")), None);
    add("a lone surrogate in an unknown field", signed(&text.replacen('{', "{\"zzz\":\"\\ud800\",", 1)), None);
    add("a lone surrogate in the backend", signed(&text.replace("cranelift", "crane\\ud800lift")), None);
    add("a surrogate pair in the backend", signed(&text.replace("cranelift", "crane\\ud83d\\ude00lift")), None);
    add("escapes in the backend", signed(&text.replace("cranelift", "cr\\u0061ne\\/lift\\n")), None);
    add("a raw control character in a string", signed(&text.replace("cranelift", "crane\tlift")), None);
    add("an invalid escape", signed(&text.replace("cranelift", "crane\\xlift")), None);
    add("a kind as a map", signed(&text.replacen("\"kind\":\"file\"", "\"kind\":{\"file\":null}", 1)), None);
    add("a kind as a map with a value", signed(&text.replacen("\"kind\":\"file\"", "\"kind\":{\"file\":1}", 1)), None);
    add("an unknown kind", signed(&text.replacen("\"kind\":\"file\"", "\"kind\":\"File\"", 1)), None);
    let uuid = "6f1c3c9e-2d4b-4c8a-9b7e-0123456789ab";
    for (name, form) in [
        ("an uppercase run id", uuid.to_uppercase()),
        ("a simple run id", uuid.replace('-', "")),
        ("a braced run id", format!("{{{uuid}}}")),
        ("a URN run id", format!("URN:uuid:{uuid}")),
        ("a run id missing a digit", uuid[1..].to_string()),
        ("a run id with a hyphen misplaced", format!("{}{}-{}", &uuid[..8], &uuid[9..10], &uuid[10..])),
    ] {
        add(name, signed(&text.replace(uuid, &form)), None);
    }
    for (name, t) in [
        ("a time with lowercase t and z", "2026-01-02t03:04:05z"),
        ("a time with a space", "2026-01-02 03:04:05Z"),
        ("a time with a fraction", "2026-01-02T03:04:05.123456789123Z"),
        ("a time with an offset", "2026-01-02T03:04:05+05:30"),
        ("a leap second", "2016-12-31T23:59:60Z"),
        ("a leap second in another zone", "2017-01-01T05:29:60+05:30"),
        ("a leap second at the wrong time", "2016-12-30T23:59:60Z"),
        ("February 30", "2026-02-30T00:00:00Z"),
        ("February 29 of a leap year", "2024-02-29T00:00:00Z"),
        ("hour 24", "2026-01-02T24:00:00Z"),
        ("an offset of 24 hours", "2026-01-02T03:04:05+24:00"),
        ("an offset of 60 minutes", "2026-01-02T03:04:05+01:60"),
        ("year 0 west of UTC", "0000-01-01T00:00:00+01:00"),
        ("year 9999 east of UTC, past the last year", "9999-12-31T23:30:00-01:00"),
        ("a time with no zone", "2026-01-02T03:04:05"),
        ("a fraction with no digits", "2026-01-02T03:04:05.Z"),
    ] {
        add(name, signed(&text.replace("2026-01-02T03:04:05Z", t)), None);
    }
    add("fuel as a float", signed(&text.replace("\"fuelConsumed\":12345", "\"fuelConsumed\":12345.0")), None);
    add("fuel with an exponent", signed(&text.replace("\"fuelConsumed\":12345", "\"fuelConsumed\":1e4")), None);
    add("fuel negative", signed(&text.replace("\"fuelConsumed\":12345", "\"fuelConsumed\":-1")), None);
    add("fuel with a leading zero", signed(&text.replace("\"fuelConsumed\":12345", "\"fuelConsumed\":012345")), None);
    add("fuel past u64", signed(&text.replace("\"fuelConsumed\":12345", "\"fuelConsumed\":18446744073709551616")), None);
    add("fuel as a string", signed(&text.replace("\"fuelConsumed\":12345", "\"fuelConsumed\":\"12345\"")), None);
    let mut big = outcome("hi").summary();
    big.fuel_consumed = u64::MAX - 2;
    big.outcome_digest = big.recompute_digest();
    add("fuel beyond 2^53, consistent", statement(&k, job("j"), big).sign(&k).expect("sign").to_json(), None);
    add("an ABI past u32", signed(&text.replace("\"determinismAbi\":", "\"determinismAbi\":4294967296,\"zz\":")), None);
    add(
        "exitCode null beside trap",
        edit(&|v| {
            v["predicate"]["outcome"]["exitCode"] = Value::Null;
        }),
        None,
    );
    add("both exitCode and trap", edit(&|v| v["predicate"]["outcome"]["trap"] = json!("out_of_fuel")), None);
    add(
        "neither exitCode nor trap",
        edit(&|v| {
            v["predicate"]["outcome"].as_object_mut().expect("o").remove("exitCode");
        }),
        None,
    );
    let mut trapped = outcome("");
    trapped.termination = canon::outcome::Termination::Trap(canon::outcome::TrapKind::OutOfFuel);
    let trap_receipt = statement(&k, job("j"), trapped.summary()).sign(&k).expect("sign").to_json();
    let trap_text = payload_text(&trap_receipt);
    add("a trap", trap_receipt.clone(), None);
    add("a trap as a map", signed_by(&k, &trap_text.replace("\"trap\":\"out_of_fuel\"", "\"trap\":{\"out_of_fuel\":null}")), None);
    add("an unknown trap", signed_by(&k, &trap_text.replace("\"trap\":\"out_of_fuel\"", "\"trap\":\"fire\"")), None);
    add("a digest with a sha256: prefix", signed(&text.replacen("\"manifestDigest\":\"", "\"manifestDigest\":\"sha256:", 1)), None);
    add(
        "a digest in uppercase",
        edit(&|v| {
            let d = v["predicate"]["jobDigest"].as_str().expect("d").to_uppercase();
            v["predicate"]["jobDigest"] = json!(d);
        }),
        None,
    );
    add(
        "a predicate as an array",
        edit(&|v| {
            let p = v["predicate"].clone();
            v["predicate"] = json!([p["jobDigest"], p["runId"], p["node"], p["engine"], p["outcome"], null, p["started"], p["finished"]]);
        }),
        None,
    );
    add(
        "a predicate array one short",
        edit(&|v| {
            let p = v["predicate"].clone();
            v["predicate"] = json!([p["jobDigest"], p["runId"], p["node"], p["engine"], p["outcome"], null, p["started"]]);
        }),
        None,
    );
    add(
        "a predicate array one long",
        edit(&|v| {
            let p = v["predicate"].clone();
            v["predicate"] = json!([p["jobDigest"], p["runId"], p["node"], p["engine"], p["outcome"], null, p["started"], p["finished"], 1]);
        }),
        None,
    );
    add(
        "a statement as an array",
        edit(&|v| {
            let s = v.clone();
            *v = json!([s["_type"], s["subject"], s["predicateType"], s["predicate"]]);
        }),
        None,
    );
    add("a header-only array", signed("[\"https://example.com/other\", null]"), None);
    add("another statement type", edit(&|v| v["_type"] = json!("https://in-toto.io/Statement/v0.1")), None);
    add("another predicate type", edit(&|v| v["predicateType"] = json!("https://slsa.dev/provenance/v1")), None);
    add("another predicate type, other fields missing", signed("{\"_type\":\"https://in-toto.io/Statement/v1\",\"predicateType\":\"x\"}"), None);
    add("a payload that is not JSON", signed("not json"), None);
    add("a jobRequest that is null", edit(&|v| v["predicate"]["jobRequest"] = Value::Null), None);
    add(
        "a jobRequest with an unknown field",
        edit(&|v| {
            v["predicate"]["jobRequest"] = json!({"submitter": other.node_id().to_string(), "sha256": Digest::of(b"r").to_string(), "x": 1});
        }),
        None,
    );
    add(
        "a jobRequest",
        edit(&|v| v["predicate"]["jobRequest"] = json!({"submitter": other.node_id().to_string(), "sha256": Digest::of(b"r").to_string()})),
        None,
    );
    add("a manifest out of order", edit(&|v| v["predicate"]["outcome"]["manifest"].as_array_mut().expect("m").reverse()), None);
    add("a relative manifest path", edit(&|v| v["predicate"]["outcome"]["manifest"][0]["path"] = json!("out")), None);
    add("a manifest path with ..", edit(&|v| v["predicate"]["outcome"]["manifest"][0]["path"] = json!("/..")), None);
    add("a manifest entry changed", edit(&|v| v["predicate"]["outcome"]["manifest"][1]["size"] = json!(2)), None);
    add("an outcome digest changed", edit(&|v| v["predicate"]["outcome"]["digest"] = json!(Digest::of(b"x").to_string())), None);
    add(
        "a subject missing",
        edit(&|v| {
            v["subject"].as_array_mut().expect("s").pop();
        }),
        None,
    );
    add(
        "a subject extra",
        edit(&|v| v["subject"].as_array_mut().expect("s").push(json!({"name": "/out/zzz", "digest": {"sha256": Digest::of(b"").to_string()}}))),
        None,
    );
    add(
        "a subject twice",
        edit(&|v| {
            let s = v["subject"][0].clone();
            v["subject"].as_array_mut().expect("s").push(s);
        }),
        None,
    );
    add("a subject with the wrong digest", edit(&|v| v["subject"][0]["digest"]["sha256"] = json!(Digest::of(b"x").to_string())), None);
    add("a subject digest set with more algorithms", edit(&|v| v["subject"][0]["digest"]["sha512"] = json!("00")), None);
    let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
    add("deep nesting in an unknown field", signed(&text.replacen('{', &format!("{{\"zzz\":{deep},"), 1)), None);
    let non_ascii = edit(&|v| {
        let m = v["predicate"]["outcome"]["manifest"].as_array_mut().expect("m");
        m[1]["path"] = json!("/out/\u{e9}");
    });
    add("a non-ASCII path out of order", non_ascii, None);
    out
}

fn signed_by(k: &NodeKey, payload: &str) -> Vec<u8> {
    envelope_with_payload(k, payload.as_bytes())
}

/// The crafted cases of fixtures/vectors/receipt-signatures.json and the
/// vector receipt itself.
fn vector_cases() -> Vec<(String, Vec<u8>, Option<JobDigest>)> {
    let mut out = vec![("receipt-envelope.json".to_string(), fs::read(util::fixture("vectors/receipt-envelope.json")).expect("vector"), None)];
    let v: Value = serde_json::from_slice(&fs::read(util::fixture("vectors/receipt-signatures.json")).expect("vector")).expect("json");
    for c in v["cases"].as_array().expect("cases") {
        out.push((format!("receipt-signatures.json: {}", c["covers"]), serde_json::to_vec(&c["envelope"]).expect("json"), None));
    }
    out
}

// ---------------------------------------------------------------- verification

#[test]
fn the_page_verifies_every_receipt_as_canon_verify_does() {
    let dir = util::scratch();
    let b = open_harness(dir.path());
    let mut cases = vector_cases();
    cases.extend(hostile_cases());
    let page = page_verdicts(&b, &cases);
    let mut wrong = Vec::new();
    for ((name, bytes, job), got) in cases.iter().zip(&page) {
        let want = canon_verdict(bytes, *job);
        if &want != got {
            wrong.push(format!("{name}: canon {want}, page {got}"));
        }
    }
    assert!(wrong.is_empty(), "the page and canon verify disagree:\n{}", wrong.join("\n"));
    // The cases are not vacuous: forged ones are refused in the page.
    let by_name = |n: &str| page[cases.iter().position(|c| c.0 == n).unwrap_or_else(|| panic!("no case {n}"))].as_str();
    assert_eq!(by_name("the control"), "ok");
    assert_eq!(by_name("a flipped signature byte"), "bad_signature");
    assert_eq!(by_name("the wrong job digest"), "job_mismatch");
    assert_eq!(by_name("a statement naming another node"), "node_mismatch");
    assert_eq!(by_name("another node's keyid on the signature"), "bad_signature");
    let vectors = vector_cases();
    let v: Value = serde_json::from_slice(&fs::read(util::fixture("vectors/receipt-signatures.json")).expect("vector")).expect("json");
    for (c, got) in v["cases"].as_array().expect("cases").iter().zip(&page[1..vectors.len()]) {
        assert_eq!(c["canon"].as_str(), Some(got.as_str()), "{}", c["covers"]);
    }
}

// ---------------------------------------------------------------- the tally

/// Numbers as the bits of their f64 (canon writes `1.0` where JavaScript
/// writes `1`, and serde_json's float parsing may be off by an ulp, so the
/// page sends bits: `"f64:<hex>"`), and no set-aside reasons (prose, not
/// part of the algorithm).
fn normalize(v: &mut Value) {
    match v {
        Value::Number(n) => *v = json!(format!("f64:{:016x}", n.as_f64().expect("number").to_bits())),
        Value::Array(a) => a.iter_mut().for_each(normalize),
        Value::Object(o) => {
            o.remove("reason");
            o.values_mut().for_each(normalize);
        }
        _ => {}
    }
}

/// The page's tally of `receipts` under `options` (as canon's tally JSON).
fn page_tally(b: &Browser, receipts: &[(String, Vec<u8>)], options: &TallyOptions) -> Value {
    let input = json!({
        "receipts": receipts.iter().map(|(s, bytes)| json!({"source": s, "b64": b64(bytes)})).collect::<Vec<_>>(),
        "policy": canon::web::report::policy_json(&options.policy),
        "expected_job": options.expected_job.map(|j| j.to_string()),
        "records": canon::web::report::records_json(options, receipts),
    });
    let v = b.exec_async(
        "const c = arguments[0];
         const receipts = c.receipts.map((r) => ({ source: r.source, bytes: Uint8Array.from(atob(r.b64), (ch) => ch.charCodeAt(0)) }));
         canon.tally(receipts, { policy: c.policy, expectedJob: c.expected_job, records: c.records })
           .then((t) => done(JSON.stringify(t, (k, v) => {
             if (typeof v !== 'number' && typeof v !== 'bigint') return v;
             const d = new DataView(new ArrayBuffer(8));
             d.setFloat64(0, Number(v));
             return 'f64:' + d.getBigUint64(0).toString(16).padStart(16, '0');
           })), (e) => done('page error: ' + e.stack));",
        json!([input]),
    );
    let text = v.as_str().expect("tally text");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("page tally is not JSON ({e}): {text}"))
}

fn assert_same_tally(b: &Browser, what: &str, receipts: &[(String, Vec<u8>)], options: &TallyOptions) {
    let mut want = serde_json::to_value(tally(receipts, options)).expect("json");
    let mut got = page_tally(b, receipts, options);
    normalize(&mut want);
    normalize(&mut got);
    if got != want {
        // The inputs, to replay in a browser's console or in node.
        let path = util::root().join("target/web-failures").join(format!("{}.json", what.replace(' ', "-")));
        fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let input = json!({
            "receipts": receipts.iter().map(|(s, bytes)| json!({"source": s, "b64": b64(bytes)})).collect::<Vec<_>>(),
            "policy": canon::web::report::policy_json(&options.policy),
            "expected_job": options.expected_job.map(|j| j.to_string()),
            "records": canon::web::report::records_json(options, receipts),
        });
        fs::write(&path, input.to_string()).expect("write");
    }
    assert_eq!(got, want, "{what}: the page's tally differs from canon's\npage:  {got}\ncanon: {want}");
}

/// A small deterministic generator (the cases must be the same on every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// The receipts and options of one generated tally case.
fn generated_case(seed: u64, ledger_dir: &Path) -> (TallyOptions, Vec<(String, Vec<u8>)>) {
    let mut r = Lcg(seed * 7919 + 1);
    let engines =
        [crate::quorum::engine("0.1.0", 2), crate::quorum::engine("0.2.0", 3), crate::quorum::engine("0.2.0-rc.1", 3), crate::quorum::engine("bogus", 3)];
    let nodes = 1 + r.next(7);
    let keys: Vec<NodeKey> = (1..=nodes as u8).map(key).collect();
    let weights = [0.0, 0.5, 1.0, 2.0, 1.0];
    let policy = match r.next(3) {
        0 => Policy::implicit(),
        _ => Policy {
            nodes: {
                let mut listed = Vec::new();
                for (i, k) in keys.iter().enumerate() {
                    if r.next(4) != 0 {
                        let name = (r.next(3) != 0).then(|| format!("n{}", (i * 7) % 5));
                        listed.push(TrustedNode { id: k.node_id(), name, weight: weights[r.next(weights.len())] });
                    }
                }
                listed
            },
            min_quorum: 1 + r.next(3),
            threshold: [0.5, 2.0 / 3.0, 0.75, 1.0][r.next(4)],
            unknown_weight: [0.0, 0.0, 0.5][r.next(3)],
            credibility: r.next(3) == 0,
            fault_rate: 0.1,
            implicit: false,
        },
    };
    let ledger = policy.credibility.then(|| {
        let path = ledger_dir.join(format!("ledger-{seed}.json"));
        let agreed: Vec<String> = keys.iter().step_by(2).map(|k| k.node_id().to_string()).collect();
        let dissented: Vec<String> = keys.iter().skip(1).step_by(3).map(|k| k.node_id().to_string()).collect();
        let v = json!({"version": 2, "jobs": {
            job("past1").to_string(): {"outcome": Digest::of(b"o").to_string(), "agreed": agreed, "dissented": dissented},
            job("past2").to_string(): {"outcome": Digest::of(b"o").to_string(), "agreed": &agreed[..agreed.len().min(1)], "dissented": []},
        }});
        fs::write(&path, v.to_string()).expect("ledger");
        canon::quorum::Ledger::load(&path).expect("load ledger")
    });
    let expected_job = (r.next(2) == 0).then(|| job("j"));
    let mut receipts = Vec::new();
    for _ in 0..(1 + r.next(10)) {
        let signer = if r.next(6) == 0 { key(40 + r.next(3) as u8) } else { keys[r.next(keys.len())].clone() };
        let j = if r.next(5) == 0 { job("k") } else { job("j") };
        let stdout = ["x", "x", "y", "z"][r.next(4)];
        let engine = engines[r.next(engines.len())].clone();
        let mut bytes = crate::quorum::receipt_on(&signer, j, stdout, engine);
        if r.next(10) == 0 {
            let mut e: Envelope = serde_json::from_slice(&bytes).expect("env");
            e.signatures[0].sig[5] ^= 4;
            bytes = e.to_json();
        }
        receipts.push(bytes);
    }
    (TallyOptions { policy, expected_job, ledger }, crate::quorum::labelled(receipts))
}

#[test]
fn the_page_tallies_as_canon_quorum_does() {
    let dir = util::scratch();
    let b = open_harness(dir.path());
    // The pinned vector: inputs and tally are data under fixtures/vectors/.
    let inputs: Value = serde_json::from_slice(&fs::read(util::fixture("vectors/tally-v2-inputs.json")).expect("vector")).expect("json");
    let (options, receipts) = crate::quorum::tally_v2_inputs();
    let from_file: Vec<(String, Vec<u8>)> = inputs["receipts"]
        .as_array()
        .expect("receipts")
        .iter()
        .map(|r| (r["source"].as_str().expect("source").to_string(), r["envelope"].as_str().expect("envelope").as_bytes().to_vec()))
        .collect();
    assert_eq!(from_file, receipts, "tally-v2-inputs.json holds the vector's receipts");
    let vector = fs::read_to_string(util::fixture("vectors/tally-v2.json")).expect("vector");
    assert_eq!(serde_json::to_string_pretty(&tally(&receipts, &options)).expect("json") + "\n", vector, "canon's tally of the inputs is the vector");
    assert_same_tally(&b, "tally-v2", &receipts, &options);
    // Generated cases: policies with weights, strangers, credibility,
    // several jobs and engines, duplicates, equivocators, forgeries.
    let mut verdicts = std::collections::BTreeSet::new();
    for seed in 0..60 {
        let (options, receipts) = generated_case(seed, dir.path());
        assert_same_tally(&b, &format!("generated case {seed}"), &receipts, &options);
        verdicts.insert(tally(&receipts, &options).verdict.to_string());
    }
    assert_eq!(verdicts.len(), 4, "the cases reach every verdict: {verdicts:?}");
}

// ---------------------------------------------------------------- the static report

fn canon(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(util::canon_bin()).current_dir(dir).args(args).output().expect("run canon")
}

/// Opens a report with the network cut off and waits until it has verified.
fn open_offline(b: &Browser, path: &Path) {
    b.cmd(
        "POST",
        "/chromium/network_conditions",
        json!({"network_conditions": {"offline": true, "latency": 0, "download_throughput": 0, "upload_throughput": 0}}),
    );
    b.goto(&format!("file://{}", path.display()));
    b.wait_for("document.body.dataset.state !== 'verifying' && document.body.dataset.state", "the report to verify itself");
}

fn report_receipts(d: &Path) {
    fs::create_dir_all(d.join("receipts")).expect("mkdir");
    for n in 1..=3 {
        fs::write(d.join(format!("receipts/node{n}.json")), receipt(&key(n), job("j"), "good")).expect("write");
    }
    fs::write(d.join("receipts/node4.json"), receipt(&key(4), job("j"), "bad")).expect("write");
    // A hostile file name: it must stay text.
    fs::write(d.join("receipts/<img src=x onerror=alert(1)>.json"), receipt(&key(5), job("j"), "good")).expect("write");
}

#[test]
fn the_static_report_verifies_itself_offline_and_flags_an_edited_receipt() {
    let dir = util::scratch();
    let d = dir.path();
    report_receipts(d);
    let out = canon(d, &["quorum", "receipts", "--html", "report.html", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let canon_tally: Value = serde_json::from_slice(&out.stdout).expect("tally json");
    let html = fs::read_to_string(d.join("report.html")).expect("report");
    for external in ["src=\"http", "href=\"http", "@import", "url(", "<link"] {
        assert!(!html.contains(external), "the report loads nothing from outside ({external})");
    }
    assert!(!html.contains("<img"), "a file name never becomes markup");
    assert!(fs::read_dir(d).expect("ls").all(|e| !e.expect("entry").file_name().to_string_lossy().starts_with(".canon-report-")), "no temporary file left");

    let b = Browser::start();
    open_offline(&b, &d.join("report.html"));
    assert_eq!(b.exec("return document.body.dataset.state;", json!([])), json!("done"), "{}", b.text());
    assert_eq!(b.exec("return document.getElementById('verdict').dataset.verdict;", json!([])), canon_tally["verdict"]);
    assert_eq!(b.exec("return document.getElementById('comparison').dataset.agrees;", json!([])), json!("true"), "{}", b.text());
    let text = b.text();
    assert!(text.contains("ACCEPTED") && text.contains("This page verified 5 of 5 receipts"), "{text}");
    assert!(!text.contains("[object") && !text.contains("undefined"), "every value shows as text: {text}");
    assert!(text.contains(&key(1).node_id().short()), "the groups name their nodes: {text}");
    assert!(text.contains("<img src=x onerror=alert(1)>.json"), "the hostile name shows as text: {text}");
    assert!(text.contains("dissents"), "node 4 is a dissenter, with what differed: {text}");
    assert!(text.contains("stdout: sha256"), "{text}");
    let root = util::root().join("target/screenshots");
    b.screenshot(&root.join("report-desktop.png"));
    b.resize(390, 844);
    b.screenshot(&root.join("report-phone.png"));
    let overflow = b.exec("return document.documentElement.scrollWidth <= window.innerWidth + 1;", json!([]));
    assert_eq!(overflow, json!(true), "readable at phone width: no sideways scrolling of the page");

    // Edit one embedded receipt: its payload changes, its signature does not.
    let start =
        html.find("<script type=\"application/json\" id=\"canon-report\">").expect("data") + "<script type=\"application/json\" id=\"canon-report\">".len();
    let end = start + html[start..].find("</script>").expect("end");
    let mut data: Value = serde_json::from_str(&html[start..end]).expect("data json");
    let first = data["receipts"][0]["envelope"].as_str().expect("envelope").to_string();
    let mut env: Envelope = serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(first).expect("b64")).expect("env");
    env.payload = String::from_utf8(env.payload).expect("utf-8").replace("cranelift", "winch").into_bytes();
    data["receipts"][0]["envelope"] = json!(b64(&env.to_json()));
    let edited = format!("{}{}{}", &html[..start], canon::web::script_json(&data), &html[end..]);
    fs::write(d.join("edited.html"), edited).expect("write");
    open_offline(&b, &d.join("edited.html"));
    assert_eq!(b.exec("return document.querySelector('#receipts tbody tr').dataset.code;", json!([])), json!("bad_signature"), "{}", b.text());
    assert_eq!(
        b.exec("return document.getElementById('comparison').dataset.agrees;", json!([])),
        json!("false"),
        "the page says its tally differs from the embedded one"
    );
    assert!(b.text().contains("This page verified 4 of 5 receipts"), "{}", b.text());

    // A report whose embedded tally lies: the page shows its own verdict and says so.
    data["receipts"][0]["envelope"] = json!(b64(&receipt(&key(1), job("j"), "good")));
    data["tally"]["verdict"] = json!("disputed");
    let lying = format!("{}{}{}", &html[..start], canon::web::script_json(&data), &html[end..]);
    fs::write(d.join("lying.html"), lying).expect("write");
    open_offline(&b, &d.join("lying.html"));
    assert_eq!(b.exec("return document.getElementById('verdict').dataset.verdict;", json!([])), json!("accepted"));
    assert_eq!(b.exec("return document.getElementById('comparison').dataset.agrees;", json!([])), json!("false"));
}

#[test]
fn the_static_report_is_written_whole_or_not_at_all() {
    let dir = util::scratch();
    let d = dir.path();
    report_receipts(d);
    fs::write(d.join("report.html"), "old").expect("write");
    let out = canon(d, &["quorum", "receipts", "--html", "missing-dir/report.html"]);
    assert_eq!(out.status.code(), Some(125), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing-dir/report.html"), "the error names the file");
    let out = canon(d, &["quorum", "receipts", "--html", "report.html"]);
    assert_eq!(out.status.code(), Some(0));
    let html = fs::read_to_string(d.join("report.html")).expect("report");
    assert!(html.starts_with("<!doctype html>") && html.trim_end().ends_with("</html>"), "the new report replaced the old one whole");
}

// ---------------------------------------------------------------- badges

const TOKEN: &str = "test-token-web";

/// A coordinator on loopback (and its workers), killed on drop.
struct Coordinator {
    dir: tempfile::TempDir,
    url: String,
    children: Vec<Child>,
}

impl Coordinator {
    fn start(extra: &str) -> Coordinator {
        use std::io::BufRead as _;
        let dir = util::scratch();
        fs::write(dir.path().join("policy.toml"), "min_quorum = 2\nunknown_weight = 1.0\n").expect("policy");
        let config = dir.path().join("coordinator.toml");
        fs::write(
            &config,
            format!("listen = \"127.0.0.1:0\"\nheartbeat_secs = 0.2\nlease_secs = 1.0\npolicy = \"policy.toml\"\n{extra}\n[[tenant]]\nname = \"alice\"\ntoken = \"{TOKEN}\"\n"),
        )
        .expect("config");
        let mut child = Command::new(util::canon_bin())
            .args(["serve", "--data"])
            .arg(dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(fs::File::create(dir.path().join("coordinator.log")).expect("log")))
            .spawn()
            .expect("spawn coordinator");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("address");
        let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("coordinator said {line:?}")).to_string();
        Coordinator { dir, url, children: vec![child] }
    }

    fn worker(&mut self, i: u8) {
        self.worker_with(i, &[]);
    }

    /// Worker `i` (key seed `i + 100`) with extra flags.
    fn worker_with(&mut self, i: u8, flags: &[&str]) {
        let key = self.dir.path().join(format!("worker-{i}.key"));
        NodeKey::from_seed(&[i + 100; 32]).save_new(&key).expect("key");
        let child = Command::new(util::canon_bin())
            .args(["worker", "--coordinator", &self.url, "--key"])
            .arg(&key)
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn worker");
        self.children.push(child);
    }

    fn submit(&self, job: &str, flags: &[&str]) -> String {
        let o = Command::new(util::canon_bin())
            .arg("submit")
            .arg(util::fixture(&format!("jobs/{job}")))
            .args(flags)
            .env("CANON_COORDINATOR", &self.url)
            .env("CANON_TOKEN", TOKEN)
            .env("HOME", self.dir.path())
            .output()
            .expect("submit");
        assert!(o.status.success(), "submit: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn get(&self, path: &str) -> (u16, String, String) {
        let r = reqwest::blocking::get(format!("{}{path}", self.url)).expect("get");
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        (r.status().as_u16(), ct, r.text().expect("body"))
    }

    fn wait_state(&self, id: &str, want: &[&str]) -> Value {
        let http = reqwest::blocking::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let v: Value = http.get(format!("{}/v1/jobs/{id}", self.url)).bearer_auth(TOKEN).send().expect("status").json().expect("json");
            if want.contains(&v["state"].as_str().unwrap_or_default()) {
                return v;
            }
            assert!(Instant::now() < deadline, "job {id} is {}", v["state"]);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn badges_read_the_verdict_publicly_and_escape_group_names() {
    let mut pool = Coordinator::start("replicas = 2");
    let group = "<b>rel&\"ease\"</b>";
    let pending = pool.submit("hello.toml", &["--group", group]);
    // No worker yet: pending, red, and public (no token).
    let (status, ct, svg) = pool.get(&format!("/v1/badges/job/{pending}.svg"));
    assert_eq!((status, ct.as_str()), (200, "image/svg+xml; charset=utf-8"), "{svg}");
    assert!(svg.contains(">pending 0/2<") && svg.contains(canon::web::badge::RED), "{svg}");
    let (_, _, g) = pool.get(&format!("/v1/badges/group/alice/{}.svg", urlencoding(group)));
    assert!(g.contains("canon &lt;b&gt;rel&amp;&quot;ease&quot;&lt;/b&gt;") && !g.contains("<b>"), "the group name is escaped: {g}");
    pool.worker(1);
    pool.worker(2);
    let v = pool.wait_state(&pending, &["succeeded"]);
    assert_eq!(v["verdict"], "accepted", "{v}");
    let (_, _, svg) = pool.get(&format!("/v1/badges/job/{pending}.svg"));
    assert!(svg.contains(">verified 2/2<") && svg.contains(canon::web::badge::GREEN), "{svg}");
    let (status, ct, body) = pool.get(&format!("/v1/badges/job/{pending}.json"));
    assert!(status == 200 && ct.starts_with("application/json"), "{status} {ct}");
    let shields: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(shields, json!({"schemaVersion": 1, "label": "canon", "message": "verified 2/2", "color": canon::web::badge::GREEN}));
    let (_, _, body) = pool.get(&format!("/v1/badges/group/alice/{}.json", urlencoding(group)));
    let shields: Value = serde_json::from_str(&body).expect("json");
    assert_eq!((shields["label"].as_str(), shields["message"].as_str()), (Some(format!("canon {group}").as_str()), Some("verified 2/2")));
    // Unknown jobs, groups, tenants and suffixes are 404s with the JSON error body.
    for path in ["/v1/badges/job/nope.svg", "/v1/badges/group/alice/nope.svg", "/v1/badges/group/mallory/x.json", &format!("/v1/badges/job/{pending}.png")] {
        let (status, _, body) = pool.get(path);
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(serde_json::from_str::<Value>(&body).map(|v| v["error"].clone()).ok(), Some(json!("not_found")), "{path}: {body}");
    }
}

/// Percent-encodes a path segment.
fn urlencoding(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

// ---------------------------------------------------------------- the dashboard

impl Coordinator {
    /// Stops every worker (the coordinator stays).
    fn stop_workers(&mut self) {
        for c in self.children.iter_mut().skip(1) {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.truncate(1);
    }
}

#[test]
fn the_dashboard_verifies_a_job_live_and_shows_a_cancel_without_reload() {
    let mut pool = Coordinator::start("replicas = 2");
    pool.worker(1);
    pool.worker(2);
    let b = Browser::start();
    b.goto(&format!("{}/", pool.url));
    b.wait_for("document.body.dataset.state === 'login'", "the sign-in form");
    b.exec("document.getElementById('token').value = arguments[0]; document.getElementById('login').requestSubmit();", json!([TOKEN]));
    b.wait_for("document.body.dataset.state === 'ready' && document.body.dataset.live === 'true'", "the job list, live");
    b.exec("window.__notReloaded = true;", json!([]));
    let id = pool.submit("hello.toml", &["--group", "<i>main</i>"]);
    b.wait_for(&format!("document.querySelector('#jobs tr[data-job=\"{id}\"][data-state=\"succeeded\"]')"), "the job to appear and succeed, without a reload");
    assert!(b.text().contains("<i>main</i>"), "the group name shows as text: {}", b.text());
    let shots = util::root().join("target/screenshots");
    b.screenshot(&shots.join("dashboard-desktop.png"));

    b.exec("location.hash = '#/job/' + arguments[0];", json!([id]));
    b.wait_for(
        "document.getElementById('verdict') && document.getElementById('verdict').dataset.verdict !== 'unverified' && document.body.dataset.state === 'ready'",
        "the job's tally",
    );
    assert_eq!(b.exec("return document.getElementById('verdict').dataset.verdict;", json!([])), json!("accepted"), "{}", b.text());
    assert_eq!(b.exec("return document.getElementById('comparison').dataset.agrees;", json!([])), json!("true"), "{}", b.text());
    assert_eq!(b.exec("return document.querySelectorAll('#runs tbody tr').length;", json!([])), json!(2));
    assert!(b.text().contains("This page verified 2 of 2 receipts"), "{}", b.text());
    let engines = b.exec("return [...document.querySelectorAll('#runs td.engine')].map(td => td.textContent);", json!([]));
    let want = format!("cranelift, canon {}, wasmtime {}, ABI {}", env!("CARGO_PKG_VERSION"), canon::abi::WASMTIME_VERSION, canon::abi::DETERMINISM_ABI);
    assert_eq!(engines, json!([want, want]), "each run's engine, from its verified receipt");
    b.screenshot(&shots.join("dashboard-job-desktop.png"));
    b.resize(390, 844);
    b.screenshot(&shots.join("dashboard-job-phone.png"));
    b.resize(1280, 900);

    b.exec("document.querySelector('#runs a.node').click();", json!([]));
    b.wait_for("document.getElementById('node-summary')", "the node page");
    let summary = b.exec("return document.getElementById('node-summary').textContent;", json!([]));
    assert!(summary.as_str().is_some_and(|t| t.starts_with("1 runs: agreed 1, dissented 0;")), "{}", b.text());
    b.screenshot(&shots.join("dashboard-node-desktop.png"));

    // A cancel made through the API shows without a reload.
    pool.stop_workers();
    b.exec("location.hash = '#/';", json!([]));
    let second = pool.submit("hello.toml", &[]);
    b.wait_for(&format!("document.querySelector('#jobs tr[data-job=\"{second}\"][data-state=\"pending\"]')"), "the pending job");
    let r = reqwest::blocking::Client::new().post(format!("{}/v1/jobs/{second}/cancel", pool.url)).bearer_auth(TOKEN).send().expect("cancel");
    assert_eq!(r.status().as_u16(), 204);
    b.wait_for(&format!("document.querySelector('#jobs tr[data-job=\"{second}\"][data-state=\"cancelled\"]')"), "the cancel to show live");
    assert_eq!(b.exec("return window.__notReloaded === true;", json!([])), json!(true), "no reload happened");
}

// ---------------------------------------------------------------- a coordinator that lies

/// How the lying coordinator lies.
#[derive(Clone, Copy)]
enum Lie {
    /// Its job views claim a disputed verdict for every job.
    ForgedTally,
    /// The first receipt it serves of any job has a flipped signature byte.
    BrokenSignature,
    /// Every blob it serves has its first byte flipped.
    SubstitutedBlob,
}

/// A proxy in front of a real coordinator that tells one lie (a test-only
/// coordinator: nothing in canon serve can be made to lie). The event
/// stream is refused, so the page works from what it fetches. Returns its URL;
/// its thread ends with the test process.
fn lying_proxy(upstream: &str, lie: Lie) -> String {
    use axum::body::Body;
    use axum::http::{Request, Response as HttpResponse};
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let client = reqwest::Client::new();
            let handler = move |req: Request<Body>| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let path = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
                    if path.starts_with("/v1/events") {
                        return HttpResponse::builder().status(503).body(Body::from("no events from this coordinator")).expect("response");
                    }
                    let auth = req.headers().get("authorization").cloned();
                    let mut fwd = client.get(format!("{upstream}{path}"));
                    if let Some(a) = auth {
                        fwd = fwd.header("authorization", a.to_str().unwrap_or_default());
                    }
                    let resp = fwd.send().await.expect("upstream");
                    let status = resp.status().as_u16();
                    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("text/plain").to_string();
                    let mut body = resp.bytes().await.expect("body").to_vec();
                    let is_job = path.starts_with("/v1/jobs/") && !path.contains("/receipts") && !path.contains("/runs/");
                    match lie {
                        Lie::ForgedTally if is_job && status == 200 => {
                            let mut v: Value = serde_json::from_slice(&body).expect("job json");
                            v["verdict"] = json!("disputed");
                            v["tally"]["verdict"] = json!("disputed");
                            v["tally"]["accepted"] = Value::Null;
                            body = serde_json::to_vec(&v).expect("json");
                        }
                        Lie::BrokenSignature if path.contains("/receipts") && status == 200 => {
                            let mut v: Value = serde_json::from_slice(&body).expect("receipts json");
                            let mut env: Envelope = serde_json::from_str(v["receipts"][0][1].as_str().expect("envelope")).expect("env");
                            env.signatures[0].sig[7] ^= 1;
                            v["receipts"][0][1] = json!(String::from_utf8(env.to_json()).expect("utf-8"));
                            body = serde_json::to_vec(&v).expect("json");
                        }
                        Lie::SubstitutedBlob if path.contains("/blobs/") && status == 200 => {
                            if let Some(b) = body.first_mut() {
                                *b ^= 1;
                            } else {
                                body.push(b'!');
                            }
                        }
                        _ => {}
                    }
                    HttpResponse::builder().status(status).header("content-type", ct).body(Body::from(body)).expect("response")
                }
            };
            let l = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().fallback(handler);
            let _ = axum::serve(l, app).await;
        });
    });
    url
}

#[test]
fn the_dashboard_does_not_believe_a_coordinator_that_lies() {
    let mut pool = Coordinator::start("replicas = 2");
    pool.worker(1);
    pool.worker(2);
    let id = pool.submit("hello.toml", &[]);
    pool.wait_state(&id, &["succeeded"]);
    let b = Browser::start();
    for (lie, page_verdict, what) in
        [(Lie::ForgedTally, "accepted", "a forged tally"), (Lie::BrokenSignature, "insufficient", "a receipt with a broken signature")]
    {
        let url = lying_proxy(&pool.url, lie);
        b.goto(&format!("{url}/"));
        b.exec("sessionStorage.setItem('canon-token', arguments[0]); location.hash = '#/job/' + arguments[1]; location.reload();", json!([TOKEN, id]));
        b.wait_for("document.getElementById('comparison') && document.body.dataset.state === 'ready'", "the job's tally");
        assert_eq!(b.exec("return document.getElementById('verdict').dataset.verdict;", json!([])), json!(page_verdict), "{what}: {}", b.text());
        assert_eq!(
            b.exec("return document.getElementById('comparison').dataset.agrees;", json!([])),
            json!("false"),
            "{what}: the page says the server differs"
        );
        let text = b.text();
        assert!(text.contains("differs from what this page verified"), "{what}: {text}");
        if let Lie::BrokenSignature = lie {
            assert!(text.contains("This page verified 1 of 2 receipts") && text.contains("invalid: bad_signature"), "{text}");
            let verdict = b.exec("return document.getElementById('verdict').textContent;", json!([]));
            assert!(
                verdict.as_str().is_some_and(|v| v.contains("INSUFFICIENT") && !v.contains("ACCEPTED")),
                "the server's accepted verdict is not shown as verified: {verdict}"
            );
            assert!(text.contains("It says ACCEPTED; the receipts verified here say INSUFFICIENT"), "{text}");
            b.screenshot(&util::root().join("target/screenshots/dashboard-lying-coordinator.png"));
        }
    }
}

#[test]
fn the_dashboard_names_a_byzantine_dissenter_filters_by_submitter_and_downloads_checked_artifacts() {
    let mut pool = Coordinator::start("replicas = 3\nmax_runs = 3");
    let liar = NodeKey::from_seed(&[3 + 100; 32]).node_id().to_string();
    let honest = NodeKey::from_seed(&[1 + 100; 32]).node_id().to_string();
    pool.worker(1);
    pool.worker(2);
    pool.worker_with(3, &["--faulty"]);
    let key = pool.dir.path().join("submitter.key");
    let submitter = NodeKey::from_seed(&[42; 32]);
    submitter.save_new(&key).expect("key");
    let signed = pool.submit("hello.toml", &["--sign", key.to_str().expect("utf-8")]);
    let unsigned = pool.submit("hello.toml", &[]);
    for id in [&signed, &unsigned] {
        let v = pool.wait_state(id, &["succeeded"]);
        assert_eq!(v["tally"]["dissenters"][0]["node"], json!(liar), "{v}");
    }

    let b = Browser::start();
    b.goto(&format!("{}/", pool.url));
    b.exec("sessionStorage.setItem('canon-token', arguments[0]); location.reload();", json!([TOKEN]));
    b.wait_for("document.body.dataset.state === 'ready' && document.querySelectorAll('#jobs tbody tr').length === 2", "both jobs");
    // The submitter filter, typed into the form as a person would.
    b.exec(
        "document.getElementById('f-submitter').value = arguments[0]; document.querySelector('form.filters').requestSubmit();",
        json!([submitter.node_id().to_string()]),
    );
    b.wait_for(
        "location.hash.includes('submitter=') && document.body.dataset.state === 'ready' && document.querySelectorAll('#jobs tbody tr').length === 1",
        "the filtered list",
    );
    assert_eq!(b.exec("return document.querySelector('#jobs tbody tr').dataset.job;", json!([])), json!(signed));
    // A submitter that is not a did:key is refused by name, not shown as an empty list.
    b.exec("location.hash = '#/?submitter=mallory';", json!([]));
    b.wait_for("document.body.dataset.state === 'error'", "the refused filter");
    assert!(b.text().contains("submitter") && b.text().contains("mallory"), "{}", b.text());

    // The job: the liar is the dissenter, with what differed.
    b.exec("location.hash = '#/job/' + arguments[0];", json!([signed]));
    b.wait_for("document.getElementById('artifacts') && document.body.dataset.state === 'ready'", "the job's tally and artifacts");
    assert_eq!(b.exec("return document.getElementById('verdict').dataset.verdict;", json!([])), json!("accepted"), "{}", b.text());
    let dissenters = b.exec("return document.getElementById('dissenters').textContent;", json!([]));
    assert!(dissenters.as_str().is_some_and(|t| t.contains("dissents") && t.contains("stdout")), "the dissenter with what differs: {dissenters}");
    assert_eq!(b.exec("return document.querySelector('#dissenters .node').title;", json!([])), json!(liar));
    // Every receipt saves as its envelope; so do all of them together.
    let links = b.exec("return [...document.querySelectorAll('#receipts a[download]')].map(a => a.download);", json!([]));
    assert_eq!(links.as_array().map(Vec::len), Some(3), "{links}");
    let downloads = tempfile::tempdir().expect("downloads");
    b.allow_downloads(downloads.path());
    b.click("#all-receipts");
    let all: Value = serde_json::from_slice(&downloaded(downloads.path(), &format!("{signed}.receipts.json"))).expect("receipts json");
    assert_eq!(all.as_object().map(|o| o.len()), Some(3), "{all}");
    for env in all.as_object().expect("object").values() {
        receipt::verify_envelope(env.as_str().expect("envelope").as_bytes()).expect("each saved receipt verifies with canon");
    }
    // stdout of the accepted outcome downloads and its SHA-256 is checked.
    b.click("#artifact-files tr[data-artifact=\"stdout\"] button");
    b.wait_for("document.querySelector('#artifact-files tr[data-artifact=\"stdout\"] [data-checked]')", "the checked download");
    assert_eq!(
        b.exec("return document.querySelector('#artifact-files tr[data-artifact=\"stdout\"] [data-checked]').dataset.checked;", json!([])),
        json!("true"),
        "{}",
        b.text()
    );
    b.click("#artifact-files tr[data-artifact=\"stdout\"] a[download]");
    let saved = String::from_utf8(downloaded(downloads.path(), "stdout")).expect("utf-8 stdout");
    let digest = b.exec("return document.querySelector('#artifact-files tr[data-artifact=\"stdout\"] td:nth-child(3)').title;", json!([]));
    let digest = digest.as_str().expect("digest").to_string();
    let r = reqwest::blocking::Client::new().get(format!("{}/v1/jobs/{signed}/blobs/{digest}", pool.url)).bearer_auth(TOKEN).send().expect("blob");
    let want = r.text().expect("stdout");
    assert_eq!(Digest::of(want.as_bytes()).to_string(), digest);
    assert_eq!(saved, want, "the saved stdout is the accepted outcome's");
    b.screenshot(&util::root().join("target/screenshots/dashboard-dissenter-desktop.png"));

    // The liar's node page: its dissents, and its credibility falling.
    b.exec("location.hash = '#/node/' + arguments[0];", json!([liar]));
    b.wait_for("document.getElementById('credibility') && document.body.dataset.state === 'ready'", "the liar's node page");
    let summary = b.exec("const s = document.getElementById('node-summary').dataset; return [s.agreed, s.dissented];", json!([]));
    assert_eq!(summary, json!(["0", "2"]), "{}", b.text());
    let dots =
        b.exec("return [...document.querySelectorAll('#credibility circle')].map(c => [c.classList.contains('dissent'), Number(c.dataset.value)]);", json!([]));
    let dots = dots.as_array().expect("dots").clone();
    assert_eq!(dots.len(), 2, "{dots:?}");
    // credibility(0, 1) = (1 - 0.1) / 2, credibility(0, 2) = 0.9 / 3 (fault rate 0.1).
    let values: Vec<f64> = dots.iter().map(|d| d[1].as_f64().expect("value")).collect();
    assert!(dots.iter().all(|d| d[0] == json!(true)) && (values[0] - 0.45).abs() < 1e-6 && (values[1] - 0.3).abs() < 1e-6, "{dots:?}");
    assert!(b.text().contains("2 dissents"), "the chart in words: {}", b.text());
    b.screenshot(&util::root().join("target/screenshots/dashboard-node-liar-desktop.png"));
    b.resize(390, 844);
    b.screenshot(&util::root().join("target/screenshots/dashboard-node-liar-phone.png"));
    b.resize(1280, 900);
    // An honest node's chart rises, with no dissent marked.
    b.exec("location.hash = '#/node/' + arguments[0];", json!([honest]));
    b.wait_for("document.getElementById('credibility') && document.getElementById('node-summary').dataset.agreed === '2'", "an honest node's page");
    assert_eq!(b.exec("return document.querySelectorAll('#credibility circle.dissent').length;", json!([])), json!(0));

    // A coordinator that substitutes a blob: the page refuses to save it.
    fs::remove_file(downloads.path().join("stdout")).expect("rm");
    let url = lying_proxy(&pool.url, Lie::SubstitutedBlob);
    b.goto(&format!("{url}/"));
    b.exec("sessionStorage.setItem('canon-token', arguments[0]); location.hash = '#/job/' + arguments[1]; location.reload();", json!([TOKEN, signed]));
    b.wait_for("document.getElementById('artifacts') && document.body.dataset.state === 'ready'", "the job through the lying coordinator");
    b.click("#artifact-files tr[data-artifact=\"stdout\"] button");
    b.wait_for("document.querySelector('#artifact-files tr[data-artifact=\"stdout\"] [data-checked]')", "the refused download");
    let cell = b.exec("const c = document.querySelector('#artifact-files tr[data-artifact=\"stdout\"]'); return [c.querySelector('[data-checked]').dataset.checked, c.textContent, c.querySelectorAll('a[download]').length];", json!([]));
    assert_eq!(cell[0], json!("false"), "{cell}");
    assert!(cell[1].as_str().is_some_and(|t| t.contains("not saved")), "{cell}");
    assert_eq!(cell[2], json!(0), "nothing to save: {cell}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!downloads.path().join("stdout").exists(), "the substituted stdout was not saved");
}

/// The bytes of `name` once the browser has finished saving it into `dir`.
fn downloaded(dir: &Path, name: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let path = dir.join(name);
    loop {
        let partial = fs::read_dir(dir).expect("downloads").any(|e| e.map(|e| e.file_name().to_string_lossy().ends_with(".crdownload")).unwrap_or(false));
        if path.exists() && !partial {
            return fs::read(&path).expect("read the download");
        }
        let there: Vec<String> = fs::read_dir(dir).expect("downloads").filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned())).collect();
        assert!(Instant::now() < deadline, "{name} was not downloaded into {} (it holds {there:?})", dir.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}
