//! The coordinator: the HTTP API (axum on tokio) over a [`Store`] and a
//! [`BlobStore`]. Handlers parse, authenticate and check; the store does
//! every state change in one transaction; no SQL here.
//!
//! Clients authenticate with a bearer token (one per tenant); workers sign
//! every request with their node key (RFC 9421, [`crate::pool::httpsig`]).
//! docs/POOL.md lists the routes, and `docs/openapi.json` describes them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;

use super::api::*;
use super::blobs::{BlobError, BlobStore};
use super::bundle::Bundle;
use super::config::{Config, Tenant};
use super::httpsig::{self, ReplayGuard, RequestParts, VerifyPolicy};
use super::store::{Beat, Capacity, CheckedReceipt, ListFilter, NewJob, RunJob, SqliteStore, Store, StoreError};
use super::submitter;
use crate::digest::Digest;
use crate::node::NodeId;
use crate::quorum::Policy;

/// The coordinator's shared state.
pub struct App {
    store: Arc<dyn Store>,
    blobs: BlobStore,
    config: Config,
    policy: Policy,
    replay: Mutex<ReplayGuard>,
    events: tokio::sync::Notify,
    /// Wakes lease requests held for work (`wait_ms`): a job was
    /// submitted, or a run ended, which may want another run.
    work: tokio::sync::Notify,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// An API error: a status, a stable code and a message.
#[derive(Debug)]
pub struct Error {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u64>,
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> Error {
    Error { status, code, message: message.into(), retry_after: None }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = axum::Json(ApiError { error: self.code.into(), message: self.message });
        let mut r = (self.status, body).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        match e {
            StoreError::NoJob(_) => err(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            StoreError::NoRun(_) => err(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            StoreError::QueueFull(_) => Error { retry_after: Some(5), ..err(StatusCode::TOO_MANY_REQUESTS, "queue_full", e.to_string()) },
            StoreError::Conflict(_) => err(StatusCode::CONFLICT, "conflict", e.to_string()),
            StoreError::BadRequest(_) => err(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
            StoreError::TooLarge(_) => err(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()),
            StoreError::Db(_) => err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

impl From<BlobError> for Error {
    fn from(e: BlobError) -> Error {
        match e {
            BlobError::Mismatch { .. } => err(StatusCode::UNPROCESSABLE_ENTITY, "blob_mismatch", e.to_string()),
            BlobError::TooLarge { .. } => err(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string()),
            BlobError::Missing(_) => err(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            BlobError::Corrupt { .. } | BlobError::Io { .. } => err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
}

type Result<T> = std::result::Result<T, Error>;

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?
}

impl App {
    /// Opens the store and blobs under `data` with `config` and `policy`.
    /// It returns at the start of a whole second: worker signatures made
    /// before it are refused, since the replay guard starts empty.
    pub fn open(data: &Path, config: Config, policy: Policy) -> std::result::Result<App, String> {
        std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
        let store = SqliteStore::open(&data.join("canon.db"), config.durable).map_err(|e| e.to_string())?;
        let blobs = BlobStore::open(&data.join("blobs"), config.max_blob_bytes).map_err(|e| e.to_string())?.durable(config.durable);
        // Nonces are held in memory: refuse every signature made before
        // this process's first whole second, which the previous one may
        // have accepted, and open no sooner, so no fresh one is refused.
        let not_before = now_ms() / 1000 + 1;
        std::thread::sleep(Duration::from_millis((not_before * 1000 - now_ms()).max(0) as u64));
        let replay = ReplayGuard::for_policy(&httpsig_policy()).not_before(not_before);
        Ok(App {
            store: Arc::new(store),
            blobs,
            config,
            policy,
            replay: Mutex::new(replay),
            events: tokio::sync::Notify::new(),
            work: tokio::sync::Notify::new(),
        })
    }

    fn tenant(&self, headers: &HeaderMap) -> Result<Tenant> {
        let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(token) = auth.strip_prefix("Bearer ") else {
            return Err(err(StatusCode::UNAUTHORIZED, "unauthorized", "expected `Authorization: Bearer TOKEN` (a tenant's token)"));
        };
        let d = Digest::of(token.trim().as_bytes());
        self.config
            .tenants
            .iter()
            .find(|t| t.token_sha256 == d)
            .cloned()
            .ok_or_else(|| err(StatusCode::UNAUTHORIZED, "unauthorized", "the bearer token is not a tenant's token"))
    }

    /// Checks a worker's signed request and returns its node id.
    fn node(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<NodeId> {
        let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let unauth = |m: String| err(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let digest = h("content-digest").ok_or_else(|| unauth("a worker request needs a Content-Digest header (RFC 9530)".into()))?;
        httpsig::check_content_digest(digest, body).map_err(|e| unauth(e.to_string()))?;
        let (Some(input), Some(sig)) = (h("signature-input"), h("signature")) else {
            return Err(unauth("a worker request needs Signature-Input and Signature headers (RFC 9421)".into()));
        };
        // HTTP/1.1 sends Host; HTTP/2 may send only :authority.
        let authority = h("host").or_else(|| uri.authority().map(|a| a.as_str())).unwrap_or("");
        let parts = RequestParts { method: method.as_str(), authority, path: uri.path(), query: uri.query(), content_digest: digest };
        let now = now_ms() / 1000;
        let verified = httpsig::verify_request(&parts, input, sig, now, &httpsig_policy()).map_err(|e| unauth(e.to_string()))?;
        self.replay
            .lock()
            .map_err(|_| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", "replay guard poisoned"))?
            .check_and_record(&verified, now)
            .map_err(|e| unauth(e.to_string()))?;
        if !self.config.allow_nodes.is_empty() && !self.config.allow_nodes.contains(&verified.node) {
            return Err(err(StatusCode::FORBIDDEN, "forbidden", format!("node {} is not allowed to lease work here", verified.node)));
        }
        Ok(verified.node)
    }

    /// Deletes the blobs older than the grace period that no unfinished job
    /// and no job finished within the retention names; returns how many.
    pub fn collect_garbage(&self, now: i64) -> std::result::Result<u64, StoreError> {
        let cutoff = std::time::UNIX_EPOCH + Duration::from_millis((now - self.config.blob_grace_ms).max(0) as u64);
        let old = self.blobs.older_than(cutoff);
        if old.is_empty() {
            return Ok(0);
        }
        let (newest, roots) = self.store.gc_roots(now - self.config.blob_retention_ms)?;
        let candidates: Vec<Digest> = old.into_iter().filter(|d| !roots.contains(d)).collect();
        self.store.gc_commit(newest, candidates, &mut |d| self.blobs.remove(d))
    }

    /// A tenant (bearer token: `Some`) or a worker (signature: `None`).
    fn caller(&self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Option<Tenant>> {
        if headers.contains_key("signature") { self.node(method, uri, headers, body).map(|_| None) } else { self.tenant(headers).map(Some) }
    }
}

/// A worker's request: its body, and the node whose RFC 9421 signature
/// over it checked out. Handlers that take it run only for signed requests.
struct Signed {
    node: NodeId,
    body: Bytes,
}

/// A request from a tenant (bearer token) or a worker (signature), with
/// its body.
struct Asker {
    /// `None` for a worker.
    tenant: Option<Tenant>,
    body: Bytes,
}

/// The body and the parts a signature covers, within the body limit.
async fn signed_parts(req: axum::extract::Request, app: &App) -> Result<(axum::http::request::Parts, Bytes)> {
    let (parts, body) = req.into_parts();
    let limit = app.config.max_body_bytes.max(app.config.max_blob_bytes) as usize;
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        err(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the request body is larger than this coordinator accepts (max_body_bytes, max_blob_bytes)")
    })?;
    Ok((parts, body))
}

impl axum::extract::FromRequest<Arc<App>> for Signed {
    type Rejection = Error;
    async fn from_request(req: axum::extract::Request, app: &Arc<App>) -> Result<Signed> {
        let (parts, body) = signed_parts(req, app).await?;
        let node = app.node(&parts.method, &parts.uri, &parts.headers, &body)?;
        Ok(Signed { node, body })
    }
}

impl axum::extract::FromRequest<Arc<App>> for Asker {
    type Rejection = Error;
    async fn from_request(req: axum::extract::Request, app: &Arc<App>) -> Result<Asker> {
        let (parts, body) = signed_parts(req, app).await?;
        let tenant = app.caller(&parts.method, &parts.uri, &parts.headers, &body)?;
        Ok(Asker { tenant, body })
    }
}

fn httpsig_policy() -> VerifyPolicy {
    VerifyPolicy::default()
}

/// A query string, or the API's `bad_request` (axum's own rejection is
/// plain text).
fn json<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| err(StatusCode::BAD_REQUEST, "bad_request", format!("{what}: {e}")))
}

/// axum's own refusals (a query or path it cannot parse, a body past the
/// limit, an unknown route, a method a route lacks) as the API's JSON error
/// body. Every handler's own errors are JSON already.
async fn json_rejections(r: Response) -> Response {
    let json = r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json"));
    if json {
        return r;
    }
    let code = match r.status() {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "bad_request",
        _ => return r,
    };
    let status = r.status();
    let message = match status {
        // axum says which part of the request it could not parse.
        StatusCode::BAD_REQUEST => {
            let text = axum::body::to_bytes(r.into_body(), 64 << 10).await.unwrap_or_default();
            String::from_utf8_lossy(&text).into_owned()
        }
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is larger than this coordinator accepts (max_body_bytes, max_blob_bytes)".to_string(),
        StatusCode::NOT_FOUND => "no such route (docs/openapi.json lists them)".to_string(),
        other => format!("{other}"),
    };
    err(status, code, message).into_response()
}

/// The routes.
pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes.max(app.config.max_blob_bytes) as usize;
    Router::new()
        .route("/v1/jobs", post(submit).get(list))
        .route("/v1/jobs/{id}", get(status))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .route("/v1/jobs/{id}/receipts", get(receipts))
        .route("/v1/jobs/{id}/blobs/{digest}", get(job_blob))
        .route("/v1/jobs/{id}/runs/{run}/log", get(read_log))
        .route("/v1/nodes/{node}/runs", get(node_runs))
        .route("/v1/events", get(events))
        .route("/v1/blobs/missing", post(missing))
        .route("/v1/blobs/{digest}", put(put_blob).get(get_blob))
        .route("/v1/lease", post(lease))
        .route("/v1/runs/{id}/heartbeat", post(heartbeat))
        .route("/v1/runs/{id}/complete", post(complete))
        .route("/v1/runs/{id}/fail", post(fail))
        .route("/v1/runs/{id}/log", post(append_log))
        .route("/", get(dashboard))
        .route("/assets/{file}", get(dashboard_asset))
        .route("/v1/policy", get(policy))
        .route("/v1/badges/job/{file}", get(job_badge))
        .route("/v1/badges/group/{tenant}/{file}", get(group_badge))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::map_response(json_rejections))
        .with_state(app)
}

async fn submit(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Result<Response> {
    let tenant = app.tenant(&headers)?;
    if body.len() as u64 > app.config.max_body_bytes {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body is {} bytes; the limit is {}", body.len(), app.config.max_body_bytes),
        ));
    }
    let req: SubmitRequest = json(&body, "submit request")?;
    let bundle = Bundle::parse(req.bundle.as_bytes()).map_err(|e| err(StatusCode::BAD_REQUEST, "bad_bundle", e.to_string()))?;
    // Only blobs this tenant uploaded count: another tenant's bytes are not
    // this tenant's to use, or to learn about.
    let named: Vec<(Digest, String)> = bundle.blobs().into_iter().collect();
    let digests: Vec<Digest> = named.iter().map(|(d, _)| *d).collect();
    let (store, t) = (app.store.clone(), tenant.name.clone());
    let owned = blocking(move || Ok(store.tenant_blobs(&t, &digests)?)).await?;
    let missing: Vec<String> =
        named.iter().zip(owned).filter(|((d, _), own)| !own || !app.blobs.has(d)).map(|((d, what), _)| format!("{d} ({what})")).collect();
    if !missing.is_empty() {
        return Err(err(StatusCode::UNPROCESSABLE_ENTITY, "missing_blobs", format!("upload these blobs first: {}", missing.join(", "))));
    }
    let submitter = match &req.signature {
        None => None,
        Some(env) => {
            Some(submitter::verify(env.as_bytes(), &bundle.job_digest).map_err(|e| err(StatusCode::BAD_REQUEST, "bad_signature", e.to_string()))?.to_string())
        }
    };
    let replicas = req.replicas.unwrap_or(app.config.replicas);
    if replicas == 0 || replicas > app.config.max_runs {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`replicas` is {replicas}; expected 1 to {} (the coordinator's max_runs)", app.config.max_runs),
        ));
    }
    if (replicas as usize) < app.policy.min_quorum {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`replicas` is {replicas}, below the coordinator's policy min_quorum of {}: the job could never be accepted", app.policy.min_quorum),
        ));
    }
    let priority = req.priority.unwrap_or(DEFAULT_PRIORITY);
    if priority > MAX_PRIORITY {
        return Err(err(StatusCode::BAD_REQUEST, "bad_request", format!("`priority` is {priority}; expected 0 to {MAX_PRIORITY}")));
    }
    if let Some(g) = &req.group
        && (g.is_empty() || g.len() > 200)
    {
        return Err(err(StatusCode::BAD_REQUEST, "bad_request", "`group` must be 1 to 200 bytes"));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let job_digest = bundle.job_digest;
    let new = NewJob {
        id: id.clone(),
        tenant: tenant.name.clone(),
        name: bundle.name.clone(),
        job_digest,
        bundle: req.bundle,
        signature: req.signature,
        submitter,
        group: req.group,
        mode: req.mode,
        priority,
        replicas,
        max_runs: app.config.max_runs.max(replicas),
        max_errors: app.config.max_errors,
    };
    let capacity = Capacity { max_unfinished: app.config.max_unfinished, max_unfinished_per_tenant: tenant.max_unfinished };
    let store = app.store.clone();
    let superseded = blocking(move || Ok(store.submit(new, capacity, now_ms())?)).await?;
    app.events.notify_waiters();
    app.work.notify_waiters();
    Ok((StatusCode::CREATED, axum::Json(SubmitResponse { id, job_digest, superseded })).into_response())
}

async fn list(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<JobQuery>) -> Result<axum::Json<JobPage>> {
    let tenant = app.tenant(&headers)?;
    let state = q.status.map(|s| s.parse::<JobState>()).transpose().map_err(|e| err(StatusCode::BAD_REQUEST, "bad_request", format!("`status`: {e}")))?;
    let submitter = q.submitter.map(|s| parse_node(&s, "submitter")).transpose()?;
    let limit = page_limit(q.limit)?;
    let filter = ListFilter { state, group: q.group, submitter, limit, cursor: q.cursor };
    let store = app.store.clone();
    Ok(axum::Json(blocking(move || Ok(store.list(&tenant.name, &filter)?)).await?))
}

/// A page's `limit`: 1 to 1000, default 50.
fn page_limit(limit: Option<usize>) -> Result<usize> {
    let limit = limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(err(StatusCode::BAD_REQUEST, "bad_request", format!("`limit` is {limit}; expected 1 to 1000")));
    }
    Ok(limit)
}

/// A node id given in a request, in its canonical text.
fn parse_node(text: &str, what: &str) -> Result<String> {
    text.parse::<NodeId>().map(|n| n.to_string()).map_err(|e| err(StatusCode::BAD_REQUEST, "bad_request", format!("`{what}` {text:?}: {e}")))
}

#[derive(Deserialize)]
struct PageQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// A node's runs of the caller's jobs, with each job's verdict: the
/// dashboard's node page.
async fn node_runs(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(node): UrlPath<String>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<NodeRunPage>> {
    let tenant = app.tenant(&headers)?;
    let node = parse_node(&node, "node")?;
    let limit = page_limit(q.limit)?;
    let store = app.store.clone();
    Ok(axum::Json(blocking(move || Ok(store.node_runs(&tenant.name, &node, limit, q.cursor.as_deref())?)).await?))
}

async fn status(State(app): State<Arc<App>>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Result<axum::Json<JobView>> {
    let tenant = app.tenant(&headers)?;
    let store = app.store.clone();
    Ok(axum::Json(blocking(move || Ok(store.job(&tenant.name, &id)?)).await?))
}

async fn cancel(State(app): State<Arc<App>>, headers: HeaderMap, UrlPath(id): UrlPath<String>, body: Bytes) -> Result<StatusCode> {
    let tenant = app.tenant(&headers)?;
    let req: CancelRequest = if body.is_empty() { CancelRequest::default() } else { json(&body, "cancel request")? };
    let reason = req.reason.unwrap_or_else(|| "cancelled by the submitter".into());
    let store = app.store.clone();
    blocking(move || Ok(store.cancel(&tenant.name, &id, &reason, now_ms())?)).await?;
    app.events.notify_waiters();
    Ok(StatusCode::NO_CONTENT)
}

async fn receipts(State(app): State<Arc<App>>, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Result<axum::Json<ReceiptList>> {
    let tenant = app.tenant(&headers)?;
    let store = app.store.clone();
    let (job_digest, list) = blocking(move || Ok(store.receipts(&tenant.name, &id)?)).await?;
    let receipts = list.into_iter().map(|(run, bytes)| (run, String::from_utf8_lossy(&bytes).into_owned())).collect();
    Ok(axum::Json(ReceiptList { job_digest, receipts }))
}

/// The dashboard's page (docs/WEB.md): public, it holds no data.
async fn dashboard() -> Response {
    let csp = (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    ([csp], axum::response::Html(crate::web::dashboard::INDEX)).into_response()
}

async fn dashboard_asset(UrlPath(file): UrlPath<String>) -> Result<Response> {
    let (ct, body) = crate::web::dashboard::asset(&file).ok_or_else(|| err(StatusCode::NOT_FOUND, "not_found", format!("no asset {file:?}")))?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(ct))], body).into_response())
}

/// The coordinator's trust policy in full, so that a page can tally
/// receipts itself under it.
async fn policy(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<axum::Json<serde_json::Value>> {
    app.tenant(&headers)?;
    Ok(axum::Json(crate::web::report::policy_json(&app.policy)))
}

/// `ID.svg` or `ID.json` (the shields.io endpoint form) of a badge route.
fn badge_file(file: &str) -> Result<(String, bool)> {
    match file.rsplit_once('.') {
        Some((id, "svg")) if !id.is_empty() => Ok((id.to_string(), false)),
        Some((id, "json")) if !id.is_empty() => Ok((id.to_string(), true)),
        _ => Err(err(StatusCode::NOT_FOUND, "not_found", format!("{file:?}: a badge is NAME.svg or NAME.json"))),
    }
}

fn badge_response(view: &JobView, label: &str, shields: bool) -> Response {
    let badge = crate::web::badge::for_job(label, view.state.as_str(), view.tally.as_ref(), view.replicas);
    let no_cache = (header::CACHE_CONTROL, HeaderValue::from_static("no-cache, max-age=0"));
    if shields {
        return ([no_cache], axum::Json(badge.shields())).into_response();
    }
    let svg = (header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml; charset=utf-8"));
    let csp = (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"));
    ([svg, no_cache, csp], badge.svg()).into_response()
}

/// A job's badge. Public, like a CI badge a README embeds: it shows only
/// the verdict and counts, and a job id is a random UUID that only its
/// tenant can hand out (docs/WEB.md, "Badges").
async fn job_badge(State(app): State<Arc<App>>, UrlPath(file): UrlPath<String>) -> Result<Response> {
    let (id, shields) = badge_file(&file)?;
    let tenants: Vec<String> = app.config.tenants.iter().map(|t| t.name.clone()).collect();
    let store = app.store.clone();
    let view =
        blocking(move || tenants.iter().find_map(|t| store.job(t, &id).ok()).ok_or_else(|| err(StatusCode::NOT_FOUND, "not_found", format!("no job {id}"))))
            .await?;
    Ok(badge_response(&view, "canon", shields))
}

/// The badge of a tenant's group: its newest job's. Public, as
/// [`job_badge`] is.
async fn group_badge(State(app): State<Arc<App>>, UrlPath((tenant, file)): UrlPath<(String, String)>) -> Result<Response> {
    let (group, shields) = badge_file(&file)?;
    if !app.config.tenants.iter().any(|t| t.name == tenant) {
        return Err(err(StatusCode::NOT_FOUND, "not_found", format!("no group {group:?} of tenant {tenant:?}")));
    }
    let store = app.store.clone();
    let (t, g) = (tenant.clone(), group.clone());
    let view = blocking(move || {
        let page = store.list(&t, &ListFilter { group: Some(g.clone()), limit: 1, ..ListFilter::default() })?;
        let newest = page.jobs.first().ok_or_else(|| err(StatusCode::NOT_FOUND, "not_found", format!("no group {g:?} of tenant {t:?}")))?;
        Ok(store.job(&t, &newest.id)?)
    })
    .await?;
    Ok(badge_response(&view, &format!("canon {group}"), shields))
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse().map_err(|_| err(StatusCode::BAD_REQUEST, "bad_request", format!("{s:?} is not a SHA-256 digest (64 lowercase hex digits)")))
}

/// An output of a tenant's job: one its receipts name (stdout, stderr or a
/// file). A tenant cannot read blobs of jobs it does not own.
async fn job_blob(State(app): State<Arc<App>>, headers: HeaderMap, UrlPath((id, digest)): UrlPath<(String, String)>) -> Result<Response> {
    let tenant = app.tenant(&headers)?;
    let d = parse_digest(&digest)?;
    let store = app.store.clone();
    let a = app.clone();
    blocking(move || {
        let (_, receipts) = store.receipts(&tenant.name, &id)?;
        if !receipts.iter().any(|(_, env)| receipt_names(env, &d)) {
            return Err(err(StatusCode::NOT_FOUND, "not_found", format!("job {id} has no output {d}")));
        }
        Ok(a.blobs.get(&d)?.into_response())
    })
    .await
}

/// Whether a receipt names `d` as its stdout, stderr or an output file.
fn receipt_names(envelope: &[u8], d: &Digest) -> bool {
    // Stored receipts were verified on arrival.
    let Ok(r) = crate::receipt::reread_verified(envelope) else { return false };
    r.statement.predicate.outcome.blob_digests().any(|n| n == *d)
}

async fn missing(State(app): State<Arc<App>>, Asker { tenant, body }: Asker) -> Result<axum::Json<MissingResponse>> {
    let req: MissingRequest = json(&body, "missing request")?;
    if req.digests.len() > 1_000_000 {
        return Err(err(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "at most 1 000 000 digests per request"));
    }
    let a = app.clone();
    // A tenant learns only about blobs it uploaded itself; a worker (which
    // uploads outputs) about any.
    let missing = blocking(move || {
        let owned = match &tenant {
            Some(t) => a.store.tenant_blobs(&t.name, &req.digests)?,
            None => vec![true; req.digests.len()],
        };
        Ok(req.digests.into_iter().zip(owned).filter(|(d, own)| !own || !a.blobs.keep(d)).map(|(d, _)| d).collect())
    })
    .await?;
    Ok(axum::Json(MissingResponse { missing }))
}

async fn put_blob(State(app): State<Arc<App>>, UrlPath(digest): UrlPath<String>, Asker { tenant, body }: Asker) -> Result<StatusCode> {
    let d = parse_digest(&digest)?;
    let a = app.clone();
    blocking(move || {
        a.blobs.put(&d, &body)?;
        if let Some(t) = tenant {
            a.store.record_blob(&t.name, &d, now_ms())?;
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_blob(State(app): State<Arc<App>>, UrlPath(digest): UrlPath<String>, _: Signed) -> Result<Response> {
    // Workers only: they fetch a job's inputs. Clients read their own
    // jobs' blobs through /v1/jobs/{id}/blobs/{digest}.
    let d = parse_digest(&digest)?;
    let a = app.clone();
    blocking(move || Ok(a.blobs.get(&d)?.into_response())).await
}

async fn lease(State(app): State<Arc<App>>, Signed { node, body }: Signed) -> Result<axum::Json<LeaseResponse>> {
    let req: LeaseRequest = if body.is_empty() { LeaseRequest::default() } else { json(&body, "lease request")? };
    let slots = req.slots.unwrap_or(1).clamp(1, MAX_LEASE_SLOTS);
    let lease_ms = app.config.lease_ms as i64;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(req.wait_ms.unwrap_or(0).min(MAX_LEASE_WAIT_MS));
    let leased = loop {
        // Listening before asking the store, so that work submitted
        // between the two is not missed.
        let notified = app.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let store = app.store.clone();
        let leased = blocking(move || Ok(store.lease(&node, slots, lease_ms, now_ms())?)).await?;
        if !leased.is_empty() || tokio::time::Instant::now() >= deadline {
            break leased;
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    };
    if !leased.is_empty() {
        app.events.notify_waiters();
    }
    Ok(axum::Json(LeaseResponse { leases: leases_of(&app, leased) }))
}

async fn heartbeat(State(app): State<Arc<App>>, UrlPath(run): UrlPath<String>, Signed { node, body }: Signed) -> Result<axum::Json<HeartbeatResponse>> {
    let req: HeartbeatRequest = if body.is_empty() { HeartbeatRequest::default() } else { json(&body, "heartbeat")? };
    let store = app.store.clone();
    let lease_ms = app.config.lease_ms as i64;
    let beat = blocking(move || Ok(store.heartbeat(&node, &run, req.running, lease_ms, now_ms())?)).await?;
    app.events.notify_waiters();
    Ok(axum::Json(match beat {
        Beat::Proceed => HeartbeatResponse { proceed: true, reason: None },
        Beat::Stop(why) => HeartbeatResponse { proceed: false, reason: Some(why) },
    }))
}

/// Checks a receipt against the run it claims to answer: signature, node,
/// job digest, run id, and that every output it names was uploaded.
/// Returns (code, reason) on refusal.
fn check_receipt(app: &App, node: &NodeId, run: &str, job: &RunJob, envelope: &[u8]) -> std::result::Result<CheckedReceipt, (&'static str, String)> {
    let job_digest = &job.job_digest;
    let r = crate::receipt::verify_envelope(envelope).map_err(|e| (e.code(), e.to_string()))?;
    if r.node() != *node {
        return Err(("node_mismatch", format!("the receipt is signed by {}, but the run is leased to {node}", r.node())));
    }
    r.check_job(job_digest).map_err(|e| (e.code(), e.to_string()))?;
    let run_id = r.statement.predicate.run_id.to_string();
    if run_id != run {
        return Err(("run_mismatch", format!("the receipt answers run {run_id}, not this lease's run {run}")));
    }
    // A signed job's receipt names the signature it answered; an unsigned
    // job's names none.
    let named = r.statement.predicate.job_request.as_ref().map(|q| q.sha256);
    let signed = job.signature.as_ref().map(|s| Digest::of(s.as_bytes()));
    if named != signed {
        return Err((
            "request_mismatch",
            match (signed, named) {
                (Some(s), None) => format!("the job was signed (request {s}) but the receipt names no request"),
                (None, Some(n)) => format!("the job was not signed but the receipt names request {n}"),
                (s, n) => format!("the receipt names request {n:?}, the job's is {s:?}"),
            },
        ));
    }
    let o = &r.statement.predicate.outcome;
    if let Some(d) = o.blob_digests().find(|d| !app.blobs.has(d)) {
        return Err(("missing_output", format!("output blob {d} was not uploaded before the receipt")));
    }
    Ok(CheckedReceipt { envelope: envelope.to_vec(), outcome: r.outcome_digest().to_string(), verified: Box::new(r) })
}

/// Stores a complete request's inline outputs: each checked against its
/// digest, all within [`MAX_INLINE_OUTPUT_BYTES`].
fn store_inline_outputs(app: &App, outputs: &std::collections::BTreeMap<Digest, String>) -> Result<()> {
    use base64::Engine as _;
    let mut total = 0usize;
    for (d, b64) in outputs {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| err(StatusCode::BAD_REQUEST, "bad_request", format!("`outputs.{d}`: not base64 (standard alphabet, padded): {e}")))?;
        total += bytes.len();
        if total > MAX_INLINE_OUTPUT_BYTES {
            return Err(err(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("`outputs` hold more than {MAX_INLINE_OUTPUT_BYTES} bytes; upload larger outputs with PUT /v1/blobs/{{digest}} first"),
            ));
        }
        app.blobs.put(d, &bytes)?;
    }
    Ok(())
}

/// Appends a run's log tail, if the run is still open; a closed run's log
/// takes nothing more, and a tail at another offset than the log's end is
/// dropped (it was appended already, or the worker lost track).
fn append_tail(app: &App, node: &NodeId, run: &str, state: RunState, tail: &LogTail) -> Result<()> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&tail.data)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "bad_request", format!("`log.data`: not base64 (standard alphabet, padded): {e}")))?;
    if bytes.is_empty() || !matches!(state, RunState::Leased | RunState::Running) {
        return Ok(());
    }
    app.store.append_log(node, run, tail.offset, &bytes, app.config.max_log_bytes)?;
    Ok(())
}

/// The leases a worker gets, from the store's.
fn leases_of(app: &App, leased: Vec<super::store::Leased>) -> Vec<Lease> {
    leased
        .into_iter()
        .map(|l| Lease {
            run: l.run,
            job: l.job,
            job_digest: l.job_digest,
            bundle: l.bundle,
            signature: l.signature,
            heartbeat_ms: app.config.heartbeat_ms,
            lease_ms: app.config.lease_ms,
        })
        .collect()
}

/// A run's receipt, with its small outputs and the end of its log; with
/// `next`, the worker's next runs in the same answer.
async fn complete(State(app): State<Arc<App>>, UrlPath(run): UrlPath<String>, Signed { node, body }: Signed) -> Result<axum::Json<RunAck>> {
    let req: CompleteRequest = json(&body, "complete request")?;
    let a = app.clone();
    let (ack, leased) = blocking(move || {
        let job = a.store.run_job(&node, &run)?;
        store_inline_outputs(&a, &req.outputs)?;
        if let Some(tail) = &req.log {
            append_tail(&a, &node, &run, job.state, tail)?;
        }
        let now = now_ms();
        let ack = match check_receipt(&a, &node, &run, &job, req.receipt.as_bytes()) {
            Ok(checked) => RunAck { state: a.store.complete(&node, &run, checked, &a.policy, now)?, rejected: None, leases: Vec::new() },
            Err((code, reason)) => {
                let state = a.store.fail(&node, &run, code, &reason, true, &a.policy, now)?;
                RunAck { state, rejected: Some(format!("{code}: {reason}")), leases: Vec::new() }
            }
        };
        let slots = req.next.unwrap_or(0).min(MAX_LEASE_SLOTS);
        let leased = if slots > 0 { a.store.lease(&node, slots, a.config.lease_ms as i64, now_ms())? } else { Vec::new() };
        Ok((ack, leased))
    })
    .await?;
    app.events.notify_waiters();
    // The runs this request leased are spoken for; a run that ended may
    // still want another replica from some other worker.
    app.work.notify_waiters();
    Ok(axum::Json(RunAck { leases: leases_of(&app, leased), ..ack }))
}

async fn fail(State(app): State<Arc<App>>, UrlPath(run): UrlPath<String>, Signed { node, body }: Signed) -> Result<axum::Json<RunAck>> {
    let req: FailRequest = json(&body, "fail request")?;
    let code: String = req.code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(32).collect();
    let reason: String = req.reason.chars().take(4096).collect();
    let a = app.clone();
    let state = blocking(move || {
        if let Some(tail) = &req.log {
            let job = a.store.run_job(&node, &run)?;
            append_tail(&a, &node, &run, job.state, tail)?;
        }
        Ok(a.store.fail(&node, &run, &code, &reason, false, &a.policy, now_ms())?)
    })
    .await?;
    app.events.notify_waiters();
    app.work.notify_waiters();
    Ok(axum::Json(RunAck { state, rejected: None, leases: Vec::new() }))
}

#[derive(Deserialize)]
struct AppendQuery {
    offset: u64,
}

/// A worker appends to its open run's log at the offset it believes the
/// log is at; at another offset nothing is written and the answer says the
/// log's size, so a retry never writes twice.
async fn append_log(
    State(app): State<Arc<App>>,
    UrlPath(run): UrlPath<String>,
    Query(q): Query<AppendQuery>,
    Signed { node, body }: Signed,
) -> Result<axum::Json<LogAck>> {
    let a = app.clone();
    let done = blocking(move || Ok(a.store.append_log(&node, &run, q.offset, &body, a.config.max_log_bytes)?)).await?;
    Ok(axum::Json(LogAck { size: done.size, appended: done.appended }))
}

#[derive(Deserialize)]
struct LogQuery {
    offset: Option<u64>,
    follow: Option<bool>,
}

/// A run's log from `offset`; with `follow=true` the response stays open
/// and carries what is appended until the run ends.
async fn read_log(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath((id, run)): UrlPath<(String, String)>,
    Query(q): Query<LogQuery>,
) -> Result<Response> {
    let tenant = app.tenant(&headers)?;
    let offset = q.offset.unwrap_or(0);
    let a = app.clone();
    let (t, j, r) = (tenant.name.clone(), id.clone(), run.clone());
    let (bytes, _) = blocking(move || Ok(a.store.read_log(&t, &j, &r, offset, a.config.max_log_bytes as usize)?)).await?;
    if !q.follow.unwrap_or(false) {
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response());
    }
    drop(bytes);
    let stream = futures_util::stream::unfold((app, tenant.name, id, run, offset, false), |(app, tenant, id, run, offset, ended)| async move {
        if ended {
            return None;
        }
        loop {
            let a = app.clone();
            let (t, j, r) = (tenant.clone(), id.clone(), run.clone());
            let polled = tokio::task::spawn_blocking(move || -> std::result::Result<(Vec<u8>, bool), String> {
                // The bytes and the state in one transaction: what was
                // appended before the run ended is read with it.
                let (bytes, state) = a.store.read_log(&t, &j, &r, offset, 64 << 10).map_err(|e| e.to_string())?;
                Ok((bytes, matches!(state, RunState::Leased | RunState::Running)))
            })
            .await;
            match polled {
                Ok(Ok((bytes, _))) if !bytes.is_empty() => {
                    let next = offset + bytes.len() as u64;
                    return Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), (app, tenant, id, run, next, false)));
                }
                Ok(Ok((_, true))) => tokio::time::sleep(Duration::from_millis(100)).await,
                // Ended, and everything read.
                _ => return Some((Ok(Bytes::new()), (app, tenant, id, run, offset, true))),
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], axum::body::Body::from_stream(stream)).into_response())
}

#[derive(Deserialize)]
struct EventsQuery {
    job: Option<String>,
    after: Option<i64>,
}

/// How long an event stream waits, once woken by a change, before reading
/// the new events: a fraction of what a person or a dashboard notices, and
/// enough for a burst of changes to be read with one query.
const EVENT_COALESCE: Duration = Duration::from_millis(10);

/// Server-sent events: every job and run state change of the tenant, with
/// its sequence number as the event id; `Last-Event-ID` (or `?after=`)
/// resumes after it.
async fn events(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<EventsQuery>) -> Result<Response> {
    let tenant = app.tenant(&headers)?;
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(|s| s.trim().parse::<i64>());
    let store = app.store.clone();
    let (first, newest) = blocking(move || Ok(store.event_bounds()?)).await?;
    let start = match (last, q.after) {
        (Some(Ok(n)), _) => n,
        (Some(Err(_)), _) => return Err(err(StatusCode::BAD_REQUEST, "bad_request", "Last-Event-ID is not an event sequence number")),
        (None, Some(n)) => n,
        // From now on.
        (None, None) => newest,
    };
    let lost = start > 0 && first > start + 1;
    let stream = futures_util::stream::unfold((app, tenant.name, start, q.job, lost), |(app, tenant, cursor, job, lost)| async move {
        if lost {
            let ev = SseEvent::default().event("events.lost").data(format!("{{\"after\":{cursor},\"first_held\":\"older events were pruned\"}}"));
            return Some((Ok::<_, std::convert::Infallible>(vec![ev]), (app, tenant, cursor, job, false)));
        }
        loop {
            let waker = app.clone();
            let notified = waker.events.notified();
            let store = app.store.clone();
            let t = tenant.clone();
            let page = tokio::task::spawn_blocking(move || store.events(&t, cursor, 500)).await.ok().and_then(|r| r.ok()).unwrap_or_default();
            if let Some(last) = page.last() {
                let next = last.seq;
                let evs: Vec<SseEvent> = page
                    .into_iter()
                    .filter(|e| job.as_deref().is_none_or(|j| j == e.job))
                    .map(|e| SseEvent::default().id(e.seq.to_string()).event(e.kind.clone()).data(serde_json::to_string(&e).unwrap_or_default()))
                    .collect();
                return Some((Ok(evs), (app, tenant, next, job, false)));
            }
            if tokio::time::timeout(Duration::from_secs(1), notified).await.is_ok() {
                // Changes come in bursts (a receipt ends a run and decides
                // its job): read them in one page, not one query each.
                tokio::time::sleep(EVENT_COALESCE).await;
            }
        }
    });
    use futures_util::StreamExt as _;
    let flat = stream.flat_map(|r: std::result::Result<Vec<SseEvent>, std::convert::Infallible>| {
        futures_util::stream::iter(r.unwrap_or_default().into_iter().map(Ok::<_, std::convert::Infallible>))
    });
    Ok(Sse::new(flat).keep_alive(KeepAlive::default()).into_response())
}

async fn metrics(State(app): State<Arc<App>>) -> Result<Response> {
    let a = app.clone();
    let (c, blob_bytes) = blocking(move || Ok((a.store.counts()?, a.blobs.total_bytes()))).await?;
    let mut s = String::new();
    s.push_str("# HELP canon_queue_depth Unfinished jobs, by priority.\n# TYPE canon_queue_depth gauge\n");
    for (p, n) in &c.queue_by_priority {
        s.push_str(&format!("canon_queue_depth{{priority=\"{p}\"}} {n}\n"));
    }
    s.push_str("# HELP canon_jobs Jobs, by state.\n# TYPE canon_jobs gauge\n");
    for (st, n) in &c.jobs_by_state {
        s.push_str(&format!("canon_jobs{{state=\"{st}\"}} {n}\n"));
    }
    s.push_str("# HELP canon_runs Runs, by state.\n# TYPE canon_runs gauge\n");
    for (st, n) in &c.runs_by_state {
        s.push_str(&format!("canon_runs{{state=\"{}\"}} {n}\n", st.as_str()));
    }
    s.push_str(&format!(
        "# HELP canon_lease_expiries_total Leases that ran out.\n# TYPE canon_lease_expiries_total counter\ncanon_lease_expiries_total {}\n",
        c.lease_expiries
    ));
    s.push_str("# HELP canon_receipts_rejected_total Receipts refused, by reason.\n# TYPE canon_receipts_rejected_total counter\n");
    for (code, n) in &c.rejected_by_code {
        s.push_str(&format!("canon_receipts_rejected_total{{reason=\"{code}\"}} {n}\n"));
    }
    s.push_str(&format!(
        "# HELP canon_blobs_collected_total Blobs garbage-collected.\n# TYPE canon_blobs_collected_total counter\ncanon_blobs_collected_total {}\n",
        c.blobs_collected
    ));
    s.push_str(&format!("# HELP canon_blob_bytes Bytes of blobs held.\n# TYPE canon_blob_bytes gauge\ncanon_blob_bytes {blob_bytes}\n"));
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s).into_response())
}

/// The OpenAPI document, kept in the repository and compiled in.
pub const OPENAPI: &str = include_str!("../../docs/openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Runs the coordinator until SIGTERM or Ctrl-C: the API, lease expiry and
/// event pruning. `ready` gets the bound address.
pub async fn serve(app: Arc<App>, listen: SocketAddr, ready: impl FnOnce(SocketAddr)) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    ready(listener.local_addr()?);
    let sweeper = app.clone();
    tokio::spawn(async move {
        let every = Duration::from_millis((sweeper.config.heartbeat_ms / 2).clamp(50, 1000));
        loop {
            tokio::time::sleep(every).await;
            let a = sweeper.clone();
            let expired = tokio::task::spawn_blocking(move || a.store.expire(&a.policy, now_ms())).await;
            if let Ok(Ok(n)) = expired
                && n > 0
            {
                sweeper.events.notify_waiters();
                sweeper.work.notify_waiters();
            }
        }
    });
    let collector = app.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(collector.config.gc_interval_ms)).await;
            let a = collector.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.collect_garbage(now_ms())).await {
                eprintln!("canon serve: garbage collection: {e}");
            }
        }
    });
    let pruner = app.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let a = pruner.clone();
            let _ = tokio::task::spawn_blocking(move || a.store.prune_events(now_ms() - a.config.event_retention_ms, 10_000)).await;
        }
    });
    axum::serve(listener, router(app)).with_graceful_shutdown(shutdown_signal()).await
}

/// Resolves at SIGTERM or Ctrl-C: when the coordinator stops, and when a
/// worker starts draining.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
