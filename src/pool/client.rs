//! A blocking client of the coordinator's API, as a tenant (bearer token)
//! or as a node (every request signed, RFC 9421).

use std::io::{BufRead, BufReader};
use std::time::Duration;

use reqwest::Method;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use serde::de::DeserializeOwned;

use super::api::*;
use super::httpsig::{self, RequestParts};
use super::store::Event;
use crate::digest::Digest;
use crate::node::NodeKey;

/// Who the client is.
pub enum Auth {
    /// A tenant's bearer token.
    Token(String),
    /// A node's key.
    Node(Box<NodeKey>),
}

/// A client of one coordinator.
pub struct Client {
    base: reqwest::Url,
    auth: Auth,
    http: Http,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The coordinator could not be reached or the connection broke.
    #[error("{url}: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// What happened.
        message: String,
    },
    /// The coordinator answered with an error.
    #[error("{url}: {status} {code}: {message}")]
    Api {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The error code (`queue_full`, `not_found`, ...).
        code: String,
        /// The message.
        message: String,
        /// Retry-After, seconds.
        retry_after: Option<u64>,
    },
}

impl ClientError {
    /// The API error code, if the coordinator answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            ClientError::Transport { .. } => None,
        }
    }
}

type Result<T> = std::result::Result<T, ClientError>;

impl Client {
    /// A client of the coordinator at `url` (`http://HOST:PORT`).
    pub fn new(url: &str, auth: Auth) -> std::result::Result<Client, String> {
        let base = reqwest::Url::parse(url).map_err(|e| format!("coordinator URL {url:?}: {e}"))?;
        if base.scheme() != "http" && base.scheme() != "https" {
            return Err(format!("coordinator URL {url:?}: expected http:// or https://"));
        }
        let http = Http::builder().connect_timeout(Duration::from_secs(10)).timeout(None).build().map_err(|e| e.to_string())?;
        Ok(Client { base, auth, http })
    }

    fn url(&self, path: &str) -> reqwest::Url {
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    fn request(&self, method: Method, path: &str, body: Vec<u8>, timeout: Option<Duration>) -> Result<Response> {
        let url = self.url(path);
        let mut rb: RequestBuilder = self.http.request(method.clone(), url.clone());
        if let Some(t) = timeout {
            rb = rb.timeout(t);
        }
        match &self.auth {
            Auth::Token(t) => rb = rb.bearer_auth(t),
            Auth::Node(key) => {
                let digest = httpsig::content_digest(&body);
                let authority = match url.port() {
                    Some(p) => format!("{}:{p}", url.host_str().unwrap_or("")),
                    None => url.host_str().unwrap_or("").to_string(),
                };
                let parts = RequestParts { method: method.as_str(), authority: &authority, path: url.path(), query: url.query(), content_digest: &digest };
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
                let sig = httpsig::sign_request(key, &parts, now, &httpsig::new_nonce())
                    .map_err(|e| ClientError::Transport { url: url.to_string(), message: format!("cannot sign the request: {e}") })?;
                rb = rb.header("content-digest", digest).header("signature-input", sig.signature_input).header("signature", sig.signature);
            }
        }
        if !body.is_empty() {
            rb = rb.header("content-type", "application/json").body(body);
        }
        let r = rb.send().map_err(|e| ClientError::Transport { url: url.to_string(), message: e.to_string() })?;
        if r.status().is_success() {
            return Ok(r);
        }
        let status = r.status().as_u16();
        let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let text = r.text().unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => (e.error, e.message),
            Err(_) => ("http".to_string(), text),
        };
        Err(ClientError::Api { url: url.to_string(), status, code, message, retry_after })
    }

    fn call<T: DeserializeOwned>(&self, method: Method, path: &str, body: Vec<u8>) -> Result<T> {
        let url = self.url(path).to_string();
        let r = self.request(method, path, body, Some(Duration::from_secs(60)))?;
        r.json().map_err(|e| ClientError::Transport { url, message: format!("bad response: {e}") })
    }

    fn body<T: serde::Serialize>(v: &T) -> Vec<u8> {
        serde_json::to_vec(v).unwrap_or_default()
    }

    /// Which of `digests` the coordinator lacks.
    pub fn missing(&self, digests: Vec<Digest>) -> Result<Vec<Digest>> {
        let r: MissingResponse = self.call(Method::POST, "/v1/blobs/missing", Self::body(&MissingRequest { digests }))?;
        Ok(r.missing)
    }

    /// Uploads one blob.
    pub fn put_blob(&self, d: &Digest, bytes: Vec<u8>) -> Result<()> {
        self.request(Method::PUT, &format!("/v1/blobs/{d}"), bytes, Some(Duration::from_secs(600))).map(|_| ())
    }

    /// Downloads one blob (workers).
    pub fn get_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let path = format!("/v1/blobs/{d}");
        let r = self.request(Method::GET, &path, Vec::new(), Some(Duration::from_secs(600)))?;
        r.bytes().map(|b| b.to_vec()).map_err(|e| ClientError::Transport { url: path, message: e.to_string() })
    }

    /// Downloads an output blob of a tenant's job.
    pub fn job_blob(&self, job: &str, d: &Digest) -> Result<Vec<u8>> {
        let path = format!("/v1/jobs/{job}/blobs/{d}");
        let r = self.request(Method::GET, &path, Vec::new(), Some(Duration::from_secs(600)))?;
        r.bytes().map(|b| b.to_vec()).map_err(|e| ClientError::Transport { url: path, message: e.to_string() })
    }

    /// Submits a job.
    pub fn submit(&self, req: &SubmitRequest) -> Result<SubmitResponse> {
        self.call(Method::POST, "/v1/jobs", Self::body(req))
    }

    /// A job's status.
    pub fn status(&self, id: &str) -> Result<JobView> {
        self.call(Method::GET, &format!("/v1/jobs/{id}"), Vec::new())
    }

    /// A page of jobs, newest first, as `q` filters them.
    pub fn list(&self, q: &JobQuery) -> Result<JobPage> {
        let limit = q.limit.map(|l| l.to_string());
        let pairs = [
            ("status", q.status.as_deref()),
            ("group", q.group.as_deref()),
            ("submitter", q.submitter.as_deref()),
            ("limit", limit.as_deref()),
            ("cursor", q.cursor.as_deref()),
        ];
        self.call(Method::GET, &format!("/v1/jobs?{}", query(&pairs)), Vec::new())
    }

    /// A page of `node`'s runs of this tenant's jobs, newest first.
    pub fn node_runs(&self, node: &str, limit: usize, cursor: Option<&str>) -> Result<NodeRunPage> {
        let limit = limit.to_string();
        self.call(Method::GET, &format!("/v1/nodes/{node}/runs?{}", query(&[("limit", Some(&limit)), ("cursor", cursor)])), Vec::new())
    }

    /// Cancels a job.
    pub fn cancel(&self, id: &str, reason: Option<String>) -> Result<()> {
        self.request(Method::POST, &format!("/v1/jobs/{id}/cancel"), Self::body(&CancelRequest { reason }), Some(Duration::from_secs(60))).map(|_| ())
    }

    /// A job's accepted receipts.
    pub fn receipts(&self, id: &str) -> Result<ReceiptList> {
        self.call(Method::GET, &format!("/v1/jobs/{id}/receipts"), Vec::new())
    }

    /// Follows the event stream from after `after` (None: from now),
    /// calling `f` with each event until it returns false.
    pub fn events(&self, job: Option<&str>, after: Option<i64>, f: &mut dyn FnMut(Event) -> bool) -> Result<()> {
        let mut path = "/v1/events".to_string();
        let mut q = Vec::new();
        if let Some(j) = job {
            q.push(format!("job={j}"));
        }
        if let Some(a) = after {
            q.push(format!("after={a}"));
        }
        if !q.is_empty() {
            path = format!("{path}?{}", q.join("&"));
        }
        let r = self.request(Method::GET, &path, Vec::new(), None)?;
        let mut data = String::new();
        for line in BufReader::new(r).lines() {
            let line = line.map_err(|e| ClientError::Transport { url: path.clone(), message: e.to_string() })?;
            if let Some(d) = line.strip_prefix("data:") {
                data.push_str(d.trim_start());
            } else if line.is_empty() && !data.is_empty() {
                if let Ok(ev) = serde_json::from_str::<Event>(&data)
                    && !f(ev)
                {
                    return Ok(());
                }
                data.clear();
            }
        }
        Ok(())
    }

    /// Appends to a run's log at `offset` (workers).
    pub fn append_log(&self, run: &str, offset: u64, bytes: Vec<u8>) -> Result<LogAck> {
        let path = format!("/v1/runs/{run}/log?offset={offset}");
        let url = self.url(&path).to_string();
        let r = self.request(Method::POST, &path, bytes, Some(Duration::from_secs(60)))?;
        r.json().map_err(|e| ClientError::Transport { url, message: format!("bad response: {e}") })
    }

    /// A run's log from `offset`, copied to `out`; with `follow`, until the
    /// run ends. Returns the bytes copied.
    pub fn read_log(&self, job: &str, run: &str, offset: u64, follow: bool, out: &mut dyn std::io::Write) -> Result<u64> {
        let path = format!("/v1/jobs/{job}/runs/{run}/log?offset={offset}&follow={follow}");
        let mut r = self.request(Method::GET, &path, Vec::new(), if follow { None } else { Some(Duration::from_secs(60)) })?;
        let mut n = 0u64;
        let mut buf = [0u8; 8192];
        loop {
            let k = std::io::Read::read(&mut r, &mut buf).map_err(|e| ClientError::Transport { url: path.clone(), message: e.to_string() })?;
            if k == 0 {
                return Ok(n);
            }
            out.write_all(&buf[..k])
                .and_then(|_| out.flush())
                .map_err(|e| ClientError::Transport { url: path.clone(), message: format!("writing the log: {e}") })?;
            n += k as u64;
        }
    }

    /// Leases up to `slots` runs (workers).
    pub fn lease(&self, slots: u32) -> Result<Vec<Lease>> {
        let r: LeaseResponse = self.call(Method::POST, "/v1/lease", Self::body(&LeaseRequest { slots: Some(slots), wait_ms: None }))?;
        Ok(r.leases)
    }

    /// Leases up to `slots` runs, letting the coordinator hold the request
    /// up to `wait` (at most [`MAX_LEASE_WAIT_MS`]) until there is one:
    /// work reaches an idle worker as soon as it is submitted, without
    /// polling (workers).
    pub fn lease_wait(&self, slots: u32, wait: Duration) -> Result<Vec<Lease>> {
        let req = LeaseRequest { slots: Some(slots), wait_ms: Some(wait.as_millis() as u64) };
        let r: LeaseResponse = self.call(Method::POST, "/v1/lease", Self::body(&req))?;
        Ok(r.leases)
    }

    /// Heartbeats a run (workers).
    pub fn heartbeat(&self, run: &str, running: bool) -> Result<HeartbeatResponse> {
        self.call(Method::POST, &format!("/v1/runs/{run}/heartbeat"), Self::body(&HeartbeatRequest { running }))
    }

    /// Sends a run's receipt (workers).
    pub fn complete(&self, run: &str, receipt: String) -> Result<RunAck> {
        self.complete_with(run, &CompleteRequest { receipt, ..CompleteRequest::default() })
    }

    /// Sends a run's receipt with its inline outputs and log tail, and asks
    /// for the next runs (workers).
    pub fn complete_with(&self, run: &str, req: &CompleteRequest) -> Result<RunAck> {
        self.call(Method::POST, &format!("/v1/runs/{run}/complete"), Self::body(req))
    }

    /// Reports a run without a result (workers).
    pub fn fail(&self, run: &str, code: &str, reason: &str) -> Result<RunAck> {
        self.fail_with(run, &FailRequest { code: code.into(), reason: reason.into(), log: None })
    }

    /// Reports a run without a result, with its log tail (workers).
    pub fn fail_with(&self, run: &str, req: &FailRequest) -> Result<RunAck> {
        self.call(Method::POST, &format!("/v1/runs/{run}/fail"), Self::body(req))
    }
}

/// A URL query of the pairs that have a value, each part percent-encoded.
fn query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("a constant URL");
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            if let Some(v) = v {
                q.append_pair(k, v);
            }
        }
    }
    url.query().unwrap_or("").to_string()
}
