//! The dashboard `canon serve` serves at `/`: one page and its assets, all
//! embedded. The page holds no data; it asks for the tenant's token and
//! reads the API with it (docs/WEB.md, "The dashboard").

/// The page at `/`.
pub const INDEX: &str = include_str!("../../web/dashboard.html");

/// An asset under `/assets/`: its content type and bytes, or `None`.
pub fn asset(name: &str) -> Option<(&'static str, &'static str)> {
    const JS: &str = "text/javascript; charset=utf-8";
    Some(match name {
        "verify.js" => (JS, super::VERIFY_JS),
        "render.js" => (JS, include_str!("../../web/render.js")),
        "dashboard.js" => (JS, include_str!("../../web/dashboard.js")),
        "style.css" => ("text/css; charset=utf-8", include_str!("../../web/style.css")),
        _ => return None,
    })
}
