//! Running one health probe: HTTP, TCP or script, each bounded by its timeout.

use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::defs::{CheckDef, Probe};
use super::MAX_OUTPUT;
use crate::state::Health;

/// Two HTTP clients: one verifying TLS, one for `TLSSkipVerify` checks.
#[derive(Clone)]
pub struct HttpClients {
    strict: reqwest::Client,
    insecure: reqwest::Client,
}

impl HttpClients {
    pub fn new() -> Self {
        let base = || {
            reqwest::Client::builder()
                .user_agent("Consul Health Check")
                .redirect(reqwest::redirect::Policy::limited(10))
                .pool_max_idle_per_host(1)
        };
        Self {
            strict: base().build().unwrap_or_default(),
            insecure: base()
                .danger_accept_invalid_certs(true)
                .build()
                .unwrap_or_default(),
        }
    }
}

impl Default for HttpClients {
    fn default() -> Self {
        Self::new()
    }
}

pub async fn run(def: &CheckDef, http: &HttpClients) -> (Health, String) {
    match &def.probe {
        Probe::Http {
            url,
            method,
            headers,
            body,
            tls_skip_verify,
        } => {
            http_probe(
                http,
                url,
                method,
                headers,
                body,
                *tls_skip_verify,
                def.timeout,
            )
            .await
        }
        Probe::Tcp { addr } => tcp_probe(addr, def.timeout).await,
        Probe::Script { args } => script_probe(args, def.timeout).await,
        // TTL and maintenance checks are not probed.
        Probe::Ttl { .. } | Probe::Maintenance => (Health::Critical, String::new()),
    }
}

async fn http_probe(
    http: &HttpClients,
    url: &str,
    method: &str,
    headers: &[(String, String)],
    body: &str,
    insecure: bool,
    timeout: Duration,
) -> (Health, String) {
    let client = if insecure {
        &http.insecure
    } else {
        &http.strict
    };
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
    let mut req = client.request(m, url).timeout(timeout);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if !body.is_empty() {
        req = req.body(body.to_string());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (Health::Critical, format!("Get {url:?}: {e}")),
    };
    let status = resp.status();
    // Read at most MAX_OUTPUT bytes of the body.
    let mut out = Vec::new();
    let mut resp = resp;
    while out.len() < MAX_OUTPUT {
        match tokio::time::timeout(timeout, resp.chunk()).await {
            Ok(Ok(Some(c))) => out.extend_from_slice(&c),
            _ => break,
        }
    }
    out.truncate(MAX_OUTPUT);
    let text = format!(
        "HTTP {method} {url}: {} {} Output: {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        String::from_utf8_lossy(&out)
    );
    let health = if status.is_success() {
        Health::Passing
    } else if status.as_u16() == 429 {
        Health::Warning
    } else {
        Health::Critical
    };
    (health, text)
}

async fn tcp_probe(addr: &str, timeout: Duration) -> (Health, String) {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => (Health::Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => (Health::Critical, format!("dial tcp {addr}: {e}")),
        Err(_) => (Health::Critical, format!("dial tcp {addr}: i/o timeout")),
    }
}

async fn script_probe(args: &[String], timeout: Duration) -> (Health, String) {
    let Some((prog, rest)) = args.split_first() else {
        return (Health::Critical, "empty script arguments".into());
    };
    let mut child = match tokio::process::Command::new(prog)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (Health::Critical, format!("Check failed to start: {e}")),
    };
    let (mut so, mut se) = (child.stdout.take(), child.stderr.take());
    let run = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        if let Some(s) = so.as_mut() {
            let _ = s.take(MAX_OUTPUT as u64 * 4).read_to_end(&mut out).await;
        }
        if let Some(s) = se.as_mut() {
            let _ = s.take(MAX_OUTPUT as u64 * 4).read_to_end(&mut err).await;
        }
        let status = child.wait().await;
        out.extend_from_slice(&err);
        (status, out)
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => (
            Health::Critical,
            format!("Timed out ({}) running check", super::fmt_duration(timeout)),
        ),
        Ok((Err(e), _)) => (Health::Critical, format!("Check failed: {e}")),
        Ok((Ok(st), out)) => {
            let text = String::from_utf8_lossy(&out).into_owned();
            let health = match st.code() {
                Some(0) => Health::Passing,
                Some(1) => Health::Warning,
                _ => Health::Critical,
            };
            (health, text)
        }
    }
}
