//! The agent's own writes under ACLs (Consul: the agent token), against
//! three real servers and a client agent, default deny: anti-entropy
//! acting with a token that lacks node:write/service:write gets nothing
//! into the catalog and says so once ("... blocked by ACLs"), on a client
//! agent (checked by the server its write reaches) and on a follower
//! server (checked where it is proposed); after `tribune acl
//! set-agent-token agent <good>` it syncs. A write made by hand on the
//! server RPC port (`/rpc/write`, HTTP/2 as agents send it) is refused
//! without a token that allows it, and applied with one. With every
//! server down, the client keeps the rules it was last given for a token
//! (`down_policy = "extend-cache"`, the default).

use std::time::Duration;

use serde_json::{json, Value};
use tribune::state::{Command, KvCommand};
use tribune_tests::servers::{client_agent, three_servers_with};
use tribune_tests::{client, wait_for, wait_until, Agent};

const ACL: &str = r#"{"acl": {"enabled": true, "default_policy": "deny"}}"#;

fn call(a: &Agent, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = client()
        .request(m, format!("{}{path}", a.url))
        .timeout(Duration::from_secs(20))
        .header("X-Consul-Token", token);
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    match r.send() {
        Ok(r) => (r.status().as_u16(), r.text().unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

fn ok(a: &Agent, method: &str, path: &str, token: &str, body: Value) -> Value {
    let (st, text) = call(a, method, path, token, Some(body));
    assert_eq!(st, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// A token with `rules`, made with `root`.
fn token(a: &Agent, root: &str, name: &str, rules: &str) -> String {
    let p = ok(
        a,
        "PUT",
        "/v1/acl/policy",
        root,
        json!({"Name": name, "Rules": rules}),
    );
    let t = ok(
        a,
        "PUT",
        "/v1/acl/token",
        root,
        json!({"Policies": [{"ID": p["ID"]}]}),
    );
    t["SecretID"].as_str().unwrap().to_string()
}

/// How many nodes of the catalog run service `name`.
fn in_catalog(a: &Agent, root: &str, name: &str) -> usize {
    let (st, text) = call(a, "GET", &format!("/v1/catalog/service/{name}"), root, None);
    assert_eq!(st, 200, "{text}");
    serde_json::from_str::<Vec<Value>>(&text).unwrap().len()
}

fn blocked_lines(a: &Agent, what: &str) -> usize {
    a.log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(what) && l.contains("blocked by ACLs"))
        .count()
}

fn set_agent_token(a: &Agent, root: &str, secret: &str) {
    let out = a.cli(
        &["acl", "set-agent-token", "-token", root, "agent", secret],
        None,
    );
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
}

/// POST a raft command to `/rpc/write` on `rpc` (HTTP/2 prior knowledge,
/// as agents send it), with `token` in the header agents use.
fn rpc_write(rpc: &str, cmd: &Command, token: Option<&str>) -> (u16, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let body = dir.path().join("cmd.bin");
    std::fs::write(&body, bincode::serialize(cmd).unwrap()).unwrap();
    let out_file = dir.path().join("answer");
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "--http2-prior-knowledge", "-o"])
        .arg(&out_file)
        .args(["-w", "%{http_code}", "-H", "x-tribune-hops: 0"])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("http://{rpc}/rpc/write"));
    if let Some(t) = token {
        c.args(["-H", &format!("x-tribune-token: {t}")]);
    }
    let out = c.output().expect("curl");
    let code = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
    (code, std::fs::read(&out_file).unwrap_or_default())
}

fn kv_set(key: &str) -> Command {
    Command::Kv(KvCommand::Set {
        key: key.into(),
        value: b"v".to_vec(),
        flags: 0,
        cas: None,
    })
}

#[test]
fn agent_writes_need_the_agent_token() {
    let dir = tempfile::tempdir().unwrap();
    let servers = three_servers_with(dir.path(), "s", ACL);
    let conf = r#"{"acl": {"enabled": true, "default_policy": "deny"},
                   "services": [{"name": "web", "port": 80}]}"#;
    let cl = client_agent(dir.path(), "c0", &servers, conf);
    // Bootstrap wherever it is answered (a follower forwards it).
    let root: String = wait_for("ACL bootstrap", Duration::from_secs(40), || {
        let (st, text) = call(&servers[0], "PUT", "/v1/acl/bootstrap", "", None);
        (st == 200).then(|| {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["SecretID"].as_str().unwrap().to_string()
        })
    });
    let read = token(
        &servers[0],
        &root,
        "read",
        "node_prefix \"\" { policy = \"read\" }\nservice_prefix \"\" { policy = \"read\" }",
    );
    let good = token(
        &servers[0],
        &root,
        "agent",
        "node_prefix \"\" { policy = \"write\" }\nservice_prefix \"\" { policy = \"write\" }",
    );

    // No agent token (anonymous), then a read-only one: never synced,
    // said once, however many passes retry it.
    assert!(wait_until(Duration::from_secs(30), || {
        blocked_lines(&cl, "Service registration") >= 1
    }));
    set_agent_token(&cl, &root, &read);
    std::thread::sleep(Duration::from_secs(11));
    assert_eq!(in_catalog(&servers[0], &root, "web"), 0);
    assert_eq!(
        blocked_lines(&cl, "Service registration"),
        1,
        "{}",
        cl.log_text()
    );
    assert!(
        blocked_lines(&cl, "Node info update") >= 1,
        "{}",
        cl.log_text()
    );
    // The good token: synced on the next pass.
    set_agent_token(&cl, &root, &good);
    assert!(
        wait_until(Duration::from_secs(20), || in_catalog(
            &servers[0],
            &root,
            "web"
        ) == 1),
        "{}",
        cl.log_text()
    );

    // A follower server (any server: each checks its own agent's writes).
    let s1 = &servers[1];
    let (st, text) = call(
        s1,
        "PUT",
        "/v1/agent/service/register",
        &root,
        Some(json!({"Name": "api", "Port": 81})),
    );
    assert_eq!(st, 200, "{text}");
    assert!(wait_until(Duration::from_secs(20), || {
        blocked_lines(s1, "Service registration") >= 1
    }));
    assert_eq!(in_catalog(&servers[0], &root, "api"), 0);
    set_agent_token(s1, &root, &good);
    assert!(
        wait_until(Duration::from_secs(20), || in_catalog(
            &servers[0],
            &root,
            "api"
        ) == 1),
        "{}",
        s1.log_text()
    );

    // By hand on the RPC port of every server (followers check, then the
    // leader checks again): no token, a token without key:write, an
    // unknown token: 403, nothing applied; the root token: applied.
    for m in &servers {
        for t in [
            None,
            Some(read.as_str()),
            Some("00000000-0000-0000-0000-000000000000"),
        ] {
            let (code, body) = rpc_write(&m.rpc, &kv_set("rpc/denied"), t);
            assert_eq!(code, 403, "{t:?}: {}", String::from_utf8_lossy(&body));
        }
        let (code, body) = rpc_write(&m.rpc, &kv_set(&format!("rpc/{}", m.rpc)), Some(&root));
        assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    }
    let (st, _) = call(&servers[0], "GET", "/v1/kv/rpc/denied", &root, None);
    assert_eq!(st, 404);
    for m in &servers {
        let (st, _) = call(
            &servers[0],
            "GET",
            &format!("/v1/kv/rpc/{}", m.rpc),
            &root,
            None,
        );
        assert_eq!(st, 200);
    }
    // A body older or newer agents might send that this one cannot read:
    // refused cleanly, nothing applied.
    let dir2 = tempfile::tempdir().unwrap();
    let junk = dir2.path().join("junk");
    std::fs::write(&junk, [0xff_u8; 16]).unwrap();
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", junk.display()))
        .arg(format!("http://{}/rpc/write", servers[0].rpc))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "400");

    // Every server down: with down_policy's default (extend-cache) the
    // client agent keeps the rules the servers last gave for a token; a
    // token they never resolved is refused.
    let (st, text) = call(&cl, "GET", "/v1/agent/services", &read, None);
    assert!(st == 200 && text.contains("web"), "{st} {text}");
    drop(servers);
    let (st, text) = call(&cl, "GET", "/v1/agent/services", &read, None);
    assert!(
        st == 200 && text.contains("web"),
        "servers down: {st} {text}"
    );
    let unseen = "11111111-2222-4333-8444-555555555555";
    let (st, text) = call(&cl, "GET", "/v1/agent/services", unseen, None);
    assert_eq!(st, 500, "a token never resolved: {text}");
}

/// ACLs off: a hand-made write needs no token (the port is trusted at the
/// transport level, as Consul's), and agents sync with none.
#[test]
fn acls_off_writes_need_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let servers = three_servers_with(dir.path(), "s", "{}");
    let cl = client_agent(
        dir.path(),
        "c0",
        &servers,
        r#"{"services": [{"name": "web"}]}"#,
    );
    assert!(
        wait_until(Duration::from_secs(40), || {
            call(&servers[0], "GET", "/v1/catalog/service/web", "", None)
                .1
                .contains("c0")
        }),
        "{}",
        cl.log_text()
    );
    let (code, body) = rpc_write(&servers[1].rpc, &kv_set("open"), None);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(call(&servers[0], "GET", "/v1/kv/open", "", None).0, 200);
}
