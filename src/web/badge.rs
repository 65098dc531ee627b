//! Badges: a job's or a group's verdict as an SVG in the style of CI
//! badges ("verified 3/3", "disputed 2/3", "pending 1/3"), and the same
//! data as a shields.io endpoint document (`schemaVersion`, `label`,
//! `message`, `color`).
//!
//! The colour follows the number of independent agreeing nodes, as
//! rebuilder dashboards colour them: none (red), one or more without an
//! accepted verdict (yellow), enough, that is an accepted verdict (green);
//! a job that ended without a verdict (cancelled, failed) is grey. The
//! text always carries the verdict, so colour is never the only signal.
//! Every string is XML-escaped.

use serde_json::{Value, json};

use super::escape;

/// Colour when no node agrees with another (or nothing came back).
pub const RED: &str = "#e05d44";
/// Colour when nodes agree, but not yet enough to accept.
pub const YELLOW: &str = "#dfb317";
/// Colour of an accepted verdict.
pub const GREEN: &str = "#44cc11";
/// Colour of a job that ended without a verdict.
pub const GREY: &str = "#9f9f9f";

/// What a badge says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Badge {
    /// The left part (`canon`, or `canon <group>`).
    pub label: String,
    /// The right part: the verdict and its counts.
    pub message: String,
    /// Its colour, `#rrggbb`.
    pub color: &'static str,
}

/// The badge of a job: its state (`pending`, `running`, `succeeded`,
/// `failed`, `timed_out`, `cancelled`), its tally (canon's tally JSON, if
/// any receipt came back) and its target number of replicas.
pub fn for_job(label: &str, state: &str, tally: Option<&Value>, replicas: u32) -> Badge {
    let groups = tally.and_then(|t| t["groups"].as_array()).cloned().unwrap_or_default();
    let counted = |g: &Value| g["counted"].as_u64().unwrap_or(0);
    let votes: u64 = groups.iter().map(counted).sum();
    let verdict = tally.and_then(|t| t["verdict"].as_str()).unwrap_or("insufficient");
    let accepted = tally.and_then(|t| t["accepted"].as_str());
    let agreeing = match accepted {
        Some(a) => groups.iter().find(|g| g["outcome"].as_str() == Some(a)).map(counted).unwrap_or(0),
        None => groups.iter().map(counted).max().unwrap_or(0),
    };
    let finished = !matches!(state, "pending" | "running");
    let (message, color) = match verdict {
        "accepted" => (format!("verified {agreeing}/{votes}"), GREEN),
        "disputed" => (format!("disputed {agreeing}/{votes}"), RED),
        "nondeterministic" => (format!("nondeterministic {agreeing}/{votes}"), RED),
        _ if finished && state != "succeeded" => (format!("{} {agreeing}/{}", state.replace('_', " "), votes.max(u64::from(replicas))), GREY),
        _ if finished => (format!("insufficient {agreeing}/{votes}"), if agreeing > 0 { YELLOW } else { RED }),
        _ => (format!("pending {agreeing}/{}", votes.max(u64::from(replicas))), if agreeing > 0 { YELLOW } else { RED }),
    };
    Badge { label: label.to_string(), message, color }
}

/// Rough width in pixels of `text` in 11px Verdana, as badges are laid out.
fn text_width(text: &str) -> u32 {
    text.chars()
        .map(|c| {
            if c.is_ascii_uppercase() || c == 'm' || c == 'w' {
                8
            } else if c == ' ' || c == '/' || c == 'i' || c == 'l' {
                4
            } else {
                7
            }
        })
        .sum()
}

impl Badge {
    /// The SVG, flat style, with a `<title>` for screen readers.
    pub fn svg(&self) -> String {
        let (l, m) = (escape(&self.label), escape(&self.message));
        let lw = text_width(&self.label) + 10;
        let mw = text_width(&self.message) + 10;
        let w = lw + mw;
        format!(
            concat!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"20\" role=\"img\" aria-label=\"{l}: {m}\">",
                "<title>{l}: {m}</title>",
                "<linearGradient id=\"s\" x2=\"0\" y2=\"100%\"><stop offset=\"0\" stop-color=\"#bbb\" stop-opacity=\".1\"/><stop offset=\"1\" stop-opacity=\".1\"/></linearGradient>",
                "<clipPath id=\"r\"><rect width=\"{w}\" height=\"20\" rx=\"3\" fill=\"#fff\"/></clipPath>",
                "<g clip-path=\"url(#r)\"><rect width=\"{lw}\" height=\"20\" fill=\"#555\"/><rect x=\"{lw}\" width=\"{mw}\" height=\"20\" fill=\"{color}\"/><rect width=\"{w}\" height=\"20\" fill=\"url(#s)\"/></g>",
                "<g fill=\"#fff\" text-anchor=\"middle\" font-family=\"Verdana,Geneva,DejaVu Sans,sans-serif\" font-size=\"11\">",
                "<text x=\"{lx}\" y=\"14\">{l}</text><text x=\"{mx}\" y=\"14\">{m}</text></g></svg>"
            ),
            w = w,
            lw = lw,
            mw = mw,
            l = l,
            m = m,
            color = self.color,
            lx = lw / 2,
            mx = lw + mw / 2,
        )
    }

    /// The shields.io endpoint document.
    pub fn shields(&self) -> Value {
        json!({"schemaVersion": 1, "label": self.label, "message": self.message, "color": self.color})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(verdict: &str, counted: &[u64]) -> Value {
        let groups: Vec<Value> = counted.iter().enumerate().map(|(i, c)| json!({"outcome": format!("o{i}"), "counted": c})).collect();
        let accepted = (verdict == "accepted").then_some("o0");
        json!({"verdict": verdict, "accepted": accepted, "groups": groups})
    }

    #[test]
    fn messages_carry_the_verdict_and_the_counts() {
        let b = for_job("canon", "succeeded", Some(&tally("accepted", &[3])), 3);
        assert_eq!((b.message.as_str(), b.color), ("verified 3/3", GREEN));
        let b = for_job("canon", "running", Some(&tally("disputed", &[2, 1])), 3);
        assert_eq!((b.message.as_str(), b.color), ("disputed 2/3", RED));
        let b = for_job("canon", "running", Some(&tally("insufficient", &[1])), 3);
        assert_eq!((b.message.as_str(), b.color), ("pending 1/3", YELLOW));
        let b = for_job("canon", "pending", None, 3);
        assert_eq!((b.message.as_str(), b.color), ("pending 0/3", RED));
        let b = for_job("canon", "cancelled", Some(&tally("insufficient", &[1])), 3);
        assert_eq!((b.message.as_str(), b.color), ("cancelled 1/3", GREY));
        let b = for_job("canon", "running", Some(&tally("nondeterministic", &[1, 1])), 2);
        assert_eq!((b.message.as_str(), b.color), ("nondeterministic 1/2", RED));
    }

    #[test]
    fn the_svg_escapes_every_string_and_is_well_formed() {
        let b = Badge { label: "canon <script>&\"'".into(), message: "verified 3/3".into(), color: GREEN };
        let svg = b.svg();
        assert!(svg.contains("canon &lt;script&gt;&amp;&quot;&#39;"), "{svg}");
        assert!(!svg.contains("<script"), "{svg}");
        assert_eq!(svg.matches("<text").count(), 2);
        assert!(svg.contains("<title>canon &lt;script&gt;&amp;&quot;&#39;: verified 3/3</title>"));
        assert_eq!(b.shields(), json!({"schemaVersion": 1, "label": "canon <script>&\"'", "message": "verified 3/3", "color": "#44cc11"}));
    }
}
