//! `canon quorum --html FILE`: the tally as one self-contained page.
//!
//! The page holds everything it needs: the style, the browser verifier
//! ([`super::VERIFY_JS`]), the receipts as given (base64 of each file's
//! bytes), the policy in full, the job asked for and, under a policy with
//! credibility, the ledger records of the nodes involved. It verifies the
//! receipts and tallies them itself, then compares its tally with the one
//! canon computed, which is embedded too; its Content-Security-Policy
//! allows no network access at all. The embedded data's shape is in
//! docs/WEB.md ("The static report").

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::quorum::{Policy, Tally, TallyOptions};

const TEMPLATE: &str = include_str!("../../web/report.html");
const STYLE: &str = include_str!("../../web/style.css");
const RENDER_JS: &str = include_str!("../../web/render.js");
const REPORT_JS: &str = include_str!("../../web/report.js");

/// The name of the embedded data's format.
pub const REPORT_FORMAT: &str = "canon/report/v1";

/// A policy as the browser tally reads it: every field, nodes included.
pub fn policy_json(p: &Policy) -> Value {
    json!({
        "implicit": p.implicit,
        "nodes": p.nodes.iter().map(|n| json!({"id": n.id.to_string(), "name": n.name, "weight": n.weight})).collect::<Vec<_>>(),
        "min_quorum": p.min_quorum,
        "threshold": p.threshold,
        "unknown_weight": p.unknown_weight,
        "credibility": p.credibility,
        "fault_rate": p.fault_rate,
    })
}

/// The ledger records the browser needs under a policy with credibility:
/// those of every listed node and every valid signer among `receipts`
/// (`{"did:key:…": {"agreed": n, "dissented": n}}`); `null` otherwise.
pub fn records_json(options: &TallyOptions, receipts: &[(String, Vec<u8>)]) -> Value {
    let (true, Some(ledger)) = (options.policy.credibility, &options.ledger) else {
        return Value::Null;
    };
    let mut nodes: Vec<crate::node::NodeId> = options.policy.nodes.iter().map(|n| n.id).collect();
    nodes.extend(receipts.iter().filter_map(|(_, b)| crate::receipt::verify_envelope(b).ok().map(|r| r.node())));
    nodes.sort();
    nodes.dedup();
    let map: serde_json::Map<String, Value> = nodes
        .iter()
        .map(|n| {
            let r = ledger.record_of(n);
            (n.to_string(), json!({"agreed": r.agreed, "dissented": r.dissented}))
        })
        .collect();
    Value::Object(map)
}

/// The data a report embeds.
pub fn report_data(receipts: &[(String, Vec<u8>)], options: &TallyOptions, tally: &Tally) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "format": REPORT_FORMAT,
        "canon": crate::receipt::CANON_VERSION,
        "policy": policy_json(&options.policy),
        "expected_job": options.expected_job.map(|j| j.to_string()),
        "records": records_json(options, receipts),
        "receipts": receipts.iter().map(|(source, bytes)| json!({"source": source, "envelope": b64.encode(bytes)})).collect::<Vec<_>>(),
        "tally": serde_json::to_value(tally).unwrap_or(Value::Null),
    })
}

/// Fills `{{NAME}}` markers in one pass, so that a value containing a
/// marker is never filled in again.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").and_then(|end| values.iter().find(|(k, _)| *k == &after[..end]).map(|(_, v)| (end, v))) {
            Some((end, v)) => {
                out.push_str(v);
                rest = &after[end + 2..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The report page for `tally`, made from `receipts` under `options`.
pub fn report_html(receipts: &[(String, Vec<u8>)], options: &TallyOptions, tally: &Tally) -> String {
    let data = super::script_json(&report_data(receipts, options, tally));
    let script = format!("{}\n{RENDER_JS}\n{REPORT_JS}", super::VERIFY_JS);
    let job = tally.job.map(|j| j.short()).unwrap_or_else(|| "none".to_string());
    fill(
        TEMPLATE,
        &[
            ("JOB", &super::escape(&job)),
            ("STYLE", STYLE),
            ("VERSION", crate::receipt::CANON_VERSION),
            ("CANON_VERDICT", &tally.verdict.to_string().to_uppercase()),
            ("DATA", &data),
            ("SCRIPT", &script),
        ],
    )
}

/// Writes `bytes` to `path` atomically: into a temporary file beside it,
/// flushed, then renamed over `path`. A failure leaves `path` as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new().prefix(".canon-report-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_does_not_refill_values() {
        assert_eq!(fill("a{{X}}b{{Y}}c{{Z}}", &[("X", "{{Y}}"), ("Y", "y")]), "a{{Y}}byc{{Z}}");
    }

    #[test]
    fn a_hostile_source_name_stays_data() {
        let receipts = vec![("</script><script>alert(1)</script>{{SCRIPT}}".to_string(), b"{}".to_vec())];
        let options = TallyOptions::default();
        let t = crate::quorum::tally(&receipts, &options);
        let html = report_html(&receipts, &options, &t);
        assert!(!html.contains("<script>alert"), "the name must not become markup");
        assert_eq!(html.matches("<script").count(), 2, "only the data and the module script");
    }
}
