//! Running one health probe: HTTP, TCP, gRPC or script, each bounded by its
//! timeout.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio_rustls::rustls;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::defs::{CheckDef, Probe};
use crate::state::Health;

/// Largest check output kept (Consul's default).
pub const MAX_OUTPUT: usize = 4096;

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

/// What one check's probe task keeps between probes: its gRPC channel, so
/// every probe reuses one HTTP/2 connection (tonic reconnects on the next
/// probe after the connection drops).
#[derive(Default)]
pub struct ProbeState {
    grpc: Option<Channel>,
}

pub async fn run(def: &CheckDef, http: &HttpClients, state: &mut ProbeState) -> (Health, String) {
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
        Probe::Grpc {
            target,
            service,
            tls,
            tls_skip_verify,
        } => {
            let shown = if service.is_empty() {
                target.clone()
            } else {
                format!("{target}/{service}")
            };
            let channel = match &state.grpc {
                Some(c) => c.clone(),
                None => match grpc_channel(target, *tls, *tls_skip_verify, def.timeout) {
                    Ok(c) => state.grpc.insert(c).clone(),
                    Err(e) => {
                        return (
                            Health::Critical,
                            format!("gRPC check {shown}: failed with status {e}"),
                        )
                    }
                },
            };
            grpc_probe(channel, &shown, service, def.timeout).await
        }
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
        Err(e) => {
            return (
                Health::Critical,
                format!(
                    "{} {url:?}: {}",
                    method_word(method),
                    crate::goerr::cause(&e)
                ),
            )
        }
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

/// The method as Go's net/http error text spells it (`Get`, `Put`, ...).
fn method_word(method: &str) -> String {
    let mut w = method.to_ascii_lowercase();
    if let Some(first) = w.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    w
}

async fn tcp_probe(addr: &str, timeout: Duration) -> (Health, String) {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => (Health::Passing, format!("TCP connect {addr}: Success")),
        Ok(Err(e)) => (
            Health::Critical,
            format!("dial tcp {addr}: connect: {}", crate::goerr::io_text(&e)),
        ),
        Err(_) => (Health::Critical, format!("dial tcp {addr}: i/o timeout")),
    }
}

/// A lazily connecting channel to `target` (`host:port`). Plaintext uses
/// tonic's own connector; TLS goes through tokio-rustls with the webpki
/// roots, as HTTPS checks do, or with no verification for `TLSSkipVerify`.
fn grpc_channel(
    target: &str,
    tls: bool,
    skip_verify: bool,
    timeout: Duration,
) -> Result<Channel, String> {
    let endpoint = Endpoint::from_shared(format!("http://{target}"))
        .map_err(|e| format!("InvalidArgument: {e}"))?
        .user_agent("Consul Health Check")
        .map_err(|e| format!("InvalidArgument: {e}"))?
        .connect_timeout(timeout);
    if !tls {
        return Ok(endpoint.connect_lazy());
    }
    // The endpoint stays `http://` so tonic never tries TLS itself (it has no
    // TLS features here); the origin makes requests carry `:scheme https`.
    let origin: Uri = format!("https://{target}")
        .parse()
        .map_err(|e| format!("InvalidArgument: {e}"))?;
    let host = target
        .rsplit_once(':')
        .map_or(target, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("InvalidArgument: bad TLS server name {host:?}: {e}"))?;
    let config = Arc::new(grpc_tls_config(skip_verify)?);
    let addr = target.to_string();
    let connector = tower::service_fn(move |_: Uri| {
        let (config, name, addr) = (config.clone(), name.clone(), addr.clone());
        async move {
            let tcp = tokio::net::TcpStream::connect(&addr).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    Ok(endpoint
        .origin(origin)
        .connect_with_connector_lazy(connector))
}

fn grpc_tls_config(skip_verify: bool) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("Internal: TLS setup: {e}"))?;
    let mut config = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// `TLSSkipVerify`: accept any certificate, but still check that the
/// handshake is signed by the key in the certificate presented.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One `grpc.health.v1.Health/Check` call. SERVING is passing; any other
/// status, an RPC error, or no answer within the timeout is critical.
async fn grpc_probe(
    channel: Channel,
    shown: &str,
    service: &str,
    timeout: Duration,
) -> (Health, String) {
    let failed = |why: String| {
        (
            Health::Critical,
            format!("gRPC check {shown}: failed with status {why}"),
        )
    };
    let mut req = tonic::Request::new(HealthCheckRequest {
        service: service.to_string(),
    });
    req.set_timeout(timeout);
    let mut client = HealthClient::new(channel);
    match tokio::time::timeout(timeout, client.check(req)).await {
        Err(_) => failed(format!(
            "DeadlineExceeded: no answer within {}",
            gocompat::duration::short(timeout)
        )),
        Ok(Err(status)) => failed(grpc_error_text(&status)),
        Ok(Ok(resp)) => match resp.into_inner().status() {
            ServingStatus::Serving => (Health::Passing, format!("gRPC check {shown}: success")),
            other => failed(other.as_str_name().to_string()),
        },
    }
}

/// `Code: message`, followed by the causes that the message leaves out
/// (tonic's transport errors keep the useful part, such as "Connection
/// refused", in the source chain).
fn grpc_error_text(status: &tonic::Status) -> String {
    let mut text = format!("{:?}", status.code());
    if !status.message().is_empty() {
        text.push_str(": ");
        text.push_str(status.message());
    }
    let mut src = std::error::Error::source(status);
    while let Some(e) = src {
        let e_text = e.to_string();
        if e_text != "transport error" && !text.contains(&e_text) {
            text.push_str(": ");
            text.push_str(&e_text);
        }
        if text.len() > MAX_OUTPUT {
            break;
        }
        src = e.source();
    }
    text
}

/// Read a pipe to its end, keeping the first `MAX_OUTPUT * 4` bytes (the
/// rest is discarded; the output is capped later anyway).
async fn drain_capped<R: tokio::io::AsyncRead + Unpin>(r: Option<&mut R>) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(r) = r else { return kept };
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = (MAX_OUTPUT * 4).saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    kept
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
        // Both pipes at once, to the end: a script blocked writing to a
        // full pipe we are not reading would never exit.
        let (mut out, err) = tokio::join!(drain_capped(so.as_mut()), drain_capped(se.as_mut()));
        let status = child.wait().await;
        out.extend_from_slice(&err);
        (status, out)
    };
    match tokio::time::timeout(timeout, run).await {
        Err(_) => (
            Health::Critical,
            format!(
                "Timed out ({}) running check",
                gocompat::duration::short(timeout)
            ),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A script writing far more than a pipe buffer to stderr (and stdout)
    /// still finishes: both pipes are drained concurrently.
    #[tokio::test]
    async fn script_with_large_stderr_completes() {
        let args: Vec<String> = [
            "sh",
            "-c",
            "head -c 200000 /dev/zero >&2; head -c 100000 /dev/zero; exit 1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (health, out) = script_probe(&args, Duration::from_secs(5)).await;
        assert_eq!(health, Health::Warning, "{}", &out[..out.len().min(200)]);
        assert!(out.len() <= MAX_OUTPUT * 8);
    }

    /// A failed request names its method, as Go's net/http does.
    #[tokio::test]
    async fn http_error_names_the_method() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let url = format!("http://127.0.0.1:{port}/");
        let http = HttpClients::new();
        let (health, out) =
            http_probe(&http, &url, "PUT", &[], "", false, Duration::from_secs(2)).await;
        assert_eq!(health, Health::Critical);
        assert_eq!(
            out,
            format!("Put {url:?}: dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
        assert_eq!(method_word("POST"), "Post");
        assert_eq!(method_word("get"), "Get");
    }
}
