//! Real third-party client: python-consul drives the KV API of a real agent.

use std::process::Command;

use tribune_tests::{root, Agent};

/// get/put/delete, recurse, keys+separator, cas, flags, txn and an
/// index-blocking get that wakes on a put, all through python-consul.
#[test]
fn python_consul_kv_round_trip() {
    let a = Agent::dev(&[]);
    let (host, port) = a.addr.rsplit_once(':').unwrap();
    let script = root().join("tests/clients/kv_python_consul.py");
    let out = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(script)
        .args([host, port])
        .output()
        .expect("python3 must be installed (the test command installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python-consul checks failed (is python-consul installed? .ci/run installs it)\nstdout:\n{stdout}\nstderr:\n{stderr}\nagent log:\n{}",
        a.log_text()
    );
    assert!(stdout.contains("all checks passed"));
}

/// Sessions through python-consul: create/info/list/node, KV acquire and
/// release, lock-delay after invalidation, behavior delete, renew, TTL
/// expiry (a blocking info wakes on it), and events fire/list/blocking list.
#[test]
fn python_consul_sessions_and_events() {
    let node = "py-node";
    let a = Agent::dev(&["-node", node]);
    // Sessions link to serfHealth, which anti-entropy registers just after start.
    let c = tribune_tests::client();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !c
        .get(format!("{}/v1/health/node/{node}", a.url))
        .send()
        .and_then(|r| r.text())
        .is_ok_and(|t| t.contains("serfHealth"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "serfHealth never registered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (host, port) = a.addr.rsplit_once(':').unwrap();
    let script = root().join("tests/clients/session_python_consul.py");
    let out = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .arg(script)
        .args([host, port, node])
        .output()
        .expect("python3 must be installed (the test command installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python-consul session checks failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nagent log:\n{}",
        a.log_text()
    );
    assert!(stdout.contains("all checks passed"));
}
