//! Helpers shared by the discovery tests (`discovery_*.rs`): HTTP calls,
//! waiting, python backends, dig, a gRPC health server.
#![allow(dead_code)]
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribune_tests::{client, index_of, root, Agent};
pub fn put_json(a: &Agent, path: &str, body: Value) -> reqwest::blocking::Response {
    client()
        .put(format!("{}/v1/{path}", a.url))
        .json(&body)
        .send()
        .unwrap()
}

pub fn get(a: &Agent, path: &str) -> reqwest::blocking::Response {
    client().get(format!("{}/v1/{path}", a.url)).send().unwrap()
}

/// The index of `path` once it has held still for 300 ms: the agent's
/// first syncs may still be landing when a test starts watching.
pub fn settled_index(a: &Agent, path: &str) -> u64 {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut idx = index_of(&get(a, path));
    for _ in 0..20 {
        let next = index_of(&get(a, &format!("{path}{sep}index={idx}&wait=300ms")));
        if next == idx {
            return idx;
        }
        idx = next;
    }
    panic!("{path} never settled");
}

pub fn get_json(a: &Agent, path: &str) -> Value {
    get(a, path).json().unwrap()
}

/// Poll until `f` is true or the deadline passes; returns the time it took.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return t.elapsed();
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A python http.server backend on `port`.
pub struct Backend(pub Child);
impl Backend {
    pub fn http(port: u16) -> Backend {
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let b = Backend(child);
        wait_until("backend up", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        b
    }
}
impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[allow(unused_imports)] // not every discovery test asks DNS
pub use tribune_tests::dig;

pub fn dns_agent(extra: &[&str]) -> (Agent, u16) {
    Agent::dev_dns(extra)
}

pub fn passing_ids(a: &Agent, svc: &str) -> Vec<String> {
    let v = get_json(a, &format!("health/service/{svc}?passing"));
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// A real gRPC health server (tonic-health), served by tonic on
/// 127.0.0.1:0 from a tokio runtime whose worker is a background thread.
pub struct GrpcHealth {
    rt: tokio::runtime::Runtime,
    reporter: tonic_health::server::HealthReporter,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub port: u16,
}

impl GrpcHealth {
    pub fn start() -> GrpcHealth {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        let incoming = rt
            .block_on(async {
                tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
            })
            .unwrap();
        let port = incoming.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        GrpcHealth {
            rt,
            reporter,
            stop: Some(stop),
            port,
        }
    }

    /// A TLS front for the server (self-signed certificate for localhost and
    /// 127.0.0.1 from tests/data, ALPN h2), as a gRPC server with TLS looks
    /// to a client. Returns its port.
    pub fn tls_front(&self) -> u16 {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(include_bytes!("../data/grpc-test-cert.pem"))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key =
            PrivateKeyDer::from_pem_slice(include_bytes!("../data/grpc-test-key.pem")).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let backend = self.port;
        self.rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Ok(mut up) = tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                    }
                });
            }
        });
        port
    }

    pub fn set(&self, service: &str, status: tonic_health::ServingStatus) {
        self.rt
            .block_on(self.reporter.set_service_status(service, status));
    }

    /// Stop serving and close every connection.
    pub fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.rt.shutdown_timeout(Duration::from_secs(2));
    }
}

/// A python backend for HTTP check tests: plain HTTP on `plain`, the same
/// handler over TLS (self-signed test cert) on `tls`. `/big` answers 10,000
/// bytes; `/alt*` alternates 200/500 per path; `/ctl` answers 200 until
/// `/set-down` was requested, then 500. It binds its own ports (a port the
/// test picked could be taken by the time Python binds it) and prints them.
pub fn check_backend() -> (Backend, u16, u16) {
    let script = r#"
import http.server, ssl, sys, threading
cert, key = sys.argv[1], sys.argv[2]
hits = {}
down = {"v": False}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, body=b"ok"):
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        p = self.path
        if p == "/big": return self.reply(200, b"x" * 10000)
        if p.startswith("/alt"):
            n = hits.get(p, 0); hits[p] = n + 1
            return self.reply(200 if n % 2 == 0 else 500)
        if p == "/set-down":
            down["v"] = True
            return self.reply(200)
        if p == "/ctl": return self.reply(500 if down["v"] else 200)
        self.reply(200)
plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
tls = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
threading.Thread(target=tls.serve_forever, daemon=True).start()
print(plain.server_address[1], tls.server_address[1], flush=True)
plain.serve_forever()
"#;
    let data = root().join("tests/data");
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(data.join("grpc-test-cert.pem"))
        .arg(data.join("grpc-test-key.pem"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let b = Backend(child);
    let ports: Vec<u16> = line
        .split_whitespace()
        .map(|p| p.parse().expect("check backend prints its ports"))
        .collect();
    assert_eq!(ports.len(), 2, "check backend did not start: {line:?}");
    (b, ports[0], ports[1])
}

/// Park a blocking query on `path` at its current index; returns the index
/// and a handle yielding (time taken, new index).
pub fn park(a: &Agent, path: &str, wait: &str) -> (u64, thread::JoinHandle<(Duration, u64)>) {
    let idx = settled_index(a, path);
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("{}/v1/{path}{sep}index={idx}&wait={wait}", a.url);
    let h = thread::spawn(move || {
        let t = Instant::now();
        let r = client().get(url).send().unwrap();
        assert_eq!(r.status(), 200);
        (t.elapsed(), index_of(&r))
    });
    // Let the request reach the server and park.
    thread::sleep(Duration::from_millis(200));
    (idx, h)
}
