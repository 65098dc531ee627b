//! The web side of trust: the browser verifier, static reports, badges and
//! the coordinator's dashboard (docs/WEB.md).
//!
//! The pages never take the server's word for a verdict: they carry
//! [`VERIFY_JS`], a dependency-free ES module that verifies every receipt
//! as `canon verify` does (DSSE, ed25519 `verify_strict` through WebCrypto,
//! node ids, statements, digests) and tallies the valid ones as
//! `canon quorum` does. The module is committed source, embedded here with
//! `include_str!`; no front-end toolchain is involved.

pub mod badge;
pub mod dashboard;
pub mod report;

/// The browser verifier and tally (`web/verify.js`), an ES module.
pub const VERIFY_JS: &str = include_str!("../../web/verify.js");

/// JSON text safe to place inside an HTML `<script>` element: `<`, `>`
/// and `&` (and the line separators JavaScript once treated as newlines)
/// are written as `\u` escapes, which JSON reads back unchanged, so no
/// string in the data can close the element or start a comment.
pub fn script_json(value: &serde_json::Value) -> String {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Text escaped for HTML and XML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_can_be_inlined_in_a_script_element() {
        assert!(!VERIFY_JS.to_ascii_lowercase().contains("</script"));
        assert!(!VERIFY_JS.contains("<!--"));
    }

    #[test]
    fn script_json_cannot_close_the_element() {
        let v = serde_json::json!({"source": "</script><script>alert(1)</script>", "x": "a&b\u{2028}"});
        let s = script_json(&v);
        assert!(!s.contains('<') && !s.contains('>') && !s.contains('&'), "{s}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).expect("json"), v);
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(escape("<a href=\"x\" title='y'>&</a>\u{1}"), "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;\u{fffd}");
    }
}
