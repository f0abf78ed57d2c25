//! Service discovery of a real agent: registration (HTTP, python-consul,
//! config files, CLI), health checks, catalog/health API, blocking, DNS via dig.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::{client, index_of, root, Agent};

fn put_json(a: &Agent, path: &str, body: Value) -> reqwest::blocking::Response {
    client()
        .put(format!("{}/v1/{path}", a.url))
        .json(&body)
        .send()
        .unwrap()
}

fn get(a: &Agent, path: &str) -> reqwest::blocking::Response {
    client().get(format!("{}/v1/{path}", a.url)).send().unwrap()
}

/// The index of `path` once it has held still for 300 ms: the agent's
/// first syncs may still be landing when a test starts watching.
fn settled_index(a: &Agent, path: &str) -> u64 {
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

fn get_json(a: &Agent, path: &str) -> Value {
    get(a, path).json().unwrap()
}

/// Poll until `f` is true or the deadline passes; returns the time it took.
fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return t.elapsed();
        }
        thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A python http.server backend on `port`.
struct Backend(Child);
impl Backend {
    fn http(port: u16) -> Backend {
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

fn dig(port: u16, args: &[&str]) -> String {
    let out = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=2", "+tries=1"])
        .args(args)
        .output()
        .expect("dig must be installed (test.sh installs dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn dns_agent(extra: &[&str]) -> (Agent, u16) {
    Agent::dev_dns(extra)
}

fn passing_ids(a: &Agent, svc: &str) -> Vec<String> {
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

/// python-consul registers services with tcp, http and ttl checks; a backend
/// that goes down turns critical within interval+timeout and leaves ?passing
/// and DNS; it comes back when healthy.
#[test]
fn python_consul_checks_and_backend_failure() {
    let (a, dns) = dns_agent(&[]);
    let http_port = free_port();
    let http = Backend::http(http_port);
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp_port = tcp.local_addr().unwrap().port();
    let (host, port) = a.addr.rsplit_once(':').unwrap();
    let out = Command::new("python3")
        .arg(root().join("tests/clients/discovery_python_consul.py"))
        .args([host, port, &http_port.to_string(), &tcp_port.to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python-consul script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(passing_ids(&a, "web"), ["web-http", "web-tcp"]);
    let srv = dig(dns, &["+short", "web.service.consul", "SRV"]);
    assert_eq!(srv.lines().count(), 2, "{srv}");

    // HTTP backend down: critical within interval (1s) + timeout (1s) (+ slack).
    drop(http);
    let took = wait_until("web-http critical", Duration::from_secs(6), || {
        passing_ids(&a, "web") == ["web-tcp"]
    });
    assert!(took <= Duration::from_millis(3500), "took {took:?}");
    let srv = dig(dns, &["+short", "web.service.consul", "SRV"]);
    assert_eq!(srv.lines().count(), 1, "{srv}");
    assert!(srv.contains(&tcp_port.to_string()));
    let checks = get_json(&a, "health/checks/web");
    let c = checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ServiceID"] == "web-http")
        .unwrap()
        .clone();
    assert_eq!(c["Status"], "critical");
    assert!(!c["Output"].as_str().unwrap().is_empty());

    // TCP backend down too: DNS has nothing for web.
    drop(tcp);
    wait_until("web-tcp critical", Duration::from_secs(6), || {
        passing_ids(&a, "web").is_empty()
    });
    let out = dig(dns, &["web.service.consul"]);
    assert!(out.contains("NXDOMAIN"), "{out}");

    // Back up: passing again and in DNS.
    let _http = Backend::http(http_port);
    let _tcp = TcpListener::bind(("127.0.0.1", tcp_port)).unwrap();
    wait_until("web back", Duration::from_secs(6), || {
        passing_ids(&a, "web").len() == 2
    });
    let a_records = dig(dns, &["+short", "web.service.consul"]);
    assert_eq!(a_records.lines().count(), 2, "{a_records}");
}

/// dig: SRV with A in additional, tag, RFC 2782, node, case, NXDOMAIN + SOA,
/// TCP, UDP truncation.
#[test]
fn dns_forms() {
    let (a, dns) = dns_agent(&[]);
    for (id, port, tags) in [
        ("redis1", 6379, vec!["db", "primary"]),
        ("redis2", 6380, vec!["db"]),
    ] {
        let r = put_json(
            &a,
            "agent/service/register",
            json!({"Name": "redis", "ID": id, "Port": port, "Tags": tags,
            "Check": {"TTL": "60s", "Status": "passing"}}),
        );
        assert_eq!(r.status(), 200);
    }
    put_json(
        &a,
        "catalog/register",
        json!({"Node": "ext", "Address": "10.1.2.3", "NodeMeta": {"rack": "r1"}}),
    );
    wait_until("redis in catalog", Duration::from_secs(5), || {
        passing_ids(&a, "redis").len() == 2
    });

    let out = dig(dns, &["redis.service.consul", "SRV"]);
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains("ANSWER: 2"), "{out}");
    assert!(
        out.contains("OPT PSEUDOSECTION"),
        "an EDNS query must get an OPT record back: {out}"
    );
    assert!(
        out.contains("SRV\t1 1 6379 node1.node.dc1.consul."),
        "{out}"
    );
    assert!(
        out.contains("node1.node.dc1.consul.\t0\tIN\tA\t127.0.0.1"),
        "{out}"
    );
    let short = dig(dns, &["+short", "primary.redis.service.consul"]);
    assert_eq!(short.trim(), "127.0.0.1");
    let srv = dig(dns, &["+short", "_redis._db.service.consul", "SRV"]);
    assert_eq!(srv.lines().count(), 2, "{srv}");
    let srv = dig(dns, &["+short", "_redis._primary.service.consul", "SRV"]);
    assert_eq!(srv.trim(), "1 1 6379 node1.node.dc1.consul.");
    let srv = dig(dns, &["+short", "_redis._tcp.service.dc1.consul", "SRV"]);
    assert_eq!(srv.lines().count(), 2, "{srv}");
    assert_eq!(
        dig(dns, &["+short", "node1.node.consul"]).trim(),
        "127.0.0.1"
    );
    assert_eq!(
        dig(dns, &["+short", "EXT.Node.DC1.Consul"]).trim(),
        "10.1.2.3"
    );
    assert_eq!(
        dig(dns, &["+short", "ext.node.consul", "TXT"]).trim(),
        "\"rack=r1\""
    );
    // Case-insensitive: `Redis` (tag `Replica`) on node `CacheHost` answers
    // together with `redis`, by any spelling (and the cached answer for
    // `redis` above is invalidated).
    put_json(
        &a,
        "catalog/register",
        json!({"Node": "CacheHost", "Address": "10.9.9.9",
        "Service": {"Service": "Redis", "ID": "redis3", "Port": 7000, "Tags": ["Replica"]}}),
    );
    for q in ["redis.service.consul", "REDIS.SERVICE.CONSUL"] {
        let srv = dig(dns, &["+short", q, "SRV"]);
        assert_eq!(srv.lines().count(), 3, "{q}: {srv}");
        // DNS names compare ignoring case (the encoder may reuse a label).
        assert!(
            srv.to_ascii_lowercase()
                .contains("1 1 7000 cachehost.node.dc1.consul."),
            "{q}: {srv}"
        );
    }
    for q in [
        "replica.redis.service.consul",
        "REPLICA.Redis.service.consul",
    ] {
        assert_eq!(dig(dns, &["+short", q]).trim(), "10.9.9.9", "{q}");
    }
    let srv = dig(dns, &["+short", "_REDIS._replica.service.consul", "SRV"]);
    assert_eq!(
        srv.trim().to_ascii_lowercase(),
        "1 1 7000 cachehost.node.dc1.consul."
    );
    for q in ["cachehost.node.consul", "CACHEHOST.NODE.CONSUL"] {
        assert_eq!(dig(dns, &["+short", q]).trim(), "10.9.9.9", "{q}");
    }
    put_json(&a, "catalog/deregister", json!({"Node": "CacheHost"}));
    let srv = dig(dns, &["+short", "REDIS.service.consul", "SRV"]);
    assert_eq!(srv.lines().count(), 2, "after deregister: {srv}");
    assert!(dig(dns, &["cachehost.node.consul"]).contains("status: NXDOMAIN"));

    let out = dig(dns, &["nope.service.consul"]);
    assert!(
        out.contains("status: NXDOMAIN") && out.contains("SOA"),
        "{out}"
    );
    let out = dig(dns, &["redis.service.dc9.consul"]);
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    let out = dig(dns, &["+tcp", "+short", "redis.service.consul", "SRV"]);
    assert_eq!(out.lines().count(), 2, "TCP: {out}");
    // Not our domain and no recursor: refused, not answered.
    assert!(dig(dns, &["example.com"]).contains("status: REFUSED"));

    // Many instances: UDP answer truncated with TC, TCP answer complete.
    for i in 0..40 {
        put_json(
            &a,
            "catalog/register",
            json!({"Node": format!("bulk-node-with-a-long-name-{i:02}"), "Address": format!("10.0.0.{i}"),
            "Service": {"Service": "bulk", "ID": format!("bulk{i}"), "Port": 1000 + i}}),
        );
    }
    // A 512-byte client gets udp_answer_limit (3) answers, without TC
    // (Consul's default, enable_truncate = false); one taking more gets
    // what fits its EDNS size, with TC.
    let udp = dig(dns, &["+ignore", "+noedns", "bulk.service.consul", "SRV"]);
    assert!(
        udp.contains("ANSWER: 3,") && !udp.contains(" tc"),
        "udp_answer_limit: {udp}"
    );
    let udp = dig(
        dns,
        &["+ignore", "+bufsize=1232", "bulk.service.consul", "SRV"],
    );
    assert!(
        udp.contains(" tc"),
        "no TC flag on a large UDP answer: {udp}"
    );
    let tcp = dig(dns, &["+tcp", "+short", "bulk.service.consul", "SRV"]);
    assert_eq!(tcp.lines().count(), 40);
    // Shuffled: the order is not always the same.
    let orders: std::collections::HashSet<String> = (0..6)
        .map(|_| dig(dns, &["+tcp", "+short", "bulk.service.consul"]))
        .collect();
    assert!(orders.len() > 1, "answers are not shuffled");
}

/// A config-dir service appears in the catalog; edits apply on `tribune reload`
/// (and SIGHUP), removals too; HTTP-registered services are untouched.
#[test]
fn config_dir_services_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("redis.json");
    std::fs::write(
        &conf,
        r#"{"service": {"name": "redis", "tags": ["db"], "port": 6379}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("cache.hcl"),
        "service {\n  name = \"memcached\"\n  port = 11211\n  check {\n    ttl = \"30s\"\n  }\n}\n",
    )
    .unwrap();
    let d = dir.path().to_str().unwrap();
    let (a, dns) = dns_agent(&["-config-dir", d]);
    wait_until("redis in catalog", Duration::from_secs(5), || {
        get_json(&a, "catalog/service/redis")
            .as_array()
            .map(|x| x.len())
            == Some(1)
    });
    let e = &get_json(&a, "catalog/service/redis")[0];
    assert_eq!(e["ServiceTags"], json!(["db"]));
    // The issue's dig queries against the config-file redis.
    let srv = dig(dns, &["+short", "redis.service.consul", "SRV"]);
    assert_eq!(srv.trim(), "1 1 6379 node1.node.dc1.consul.");
    assert_eq!(
        dig(dns, &["+short", "db.redis.service.consul"]).trim(),
        "127.0.0.1"
    );
    let srv = dig(dns, &["+short", "_redis._db.service.consul", "SRV"]);
    assert_eq!(srv.trim(), "1 1 6379 node1.node.dc1.consul.");
    // HCL definitions too, with their checks
    wait_until("memcached from HCL", Duration::from_secs(5), || {
        get_json(&a, "catalog/service/memcached")[0]["ServicePort"] == 11211
    });
    assert_eq!(
        get_json(&a, "agent/checks")["service:memcached"]["Type"],
        "ttl"
    );
    assert_eq!(e["ServicePort"], 6379);
    put_json(
        &a,
        "agent/service/register",
        json!({"name": "api", "port": 80}),
    );

    std::fs::write(
        &conf,
        r#"{"services": [{"name": "redis", "tags": ["db", "v2"], "port": 6380}, {"name": "queue", "port": 5672}]}"#,
    )
    .unwrap();
    let out = a.cli(&["reload"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Configuration reload triggered");
    wait_until("redis updated", Duration::from_secs(5), || {
        let e = get_json(&a, "catalog/service/redis");
        e[0]["ServicePort"] == 6380 && e[0]["ServiceTags"] == json!(["db", "v2"])
    });
    let srv = dig(dns, &["+short", "_redis._v2.service.consul", "SRV"]);
    assert_eq!(srv.trim(), "1 1 6380 node1.node.dc1.consul.");
    wait_until("queue registered", Duration::from_secs(5), || {
        get_json(&a, "catalog/service/queue")
            .as_array()
            .map(|x| x.len())
            == Some(1)
    });

    // Removal via SIGHUP; the HTTP-registered service stays.
    std::fs::write(&conf, r#"{"service": {"name": "queue", "port": 5672}}"#).unwrap();
    unsafe {
        libc::kill(a.child.id() as i32, libc::SIGHUP);
    }
    wait_until("redis removed", Duration::from_secs(5), || {
        get_json(&a, "catalog/service/redis")
            .as_array()
            .map(|x| x.is_empty())
            == Some(true)
    });
    assert!(dig(dns, &["db.redis.service.consul"]).contains("status: NXDOMAIN"));
    let services = get_json(&a, "agent/services");
    assert!(services.get("api").is_some(), "{services}");
    assert!(services.get("queue").is_some());

    // A broken file: reload refused, nothing changes.
    std::fs::write(&conf, r#"{"service": {"port": 1}}"#).unwrap();
    let out = a.cli(&["reload"], None);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("Missing service name"),
        "{}",
        out.stderr
    );
    assert!(get_json(&a, "agent/services").get("queue").is_some());
}

/// Script checks need -enable-script-checks; with it they run (exit 0/1/2).
#[test]
fn script_checks() {
    let a = Agent::dev(&[]);
    let r = put_json(
        &a,
        "agent/check/register",
        json!({"Name": "s", "Args": ["true"], "Interval": "1s"}),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("Scripts are disabled"));
    let r = put_json(
        &a,
        "agent/service/register",
        json!({"Name": "x", "Check": {"Args": ["true"], "Interval": "1s"}}),
    );
    assert_eq!(r.status(), 400);
    assert!(
        get_json(&a, "agent/services")
            .as_object()
            .unwrap()
            .is_empty(),
        "refused service was registered"
    );

    let b = Agent::dev(&["-enable-script-checks"]);
    for (name, code) in [("ok", 0), ("warn", 1), ("crit", 2)] {
        let r = put_json(
            &b,
            "agent/check/register",
            json!({"Name": name,
            "Args": ["sh", "-c", format!("echo out-{name}; exit {code}")], "Interval": "500ms"}),
        );
        assert_eq!(r.status(), 200);
    }
    wait_until("script results", Duration::from_secs(5), || {
        let c = get_json(&b, "agent/checks");
        c["ok"]["Status"] == "passing"
            && c["warn"]["Status"] == "warning"
            && c["crit"]["Status"] == "critical"
    });
    assert_eq!(get_json(&b, "agent/checks")["ok"]["Output"], "out-ok\n");
}

/// TTL checks expire to critical; DeregisterCriticalServiceAfter reaps the service.
#[test]
fn ttl_expiry_and_reaping() {
    let a = Agent::dev(&[]);
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "t", "Check": {"TTL": "1s", "Status": "passing"}}),
    );
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "reap", "Check": {"TTL": "1s", "Status": "passing",
        "DeregisterCriticalServiceAfter": "1s"}}),
    );
    wait_until("t passing in catalog", Duration::from_secs(5), || {
        passing_ids(&a, "t") == ["t"]
    });
    let t0 = Instant::now();
    wait_until("TTL expired", Duration::from_secs(5), || {
        get_json(&a, "agent/checks")["service:t"]["Status"] == "critical"
    });
    assert!(t0.elapsed() >= Duration::from_millis(700));
    assert_eq!(
        get_json(&a, "agent/checks")["service:t"]["Output"],
        "TTL expired"
    );
    wait_until("t left ?passing", Duration::from_secs(5), || {
        passing_ids(&a, "t").is_empty()
    });
    // pass revives it
    assert_eq!(
        client()
            .put(format!("{}/v1/agent/check/pass/service:t?note=back", a.url))
            .send()
            .unwrap()
            .status(),
        200
    );
    wait_until("t back", Duration::from_secs(5), || {
        passing_ids(&a, "t") == ["t"]
    });
    // the other one is reaped from agent and catalog
    wait_until("reap deregistered", Duration::from_secs(6), || {
        get_json(&a, "catalog/service/reap")
            .as_array()
            .unwrap()
            .is_empty()
    });
    assert!(get_json(&a, "agent/services").get("reap").is_none());
    // update endpoint
    let r = put_json(
        &a,
        "agent/check/update/service:t",
        json!({"Status": "warning", "Output": "slow"}),
    );
    assert_eq!(r.status(), 200);
    let c = &get_json(&a, "agent/checks")["service:t"];
    assert_eq!(
        (c["Status"].as_str(), c["Output"].as_str()),
        (Some("warning"), Some("slow"))
    );
}

/// A real gRPC health server (tonic-health), served by tonic on
/// 127.0.0.1:0 from a tokio runtime whose worker is a background thread.
struct GrpcHealth {
    rt: tokio::runtime::Runtime,
    reporter: tonic_health::server::HealthReporter,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    port: u16,
}

impl GrpcHealth {
    fn start() -> GrpcHealth {
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
    fn tls_front(&self) -> u16 {
        use tokio_rustls::rustls;
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(include_bytes!("data/grpc-test-cert.pem"))
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(include_bytes!("data/grpc-test-key.pem")).unwrap();
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

    fn set(&self, service: &str, status: tonic_health::ServingStatus) {
        self.rt
            .block_on(self.reporter.set_service_status(service, status));
    }

    /// Stop serving and close every connection.
    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.rt.shutdown_timeout(Duration::from_secs(2));
    }
}

/// GRPC checks speak the gRPC health protocol: `host:port/service` asks about
/// that service; SERVING is passing, NOT_SERVING, an unknown service and a
/// server that is gone are critical, with Consul's output text.
#[test]
fn grpc_checks() {
    let server = GrpcHealth::start();
    let a = Agent::dev(&[]);
    let target = format!("127.0.0.1:{}/my.Service", server.port);
    let r = put_json(
        &a,
        "agent/service/register",
        json!({"Name": "g", "Check": {"GRPC": target, "Interval": "500ms"}}),
    );
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let check = || get_json(&a, "agent/checks")["service:g"].clone();
    // the server does not know my.Service yet: NOT_FOUND from the server
    wait_until("unknown service probed", Duration::from_secs(5), || {
        check()["Output"]
            .as_str()
            .is_some_and(|o| o.contains("NotFound"))
    });
    assert_eq!(check()["Status"], "critical");
    assert_eq!(check()["Type"], "grpc");

    server.set("my.Service", tonic_health::ServingStatus::Serving);
    wait_until("passing", Duration::from_secs(5), || {
        check()["Status"] == "passing"
    });
    assert_eq!(check()["Output"], format!("gRPC check {target}: success"));
    wait_until("g in ?passing", Duration::from_secs(5), || {
        passing_ids(&a, "g") == ["g"]
    });

    server.set("my.Service", tonic_health::ServingStatus::NotServing);
    wait_until("critical on NOT_SERVING", Duration::from_secs(5), || {
        check()["Status"] == "critical"
    });
    assert_eq!(
        check()["Output"],
        format!("gRPC check {target}: failed with status NOT_SERVING")
    );
    wait_until("g left ?passing", Duration::from_secs(5), || {
        passing_ids(&a, "g").is_empty()
    });

    server.set("my.Service", tonic_health::ServingStatus::Serving);
    wait_until("passing again", Duration::from_secs(5), || {
        check()["Status"] == "passing"
    });
    server.stop();
    wait_until(
        "critical once the server is gone",
        Duration::from_secs(5),
        || check()["Status"] == "critical",
    );
    let out = check()["Output"].as_str().unwrap().to_string();
    assert!(
        out.starts_with(&format!(
            "gRPC check {target}: failed with status Unavailable"
        )),
        "{out}"
    );

    // like HTTP and TCP checks, GRPC checks need an interval and a host:port
    for (check, needle) in [
        (json!({"GRPC": "127.0.0.1:1"}), "Interval"),
        (json!({"GRPC": "127.0.0.1", "Interval": "1s"}), "host:port"),
    ] {
        let r = put_json(
            &a,
            "agent/service/register",
            json!({"Name": "bad", "Check": check}),
        );
        assert_eq!(r.status(), 400);
        let text = r.text().unwrap();
        assert!(text.contains(needle), "{text}");
    }
    assert!(get_json(&a, "agent/services").get("bad").is_none());
}

/// GRPCUseTLS: TLSSkipVerify accepts a self-signed server, verification
/// refuses it, and TLS against a plaintext server fails.
#[test]
fn grpc_tls_checks() {
    let server = GrpcHealth::start();
    let tls_port = server.tls_front();
    let a = Agent::dev(&[]);
    let checks = [
        json!({"Name": "skip", "GRPC": format!("localhost:{tls_port}"), "GRPCUseTLS": true,
               "TLSSkipVerify": true, "Interval": "500ms"}),
        json!({"Name": "verify", "GRPC": format!("127.0.0.1:{tls_port}"), "grpc_use_tls": true,
               "Interval": "500ms"}),
        json!({"Name": "plain", "GRPC": format!("127.0.0.1:{}", server.port), "GRPCUseTLS": true,
               "TLSSkipVerify": true, "Interval": "500ms", "Timeout": "2s"}),
    ];
    for c in checks {
        let r = put_json(&a, "agent/check/register", c);
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    }
    wait_until("all TLS checks probed", Duration::from_secs(10), || {
        let c = get_json(&a, "agent/checks");
        c["skip"]["Status"] == "passing"
            && ["verify", "plain"].iter().all(|n| {
                c[n]["Output"]
                    .as_str()
                    .is_some_and(|o| o.contains("failed"))
            })
    });
    let c = get_json(&a, "agent/checks");
    assert_eq!(
        c["skip"]["Output"],
        format!("gRPC check localhost:{tls_port}: success")
    );
    for n in ["verify", "plain"] {
        assert_eq!(c[n]["Status"], "critical", "{n}: {}", c[n]["Output"]);
    }
    let out = c["verify"]["Output"].as_str().unwrap();
    assert!(out.contains("certificate"), "{out}");
    server.stop();
}

/// A blocking health query on `web` wakes on web's health flip, not on db.
#[test]
fn blocking_health_wakes_per_service() {
    let a = Agent::dev(&[]);
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "web", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "db", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    wait_until("both passing", Duration::from_secs(5), || {
        passing_ids(&a, "web").len() == 1 && passing_ids(&a, "db").len() == 1
    });
    let idx = settled_index(&a, "health/service/web?passing");
    let url = format!(
        "{}/v1/health/service/web?passing&index={idx}&wait=20s",
        a.url
    );
    let waiter = thread::spawn(move || {
        let t = Instant::now();
        let r = client().get(url).send().unwrap();
        (t.elapsed(), index_of(&r), r.json::<Value>().unwrap())
    });
    thread::sleep(Duration::from_millis(300));
    client()
        .put(format!("{}/v1/agent/check/fail/service:db", a.url))
        .send()
        .unwrap();
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "db", "Tags": ["x"], "Check": {"TTL": "60s"}}),
    );
    thread::sleep(Duration::from_millis(700));
    assert!(!waiter.is_finished(), "web watcher woke on a db change");
    client()
        .put(format!("{}/v1/agent/check/fail/service:web", a.url))
        .send()
        .unwrap();
    let (took, new_idx, body) = waiter.join().unwrap();
    assert!(took < Duration::from_secs(5));
    assert!(new_idx > idx);
    assert_eq!(body, json!([]), "critical web must leave ?passing");
}

/// Maintenance modes and /v1/agent/health/service with 200/429/503.
#[test]
fn maintenance_and_agent_health() {
    let a = Agent::dev(&[]);
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "m", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    let code = |p: &str| get(&a, p).status().as_u16();
    assert_eq!(code("agent/health/service/name/m"), 200);
    client()
        .put(format!("{}/v1/agent/check/warn/service:m", a.url))
        .send()
        .unwrap();
    assert_eq!(code("agent/health/service/id/m"), 429);
    client()
        .put(format!("{}/v1/agent/check/fail/service:m", a.url))
        .send()
        .unwrap();
    assert_eq!(code("agent/health/service/name/m"), 503);
    assert_eq!(
        get(&a, "agent/health/service/name/m?format=text")
            .text()
            .unwrap(),
        "critical"
    );
    assert_eq!(code("agent/health/service/name/none"), 404);
    client()
        .put(format!("{}/v1/agent/check/pass/service:m", a.url))
        .send()
        .unwrap();
    wait_until("m passing", Duration::from_secs(5), || {
        passing_ids(&a, "m") == ["m"]
    });
    let r = client()
        .put(format!(
            "{}/v1/agent/service/maintenance/m?enable=true&reason=upgrade",
            a.url
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("m out of passing", Duration::from_secs(5), || {
        passing_ids(&a, "m").is_empty()
    });
    let body = get_json(&a, "agent/health/service/id/m");
    assert_eq!(body["AggregatedStatus"], "maintenance");
    client()
        .put(format!(
            "{}/v1/agent/service/maintenance/m?enable=false",
            a.url
        ))
        .send()
        .unwrap();
    wait_until("m back", Duration::from_secs(5), || {
        passing_ids(&a, "m") == ["m"]
    });
    client()
        .put(format!("{}/v1/agent/maintenance?enable=true", a.url))
        .send()
        .unwrap();
    wait_until("node maintenance", Duration::from_secs(5), || {
        passing_ids(&a, "m").is_empty()
    });
    client()
        .put(format!("{}/v1/agent/maintenance?enable=false", a.url))
        .send()
        .unwrap();
    wait_until("node back", Duration::from_secs(5), || {
        passing_ids(&a, "m") == ["m"]
    });
}

/// A catalog that diverges from the agent is repaired within seconds.
#[test]
fn anti_entropy_repairs_catalog() {
    let a = Agent::dev(&["-node", "ae"]);
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "keep", "Port": 1}),
    );
    wait_until("keep in catalog", Duration::from_secs(5), || {
        !get_json(&a, "catalog/service/keep")
            .as_array()
            .unwrap()
            .is_empty()
    });
    let r = put_json(
        &a,
        "catalog/deregister",
        json!({"Node": "ae", "ServiceID": "keep"}),
    );
    assert_eq!(r.status(), 200);
    assert!(get_json(&a, "catalog/service/keep")
        .as_array()
        .unwrap()
        .is_empty());
    let took = wait_until("repaired", Duration::from_secs(10), || {
        !get_json(&a, "catalog/service/keep")
            .as_array()
            .unwrap()
            .is_empty()
    });
    assert!(took < Duration::from_secs(7), "{took:?}");
    // the node, its serfHealth and the consul service are there
    let node = get_json(&a, "catalog/node/ae");
    assert!(node["Services"].get("consul").is_some(), "{node}");
    assert!(get_json(&a, "health/node/ae")
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["CheckID"] == "serfHealth"));
    assert_eq!(get(&a, "catalog/node/nobody").status(), 404);
    let nodes = get_json(&a, "catalog/nodes");
    assert_eq!(nodes[0]["Node"], "ae");
}

/// Bad registrations get clear 4xx errors and change nothing.
#[test]
fn bad_registrations_change_nothing() {
    let a = Agent::dev(&[]);
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "ok", "Check": {"TTL": "10s"}}),
    );
    let before = (get_json(&a, "agent/services"), get_json(&a, "agent/checks"));
    let c = client();
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        (
            "agent/service/register",
            r#"{"Port": 1}"#,
            400,
            "Missing service name",
        ),
        (
            "agent/service/register",
            r#"{"Name": "x", "Port": 99999}"#,
            400,
            "port",
        ),
        (
            "agent/service/register",
            r#"{"Name": "x", "Check": {"HTTP": "http://x"}}"#,
            400,
            "Interval",
        ),
        (
            "agent/service/register",
            r#"{"Name": "x", "Check": {"HTTP": "ftp://x", "Interval": "1s"}}"#,
            400,
            "scheme",
        ),
        (
            "agent/service/register",
            r#"{"Name": "x", "Check": {"TTL": "nonsense"}}"#,
            400,
            "duration",
        ),
        (
            "agent/service/register",
            r#"{"Name": "x", "Tags": [1]}"#,
            400,
            "strings",
        ),
        ("agent/service/register", "not json", 400, "decode"),
        ("agent/service/register", "", 400, "empty body"),
        (
            "agent/check/register",
            r#"{"TTL": "5s"}"#,
            400,
            "Missing check name",
        ),
        (
            "agent/check/register",
            r#"{"Name": "c", "TTL": "5s", "ServiceID": "ghost"}"#,
            400,
            "does not exist",
        ),
        (
            "agent/check/update/service:ok",
            r#"{"Status": "bogus"}"#,
            400,
            "status",
        ),
        ("agent/service/deregister/ghost", "", 404, "Unknown service"),
        ("agent/check/deregister/ghost", "", 404, "Unknown check"),
        ("agent/check/pass/ghost", "", 404, "Unknown check"),
        (
            "agent/service/maintenance/ghost?enable=true",
            "",
            404,
            "Unknown service",
        ),
        ("agent/maintenance?enable=maybe", "", 400, "enable"),
        ("catalog/register", r#"{"Address": "1.2.3.4"}"#, 400, "node"),
        (
            "catalog/register",
            r#"{"Node": "n", "Address": "1.2.3.4", "Check": {"CheckID": "c", "ServiceID": "nope"}}"#,
            400,
            "Unknown service",
        ),
        (
            "catalog/register",
            r#"{"Node": "n", "Address": "1.2.3.4", "Datacenter": "dc9"}"#,
            500,
            "No path to datacenter",
        ),
        ("catalog/deregister", r#"{}"#, 400, "node"),
    ];
    for (path, body, status, needle) in cases {
        let r = c
            .put(format!("{}/v1/{path}", a.url))
            .body(body)
            .send()
            .unwrap();
        let got = r.status().as_u16();
        let text = r.text().unwrap();
        assert_eq!(got, status, "{path} {body}: {text}");
        assert!(
            text.contains(needle),
            "{path} {body}: {text:?} lacks {needle:?}"
        );
    }
    let r = c
        .put(format!("{}/v1/agent/check/register", a.url))
        .body(r#"{"Name": "h", "HTTP": "http://127.0.0.1:1/", "Interval": "1s"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .put(format!("{}/v1/agent/check/pass/h", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400, "pass on a non-TTL check");
    c.put(format!("{}/v1/agent/check/deregister/h", a.url))
        .send()
        .unwrap();
    assert_eq!(
        (get_json(&a, "agent/services"), get_json(&a, "agent/checks")),
        before
    );
    assert!(
        get(&a, "catalog/node/n").status() == 404,
        "refused catalog registration created a node"
    );
    assert_eq!(get(&a, "health/state/bogus").status(), 400);
}

/// `tribune services register|deregister` with a definition file and flags.
#[test]
fn services_cli() {
    let a = Agent::dev(&[]);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("svc.json");
    std::fs::write(
        &f,
        r#"{"service": {"name": "cli-svc", "port": 8080, "tags": ["t"], "check": {"ttl": "30s"}}}"#,
    )
    .unwrap();
    let out = a.cli(&["services", "register", f.to_str().unwrap()], None);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "Registered service: cli-svc"),
        "{}",
        out.stderr
    );
    let out = a.cli(
        &[
            "services", "register", "-name", "flagged", "-port", "9", "-tag", "a", "-meta", "k=v",
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = get_json(&a, "agent/services");
    assert_eq!(s["cli-svc"]["Port"], 8080);
    assert_eq!(s["flagged"]["Meta"]["k"], "v");
    let out = a.cli(&["services", "deregister", "-id", "flagged"], None);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "Deregistered service: flagged")
    );
    let out = a.cli(&["services", "deregister", f.to_str().unwrap()], None);
    assert_eq!(out.code, 0);
    assert!(get_json(&a, "agent/services")
        .as_object()
        .unwrap()
        .is_empty());
    let out = a.cli(&["services", "deregister", "-id", "ghost"], None);
    assert_eq!(out.code, 1);
    std::fs::write(&f, r#"{"service": {"port": 1}}"#).unwrap();
    let out = a.cli(&["services", "register", f.to_str().unwrap()], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("Missing service name"));
    let out = a.cli(&["members"], None);
    assert!(out.stdout.starts_with("Node"), "{}", out.stdout);
    assert!(out.stdout.contains("alive") && out.stdout.contains("server"));
    let out = a.cli(&["catalog", "services"], None);
    assert!(out.stdout.contains("consul"));
}

/// `-recursor`: names outside the consul domain are forwarded. The upstream
/// here is a second agent serving the domain `example`.
#[test]
fn dns_recursor_forwards_other_domains() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("domain.json");
    std::fs::write(&conf, r#"{"domain": "example"}"#).unwrap();
    let c = conf.to_str().unwrap();
    let upstream = Agent::spawn(
        &[
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-dns-port",
            "0",
            "-node",
            "far",
            "-config-file",
            c,
        ],
        None,
    );
    let upstream_dns = upstream.dns_port();
    // The upstream registers its own node through anti-entropy, just after start.
    wait_until("upstream node registered", Duration::from_secs(5), || {
        get(&upstream, "catalog/node/far").status() == 200
    });
    let recursor = format!("127.0.0.1:{upstream_dns}");
    let (a, dns) = dns_agent(&["-recursor", &recursor]);
    wait_until("local node registered", Duration::from_secs(5), || {
        get(&a, "catalog/node/node1").status() == 200
    });
    let out = dig(dns, &["far.node.example"]);
    assert!(
        out.contains("status: NOERROR") && out.contains("far.node.example.\t0\tIN\tA\t127.0.0.1"),
        "{out}"
    );
    assert!(
        out.contains(" ra"),
        "recursion available flag missing: {out}"
    );
    // our own domain still answered locally
    assert_eq!(
        dig(dns, &["+short", "node1.node.consul"]).trim(),
        "127.0.0.1"
    );
}

/// A probe whose result does not change writes nothing through raft.
#[test]
fn unchanged_probe_results_cost_no_raft_writes() {
    let a = Agent::dev(&[]);
    let port = free_port();
    let _b = Backend::http(port);
    let r = put_json(
        &a,
        "agent/service/register",
        json!({"Name": "steady", "Port": port,
        "Check": {"HTTP": format!("http://127.0.0.1:{port}/"), "Interval": "200ms"}}),
    );
    assert_eq!(r.status(), 200);
    wait_until("steady passing", Duration::from_secs(5), || {
        passing_ids(&a, "steady") == ["steady"]
    });
    thread::sleep(Duration::from_millis(500));
    let last = |a: &Agent| {
        get_json(a, "agent/self")["Stats"]["raft"]["last_log_index"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let before = last(&a);
    thread::sleep(Duration::from_secs(3)); // about three probes (1 s at least apart)
    assert_eq!(
        last(&a),
        before,
        "probes with an unchanged result went through raft"
    );
}

/// HTTP checks send the configured method, headers and body; 2xx is passing,
/// 429 warning, anything else critical.
#[test]
fn http_check_method_headers_body_and_status_mapping() {
    let a = Agent::dev(&[]);
    let port = free_port();
    // Answers 200 only to PUT with header X-Test: 1 and body "ping"; /busy answers 429.
    let server = format!(
        r#"
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code):
        self.send_response(code); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def do_GET(self):
        self.reply(429 if self.path == "/busy" else 405)
    def do_PUT(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self.reply(200 if self.headers.get("X-Test") == "1" and body == b"ping" else 400)
http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H).serve_forever()
"#
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(server)
        .spawn()
        .unwrap();
    wait_until("check server up", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("http://127.0.0.1:{port}/");
    for (name, check) in [
        (
            "good",
            json!({"HTTP": url, "Method": "PUT", "Header": {"X-Test": ["1"]}, "Body": "ping", "Interval": "300ms"}),
        ),
        (
            "nohdr",
            json!({"HTTP": url, "Method": "PUT", "Body": "ping", "Interval": "300ms"}),
        ),
        (
            "busy",
            json!({"HTTP": format!("{url}busy"), "Interval": "300ms"}),
        ),
    ] {
        let r = put_json(
            &a,
            "agent/service/register",
            json!({"Name": name, "Check": check}),
        );
        assert_eq!(r.status(), 200);
    }
    wait_until("check results", Duration::from_secs(5), || {
        let c = get_json(&a, "agent/checks");
        c["service:good"]["Status"] == "passing"
            && c["service:nohdr"]["Status"] == "critical"
            && c["service:busy"]["Status"] == "warning"
    });
    let c = get_json(&a, "agent/checks");
    assert!(
        c["service:good"]["Output"]
            .as_str()
            .unwrap()
            .contains("200"),
        "{}",
        c["service:good"]
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// `dns_config` TTLs apply to service (per name, any case, and `*`) and node answers.
#[test]
fn dns_ttls_from_config() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("dns.json");
    std::fs::write(
        &conf,
        r#"{"dns_config": {"node_ttl": "7s", "service_ttl": {"*": "5s", "DB": "30s"}}}"#,
    )
    .unwrap();
    let (a, dns) = dns_agent(&["-config-file", conf.to_str().unwrap()]);
    for name in ["web", "db"] {
        put_json(
            &a,
            "agent/service/register",
            json!({"Name": name, "Port": 1, "Check": {"TTL": "60s", "Status": "passing"}}),
        );
    }
    wait_until("both passing", Duration::from_secs(5), || {
        passing_ids(&a, "db").len() == 1 && passing_ids(&a, "web").len() == 1
    });
    let ttl = |q: &str| {
        let out = dig(dns, &["+noall", "+answer", q]);
        out.split_whitespace().nth(1).unwrap_or("").to_string()
    };
    assert_eq!(ttl("web.service.consul"), "5");
    assert_eq!(ttl("db.service.consul"), "30");
    assert_eq!(ttl("node1.node.consul"), "7");
}

/// A python backend for HTTP check tests: plain HTTP on `plain`, the same
/// handler over TLS (self-signed test cert) on `tls`. `/big` answers 10,000
/// bytes; `/alt*` alternates 200/500 per path; `/ctl` answers 200 until
/// `/set-down` was requested, then 500. It binds its own ports (a port the
/// test picked could be taken by the time Python binds it) and prints them.
fn check_backend() -> (Backend, u16, u16) {
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

/// HTTP checks: TLSSkipVerify against a self-signed server, output capped at
/// 4 KiB, SuccessBeforePassing / FailuresBeforeCritical holding the status
/// through flips, and Timeout against a backend that never answers.
#[test]
fn http_check_tls_cap_thresholds_and_timeout() {
    let (_backend, plain, tls) = check_backend();
    // Accepts connections (kernel backlog) but never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let a = Agent::dev(&[]);
    let url = |p: &str| format!("http://127.0.0.1:{plain}{p}");
    let checks = [
        json!({"ID": "tls-verify", "Name": "tls-verify",
               "HTTP": format!("https://localhost:{tls}/"), "Interval": "300ms"}),
        json!({"ID": "tls-skip", "Name": "tls-skip",
               "HTTP": format!("https://localhost:{tls}/"), "TLSSkipVerify": true, "Interval": "300ms"}),
        json!({"ID": "big", "Name": "big", "HTTP": url("/big"), "Interval": "300ms"}),
        // Alternating results: without thresholds the status flips; with
        // both thresholds at 2 no run is long enough, so the initial status holds.
        json!({"ID": "alt-plain", "Name": "alt-plain", "HTTP": url("/alt1"), "Interval": "200ms"}),
        json!({"ID": "alt-hold-pass", "Name": "alt-hold-pass", "HTTP": url("/alt2"),
               "Interval": "200ms", "Status": "passing",
               "SuccessBeforePassing": 2, "FailuresBeforeCritical": 2}),
        json!({"ID": "alt-hold-crit", "Name": "alt-hold-crit", "HTTP": url("/alt3"),
               "Interval": "200ms", "Status": "critical",
               "SuccessBeforePassing": 2, "FailuresBeforeCritical": 2}),
        json!({"ID": "ctl-plain", "Name": "ctl-plain", "HTTP": url("/ctl"), "Interval": "300ms"}),
        json!({"ID": "ctl-fbc", "Name": "ctl-fbc", "HTTP": url("/ctl"), "Interval": "300ms",
               "FailuresBeforeCritical": 3}),
    ];
    for c in checks {
        let r = put_json(&a, "agent/check/register", c);
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    }
    let t0 = Instant::now();
    let r = put_json(
        &a,
        "agent/check/register",
        json!({"ID": "slow", "Name": "slow", "HTTP": format!("http://127.0.0.1:{silent_port}/"),
               "Interval": "1s", "Timeout": "500ms", "Status": "passing"}),
    );
    assert_eq!(r.status(), 200);
    let status = |c: &Value, id: &str| c[id]["Status"].as_str().unwrap_or("").to_string();

    // Timeout: critical within interval (first-probe stagger) + timeout (+ margin).
    wait_until("slow check critical", Duration::from_secs(6), || {
        status(&get_json(&a, "agent/checks"), "slow") == "critical"
    });
    let took = t0.elapsed();
    assert!(took <= Duration::from_millis(3000), "took {took:?}");

    wait_until("TLS and big checks probed", Duration::from_secs(6), || {
        let c = get_json(&a, "agent/checks");
        status(&c, "tls-skip") == "passing"
            && c["tls-verify"]["Output"]
                .as_str()
                .is_some_and(|o| !o.is_empty())
            && status(&c, "big") == "passing"
    });
    let c = get_json(&a, "agent/checks");
    assert_eq!(status(&c, "tls-verify"), "critical", "{}", c["tls-verify"]);
    let out = c["big"]["Output"].as_str().unwrap();
    assert!(
        out.len() <= 4096 + 64 && out.contains("captured 4096 of"),
        "{} bytes: {}",
        out.len(),
        &out[out.len().saturating_sub(80)..]
    );

    // Watch the alternating checks for ~3 s (about three probes each: the
    // 200ms intervals are raised to Consul's 1 s minimum).
    let mut seen_plain = std::collections::HashSet::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let c = get_json(&a, "agent/checks");
        seen_plain.insert(status(&c, "alt-plain"));
        assert_eq!(status(&c, "alt-hold-pass"), "passing");
        assert_eq!(status(&c, "alt-hold-crit"), "critical");
        thread::sleep(Duration::from_millis(40));
    }
    assert!(
        seen_plain.contains("passing") && seen_plain.contains("critical"),
        "alt-plain never flipped: {seen_plain:?}"
    );

    // FailuresBeforeCritical 3: still passing when the plain check on the
    // same backend already turned critical; critical after three failures.
    wait_until("ctl checks passing", Duration::from_secs(5), || {
        let c = get_json(&a, "agent/checks");
        status(&c, "ctl-plain") == "passing" && status(&c, "ctl-fbc") == "passing"
    });
    client().get(url("/set-down")).send().unwrap();
    wait_until("ctl-plain critical", Duration::from_secs(5), || {
        let c = get_json(&a, "agent/checks");
        let done = status(&c, "ctl-plain") == "critical";
        if done {
            assert_eq!(status(&c, "ctl-fbc"), "passing", "{}", c["ctl-fbc"]);
        }
        done
    });
    wait_until("ctl-fbc critical", Duration::from_secs(5), || {
        status(&get_json(&a, "agent/checks"), "ctl-fbc") == "critical"
    });
    drop(silent);
}

/// Standalone `{"check": ...}` and `{"checks": [...]}` files in -config-dir:
/// registered at start, changed and removed on `tribune reload`; a check
/// registered over HTTP is untouched.
#[test]
fn config_dir_standalone_checks_and_reload() {
    let dir = tempfile::tempdir().unwrap();
    let one = dir.path().join("check.json");
    let many = dir.path().join("checks.json");
    std::fs::write(
        &one,
        r#"{"check": {"id": "disk", "name": "Disk", "ttl": "30s", "notes": "v1"}}"#,
    )
    .unwrap();
    std::fs::write(
        &many,
        r#"{"checks": [{"id": "mem", "name": "Mem", "ttl": "30s"}, {"id": "cpu", "name": "CPU", "ttl": "30s"}]}"#,
    )
    .unwrap();
    let a = Agent::dev(&[
        "-node",
        "node1",
        "-config-dir",
        dir.path().to_str().unwrap(),
    ]);
    let r = put_json(
        &a,
        "agent/check/register",
        json!({"ID": "api", "Name": "api", "TTL": "30s"}),
    );
    assert_eq!(r.status(), 200);
    let catalog_ids = || -> Vec<String> {
        let mut ids: Vec<String> = get_json(&a, "health/node/node1")
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["CheckID"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    wait_until("file checks in catalog", Duration::from_secs(5), || {
        catalog_ids() == ["api", "cpu", "disk", "mem", "serfHealth"]
    });
    let c = get_json(&a, "agent/checks");
    assert_eq!(c["disk"]["Name"], "Disk");
    assert_eq!(c["disk"]["Notes"], "v1");
    assert_eq!(c["cpu"]["Type"], "ttl");

    std::fs::write(
        &one,
        r#"{"check": {"id": "disk", "name": "Disk v2", "ttl": "30s", "notes": "v2"}}"#,
    )
    .unwrap();
    std::fs::write(
        &many,
        r#"{"checks": [{"id": "mem", "name": "Mem", "ttl": "30s"}]}"#,
    )
    .unwrap();
    let out = a.cli(&["reload"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_until("reload applied to catalog", Duration::from_secs(5), || {
        catalog_ids() == ["api", "disk", "mem", "serfHealth"]
    });
    let c = get_json(&a, "agent/checks");
    assert_eq!(c["disk"]["Name"], "Disk v2");
    assert_eq!(c["disk"]["Notes"], "v2");
    assert!(c.get("cpu").is_none(), "{c}");
    assert!(c.get("api").is_some(), "HTTP check removed by reload: {c}");

    // Removing the file removes its check.
    std::fs::remove_file(&one).unwrap();
    let out = a.cli(&["reload"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    wait_until("disk removed", Duration::from_secs(5), || {
        catalog_ids() == ["api", "mem", "serfHealth"]
    });
}

/// Park a blocking query on `path` at its current index; returns the index
/// and a handle yielding (time taken, new index).
fn park(a: &Agent, path: &str, wait: &str) -> (u64, thread::JoinHandle<(Duration, u64)>) {
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

/// `Checks` array IDs and default names; repeatable `tag` (AND); blocking
/// queries on the catalog and health endpoints wake on relevant changes, and
/// `catalog/service/web` not on a change to `db`.
#[test]
fn checks_array_tags_and_blocking_endpoints() {
    let a = Agent::dev(&["-node", "node1"]);
    let r = put_json(
        &a,
        "agent/service/register",
        json!({"Name": "x", "Checks": [{"TTL": "30s"}, {"TTL": "30s", "Status": "passing"}]}),
    );
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let c = get_json(&a, "agent/checks");
    for id in ["service:x:1", "service:x:2"] {
        assert_eq!(c[id]["Name"], "Service 'x' check", "{c}");
        assert_eq!(c[id]["ServiceID"], "x");
    }
    assert!(c.get("service:x").is_none(), "{c}");

    for (id, tags) in [
        ("web1", vec!["a", "b"]),
        ("web2", vec!["a"]),
        ("web3", vec!["b"]),
    ] {
        put_json(
            &a,
            "agent/service/register",
            json!({"Name": "web", "ID": id, "Tags": tags,
                   "Check": {"TTL": "60s", "Status": "passing"}}),
        );
    }
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "db", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    wait_until("web instances passing", Duration::from_secs(5), || {
        passing_ids(&a, "web").len() == 3 && passing_ids(&a, "db").len() == 1
    });
    let ids = |q: &str| -> Vec<String> {
        let mut v: Vec<String> = get_json(&a, &format!("health/service/web?{q}"))
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids("tag=a"), ["web1", "web2"]);
    assert_eq!(ids("tag=a&tag=b"), ["web1"]);
    assert_eq!(ids("tag=b&tag=a&passing"), ["web1"]);
    assert!(ids("tag=a&tag=c").is_empty());
    // Names and tags match ignoring case, as in Consul.
    assert_eq!(ids("tag=A"), ["web1", "web2"]);
    let n = |path: &str| get_json(&a, path).as_array().unwrap().len();
    assert_eq!(n("health/service/WEB?tag=B"), 2);
    assert_eq!(n("catalog/service/Web?tag=a"), 2);
    assert_eq!(n("health/checks/wEb"), 3);
    // A service registered as `Web` joins `web` in lookups, and a blocking
    // query on one spelling wakes on a change to the other.
    let (idx, h) = park(&a, "health/service/web", "10s");
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "Web", "ID": "web4", "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    let (took, new_idx) = h.join().unwrap();
    assert!(new_idx > idx && took < Duration::from_secs(9), "{took:?}");
    wait_until("Web counted with web", Duration::from_secs(5), || {
        passing_ids(&a, "web").len() == 4 && passing_ids(&a, "WEB").len() == 4
    });
    let services = get_json(&a, "catalog/services");
    assert!(
        services.get("Web").is_some() && services.get("web").is_some(),
        "{services}"
    );
    let r = client()
        .put(format!("{}/v1/agent/service/deregister/web4", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("web4 gone", Duration::from_secs(5), || {
        passing_ids(&a, "web").len() == 3
    });

    // catalog/service/web does not wake on a change to db...
    let (idx, h) = park(&a, "catalog/service/web", "1s");
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "db", "Tags": ["changed"], "Check": {"TTL": "60s"}}),
    );
    let (took, new_idx) = h.join().unwrap();
    assert!(took >= Duration::from_millis(900), "woke after {took:?}");
    assert_eq!(
        new_idx, idx,
        "catalog/service/web index moved on a db change"
    );
    // ...but does on a change to web.
    let (idx, h) = park(&a, "catalog/service/web", "10s");
    put_json(
        &a,
        "agent/service/register",
        json!({"Name": "web", "ID": "web3", "Tags": ["b", "c"],
               "Check": {"TTL": "60s", "Status": "passing"}}),
    );
    let (took, new_idx) = h.join().unwrap();
    assert!(took < Duration::from_secs(5) && new_idx > idx, "{took:?}");

    // Each endpoint wakes on a change it shows.
    let set = |state: &str, id: &str| {
        let r = client()
            .put(format!("{}/v1/agent/check/{state}/{id}", a.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    type Change<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "catalog/services",
            Box::new(|| {
                put_json(&a, "agent/service/register", json!({"Name": "cache"}));
            }),
        ),
        (
            "catalog/nodes",
            Box::new(|| {
                put_json(
                    &a,
                    "catalog/register",
                    json!({"Node": "ext", "Address": "10.0.0.9"}),
                );
            }),
        ),
        (
            "catalog/node/node1",
            Box::new(|| {
                put_json(&a, "agent/service/register", json!({"Name": "queue"}));
            }),
        ),
        (
            "health/checks/web",
            Box::new(|| set("fail", "service:web1")),
        ),
        // db's re-registered check started critical.
        ("health/node/node1", Box::new(|| set("pass", "service:db"))),
        (
            "health/state/critical",
            Box::new(|| set("fail", "service:web2")),
        ),
    ];
    for (path, change) in cases {
        let (idx, h) = park(&a, path, "10s");
        change();
        let (took, new_idx) = h.join().unwrap();
        assert!(
            took < Duration::from_secs(5) && new_idx > idx,
            "{path}: took {took:?}, index {idx} -> {new_idx}"
        );
    }
}

/// With gossip off (`ports.serf_lan = -1`) the server registers a passing
/// serfHealth for itself, so a default session (which checks serfHealth)
/// can be created.
#[test]
fn no_gossip_server_has_serf_health() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("ports.json");
    std::fs::write(&conf, r#"{"ports": {"serf_lan": -1}}"#).unwrap();
    let a = Agent::dev(&["-node", "node1", "-config-file", conf.to_str().unwrap()]);
    wait_until("serfHealth passing", Duration::from_secs(5), || {
        get_json(&a, "health/node/node1")
            .as_array()
            .is_some_and(|v| {
                v.iter()
                    .any(|c| c["CheckID"] == "serfHealth" && c["Status"] == "passing")
            })
    });
    let r = put_json(&a, "session/create", json!({"Name": "s"}));
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let body: Value = r.json().unwrap();
    assert!(body["ID"].as_str().is_some_and(|id| !id.is_empty()));
}
