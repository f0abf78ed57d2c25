//! ACLs against the real binary: bootstrap once, default deny, a
//! `key_prefix "app/"` token (writes, recurse filtered, a blocking query
//! not woken by keys it cannot read), whole transactions refused, service
//! registration denied, DNS hiding a service, a deleted token refused at
//! once, state surviving a restart, and python-consul / py-consul 1.5.1.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::{client, index_of, root, Agent};

const ROOT: &str = "3f1e2d4c-0000-4000-8000-00000000aaaa";

/// A config dir enabling ACLs (default deny) with `extra` inside `acl {}`.
fn acl_dir(dir: &Path, extra: &str) -> String {
    std::fs::write(
        dir.join("acl.hcl"),
        format!("acl {{\n  enabled = true\n  default_policy = \"deny\"\n  {extra}\n}}\n"),
    )
    .unwrap();
    dir.to_str().unwrap().to_string()
}

fn with_root(dir: &Path) -> String {
    acl_dir(
        dir,
        &format!("tokens {{ initial_management = \"{ROOT}\" }}"),
    )
}

/// [`with_root`], the agent acting with it too (`tokens.agent`): its
/// anti-entropy needs node:write and service:write, as in Consul.
fn with_root_agent(dir: &Path) -> String {
    acl_dir(
        dir,
        &format!("tokens {{\n initial_management = \"{ROOT}\"\n agent = \"{ROOT}\"\n}}"),
    )
}

/// The leader creates the initial management token just after it takes
/// office: wait for it.
fn wait_root(a: &Agent) {
    let ok = tribune_tests::wait_until(Duration::from_secs(10), || {
        call(a, "GET", "/v1/acl/token/self", Some(ROOT), None).status() == 200
    });
    assert!(
        ok,
        "the initial management token never worked; log:\n{}",
        a.log_text()
    );
}

/// An authenticated request (`X-Consul-Token`).
fn call(
    a: &Agent,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::blocking::Response {
    let c = client();
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = c.request(m, format!("{}{path}", a.url));
    if let Some(t) = token {
        r = r.header("X-Consul-Token", t);
    }
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    r.send().unwrap()
}

fn ok_json(r: reqwest::blocking::Response) -> Value {
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// A policy and a token holding it; returns the token's secret.
fn token_with(a: &Agent, name: &str, rules: &str) -> (String, String) {
    let p = ok_json(call(
        a,
        "PUT",
        "/v1/acl/policy",
        Some(ROOT),
        Some(json!({"Name": name, "Rules": rules})),
    ));
    let t = ok_json(call(
        a,
        "PUT",
        "/v1/acl/token",
        Some(ROOT),
        Some(json!({"Policies": [{"ID": p["ID"]}], "Description": name})),
    ));
    (
        t["SecretID"].as_str().unwrap().to_string(),
        t["AccessorID"].as_str().unwrap().to_string(),
    )
}

/// Bootstrap works once (then 403 with Consul's text naming the reset
/// index); the anonymous token may neither read nor write KV.
#[test]
fn bootstrap_once_and_default_deny() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::dev(&["-config-dir", &acl_dir(dir.path(), "")]);
    let r = call(&a, "PUT", "/v1/acl/bootstrap", None, None);
    let boot = ok_json(r);
    let secret = boot["SecretID"].as_str().unwrap();
    assert_eq!(boot["Policies"][0]["Name"], "global-management");
    let again = call(&a, "PUT", "/v1/acl/bootstrap", None, None);
    assert_eq!(again.status(), 403);
    let text = again.text().unwrap();
    assert!(
        text.starts_with("Permission denied: ACL bootstrap no longer allowed (reset index: "),
        "{text}"
    );
    let r = call(&a, "PUT", "/v1/kv/app/x", None, Some(json!(1)));
    assert_eq!(r.status(), 403);
    // Consul 1.12's text: what the token lacks, on what.
    assert_eq!(
        r.text().unwrap(),
        "Permission denied: provided token lacks permission 'key:write' on \"app/x\""
    );
    assert_eq!(call(&a, "GET", "/v1/kv/app/x", None, None).status(), 403);
    // The bootstrap token manages everything; an unknown one is refused.
    assert_eq!(
        call(&a, "PUT", "/v1/kv/app/x", Some(secret), Some(json!(1))).status(),
        200
    );
    let r = call(&a, "GET", "/v1/kv/app/x", Some("not-a-token"), None);
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().unwrap(), "ACL not found");
    let me = ok_json(call(&a, "GET", "/v1/acl/token/self", Some(secret), None));
    assert_eq!(me["AccessorID"], boot["AccessorID"]);
    // A policy whose rules do not parse is refused with the reason.
    let bad = call(
        &a,
        "PUT",
        "/v1/acl/policy",
        Some(secret),
        Some(json!({"Name": "bad", "Rules": "key_prefix \"a\" { policy = \"admin\" }"})),
    );
    assert_eq!(bad.status(), 400);
    assert!(bad.text().unwrap().contains("invalid access level"));
}

/// The issue's scenario: `key_prefix "app/" { policy = "write" }`.
#[test]
fn prefix_token_writes_reads_and_blocks_only_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::dev(&["-config-dir", &with_root(dir.path())]);
    wait_root(&a);
    let (tok, _) = token_with(&a, "app", r#"key_prefix "app/" { policy = "write" }"#);
    let put = |k: &str, t: &str| call(&a, "PUT", &format!("/v1/kv/{k}"), Some(t), Some(json!(1)));
    assert_eq!(put("app/x", &tok).status(), 200);
    let denied = put("other/x", &tok);
    assert_eq!(denied.status(), 403);
    // Nothing was written.
    assert_eq!(
        call(&a, "GET", "/v1/kv/other/x", Some(ROOT), None).status(),
        404
    );
    assert_eq!(put("other/x", ROOT).status(), 200);
    assert_eq!(
        call(&a, "GET", "/v1/kv/other/x", Some(&tok), None).status(),
        403
    );
    // Recurse of the root: only app/, and the header says so.
    let r = call(&a, "GET", "/v1/kv/?recurse", Some(&tok), None);
    assert_eq!(
        r.headers()["x-consul-results-filtered-by-acls"],
        "true",
        "filtered header"
    );
    let index = index_of(&r);
    let list = ok_json(r);
    let keys: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["app/x"]);
    let r = call(&a, "GET", "/v1/kv/?keys", Some(&tok), None);
    assert_eq!(ok_json(r), json!(["app/x"]));
    // A management token sees everything, unfiltered.
    let r = call(&a, "GET", "/v1/kv/?recurse", Some(ROOT), None);
    assert!(r
        .headers()
        .get("x-consul-results-filtered-by-acls")
        .is_none());
    // A blocking recurse on the root is not woken by other/y ...
    let url = format!("/v1/kv/?recurse&index={index}&wait=3s");
    let waiter = {
        let (u, t, base) = (url.clone(), tok.clone(), a.url.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let r = client()
                .get(format!("{base}{u}"))
                .header("X-Consul-Token", t)
                .send()
                .unwrap();
            (start.elapsed(), index_of(&r))
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(put("other/y", ROOT).status(), 200);
    let (took, got) = waiter.join().unwrap();
    assert!(took >= Duration::from_millis(2900), "woken after {took:?}");
    assert_eq!(got, index, "the index it sees did not move");
    // ... but is by app/z.
    let waiter = {
        let (u, t, base) = (url, tok.clone(), a.url.clone());
        std::thread::spawn(move || {
            let start = Instant::now();
            let r = client()
                .get(format!("{base}{u}"))
                .header("X-Consul-Token", t)
                .send()
                .unwrap();
            (start.elapsed(), index_of(&r))
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(put("app/z", ROOT).status(), 200);
    let (took, got) = waiter.join().unwrap();
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(got > index);
    // A transaction with one denied operation is refused whole.
    let txn = json!([
        {"KV": {"Verb": "set", "Key": "app/t1", "Value": "MQ=="}},
        {"KV": {"Verb": "set", "Key": "other/t1", "Value": "MQ=="}}
    ]);
    assert_eq!(
        call(&a, "PUT", "/v1/txn", Some(&tok), Some(txn)).status(),
        403
    );
    assert_eq!(
        call(&a, "GET", "/v1/kv/app/t1", Some(ROOT), None).status(),
        404
    );
    // A recursive delete that would reach keys it may not write is refused.
    assert_eq!(
        call(&a, "DELETE", "/v1/kv/?recurse", Some(&tok), None).status(),
        403
    );
}

/// A blocking read started with `token` at `index` (wait 3 s), timed.
fn blocking(
    a: &Agent,
    path: &str,
    index: u64,
    token: &str,
) -> std::thread::JoinHandle<(Duration, u64, Value)> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let url = format!("{}{path}{sep}index={index}&wait=3s", a.url);
    let t = token.to_string();
    std::thread::spawn(move || {
        let start = Instant::now();
        let r = client()
            .get(url)
            .header("X-Consul-Token", t)
            .send()
            .unwrap();
        let i = index_of(&r);
        (start.elapsed(), i, r.json().unwrap())
    })
}

/// Catalog, health and session blocking queries, like KV's, wake a
/// filtering token only when what it may read changes: a service, check
/// or session it cannot see leaves it parked (answered at `wait`'s end
/// with the same body), one it can see wakes it at once.
#[test]
fn blocking_catalog_health_sessions_wake_only_on_visible_changes() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::dev(&["-config-dir", &with_root_agent(dir.path()), "-node", "n1"]);
    wait_root(&a);
    let rules = "service \"web\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }\nsession \"n1\" { policy = \"read\" }";
    let (tok, _) = token_with(&a, "web-reader", rules);
    let root = |m: &str, p: &str, b: Value| {
        let r = call(&a, m, p, Some(ROOT), Some(b));
        assert_eq!(r.status(), 200, "{m} {p}: {}", r.text().unwrap());
    };
    root(
        "PUT",
        "/v1/catalog/register",
        json!({"Node": "other", "Address": "10.0.0.9"}),
    );
    let paths = [
        "/v1/catalog/services",
        "/v1/health/state/any",
        "/v1/session/list",
    ];
    let now = |p: &str| {
        let r = call(&a, "GET", p, Some(&tok), None);
        (index_of(&r), ok_json(r))
    };
    let before: Vec<(u64, Value)> = paths.iter().map(|p| now(p)).collect();
    // One round: a waiter per path from `indexes`, then service `svc`
    // (with a check) on node other and a session of node `owner`.
    let round = |indexes: Vec<u64>, svc: &str, owner: &str| {
        let waiters: Vec<_> = paths
            .iter()
            .zip(indexes)
            .map(|(p, i)| blocking(&a, p, i, &tok))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        root(
            "PUT",
            "/v1/catalog/register",
            json!({"Node": "other", "Address": "10.0.0.9",
            "Service": {"Service": svc, "Port": 80},
            "Check": {"Name": format!("{svc} up"), "Status": "passing", "ServiceID": svc}}),
        );
        root(
            "PUT",
            "/v1/session/create",
            json!({"Node": owner, "Checks": []}),
        );
        waiters
            .into_iter()
            .map(|w| w.join().unwrap())
            .collect::<Vec<_>>()
    };
    // Invisible to the token: service db, its check, a session of node other.
    let answers = round(before.iter().map(|(i, _)| *i).collect(), "db", "other");
    let mut after = Vec::new();
    for ((p, (took, index, got)), (_, body)) in paths.iter().zip(answers).zip(&before) {
        assert!(
            took >= Duration::from_millis(2900),
            "{p} woken after {took:?}: {got}"
        );
        assert_eq!(&got, body, "{p}: the token sees the same answer");
        after.push(index);
    }
    // Visible: service web with a check, a session of n1.
    for (p, (took, _, got)) in paths.iter().zip(round(after, "web", "n1")) {
        assert!(took < Duration::from_millis(2500), "{p} took {took:?}");
        let want = if p.contains("session") { "n1" } else { "web" };
        assert!(got.to_string().contains(want), "{p}: {got}");
    }
}

/// Service registration needs `service:write`; DNS answers (prepared
/// queries included) with the agent's default token, hiding what it may
/// not read.
#[test]
fn service_write_and_dns_hiding() {
    let dir = tempfile::tempdir().unwrap();
    let (a, dns) = Agent::dev_dns(&["-config-dir", &with_root_agent(dir.path())]);
    wait_root(&a);
    let svc = json!({"Name": "web", "Port": 80});
    let r = call(
        &a,
        "PUT",
        "/v1/agent/service/register",
        None,
        Some(svc.clone()),
    );
    assert_eq!(r.status(), 403);
    let (tok, _) = token_with(&a, "web", r#"service "web" { policy = "write" }"#);
    let r = call(
        &a,
        "PUT",
        "/v1/agent/service/register",
        Some(&tok),
        Some(svc),
    );
    assert_eq!(r.status(), 200);
    let r = call(
        &a,
        "PUT",
        "/v1/agent/service/register",
        Some(&tok),
        Some(json!({"Name": "db", "Port": 5432})),
    );
    assert_eq!(r.status(), 403);
    let c = client();
    let synced = tribune_tests::wait_until(Duration::from_secs(10), || {
        c.get(format!("{}/v1/catalog/service/web", a.url))
            .header("X-Consul-Token", ROOT)
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_some_and(|v| v.as_array().is_some_and(|l| !l.is_empty()))
    });
    assert!(synced, "web never reached the catalog:\n{}", a.log_text());
    // The anonymous token (the default) may not read it: NXDOMAIN, and the
    // catalog list leaves it out.
    let dig = |name: &str| {
        let out = Command::new("dig")
            .args(["@127.0.0.1", "-p", &dns.to_string(), "+time=2", "+tries=1"])
            .arg(name)
            .output()
            .expect("dig must be installed (test.sh installs dnsutils)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = dig("web.service.consul");
    assert!(out.contains("NXDOMAIN"), "{out}");
    // A prepared query runs with that token too: nothing it may see.
    let r = call(
        &a,
        "POST",
        "/v1/query",
        Some(ROOT),
        Some(json!({"Name": "webq", "Service": {"Service": "web"}})),
    );
    assert_eq!(r.status(), 200);
    let out = dig("webq.query.consul");
    assert!(out.contains("NXDOMAIN"), "{out}");
    let r = call(&a, "GET", "/v1/catalog/services", None, None);
    assert_eq!(r.headers()["x-consul-results-filtered-by-acls"], "true");
    assert_eq!(ok_json(r), json!({}));
    // With a default token that reads services, DNS answers.
    let (reader, _) = token_with(
        &a,
        "reader",
        "service_prefix \"\" { policy = \"read\" }\nnode_prefix \"\" { policy = \"read\" }",
    );
    let r = call(
        &a,
        "PUT",
        "/v1/agent/token/default",
        Some(ROOT),
        Some(json!({"Token": reader})),
    );
    assert_eq!(r.status(), 200);
    let out = dig("web.service.consul");
    assert!(
        out.contains("status: NOERROR") && out.contains("ANSWER: 1"),
        "{out}"
    );
    let out = dig("webq.query.consul");
    assert!(
        out.contains("status: NOERROR") && out.contains("ANSWER: 1"),
        "{out}"
    );
}

/// A deleted token is refused from the next request on; tokens, policies
/// and the bootstrap survive a restart of a durable server.
#[test]
fn deleted_token_refused_and_state_survives_restart() {
    let data = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let cfg = with_root(conf.path());
    let (tok, accessor) = {
        let a = Agent::server(data.path(), &["-config-dir", &cfg]);
        wait_root(&a);
        let (tok, accessor) = token_with(&a, "app", r#"key_prefix "app/" { policy = "write" }"#);
        let (gone, gone_acc) = token_with(&a, "gone", r#"key_prefix "" { policy = "read" }"#);
        assert_eq!(call(&a, "GET", "/v1/kv/x", Some(&gone), None).status(), 404);
        // A warm agent-cache entry of the token ...
        let cached = |t: &str| call(&a, "GET", "/v1/catalog/services?cached", Some(t), None);
        assert_eq!(cached(&gone).status(), 200);
        let r = cached(&gone);
        assert_eq!(r.headers()["x-cache"], "HIT");
        let d = call(
            &a,
            "DELETE",
            &format!("/v1/acl/token/{gone_acc}"),
            Some(ROOT),
            None,
        );
        assert_eq!(ok_json(d), json!(true));
        let r = call(&a, "GET", "/v1/kv/x", Some(&gone), None);
        assert_eq!(r.status(), 403);
        assert_eq!(r.text().unwrap(), "ACL not found");
        // ... answers it no more: the token is resolved before the cache.
        let r = cached(&gone);
        assert_eq!(r.status(), 403);
        assert_eq!(r.text().unwrap(), "ACL not found");
        (tok, accessor)
    };
    let a = Agent::server(data.path(), &["-config-dir", &cfg]);
    wait_root(&a);
    assert_eq!(
        call(&a, "PUT", "/v1/kv/app/after", Some(&tok), Some(json!(1))).status(),
        200
    );
    let t = ok_json(call(
        &a,
        "GET",
        &format!("/v1/acl/token/{accessor}"),
        Some(ROOT),
        None,
    ));
    assert_eq!(t["Policies"][0]["Name"], "app");
    // initial_management counted as the bootstrap.
    assert_eq!(
        call(&a, "PUT", "/v1/acl/bootstrap", None, None).status(),
        403
    );
    // Lists need acl:read; the app token has none.
    assert_eq!(
        call(&a, "GET", "/v1/acl/tokens", Some(&tok), None).status(),
        403
    );
    let list = ok_json(call(&a, "GET", "/v1/acl/tokens", Some(ROOT), None));
    assert!(list.as_array().unwrap().len() >= 3, "{list}");
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

fn run_py(script: &str, args: &[&str], pythonpath: Option<&Path>) -> String {
    let mut cmd = Command::new(python());
    cmd.arg(root().join("tests/clients").join(script))
        .args(args);
    if let Some(p) = pythonpath {
        cmd.env("PYTHONPATH", p);
    }
    let out = cmd.output().expect("python3 must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// python-consul (X-Consul-Token) and py-consul 1.5.1 (`?token=`, its
/// ACL token and policy API) against the same agent.
#[test]
fn python_clients_acl() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::dev(&["-config-dir", &with_root(dir.path())]);
    wait_root(&a);
    let (host, port) = a.addr.rsplit_once(':').unwrap();
    let (tok, _) = token_with(&a, "app", r#"key_prefix "app/" { policy = "write" }"#);
    let out = run_py("acl_python_consul.py", &[host, port, &tok], None);
    assert!(out.contains("all checks passed"));
    // py-consul shares python-consul's module name: its own directory.
    let lib = root().join("target/py-consul-1.5.1");
    if !lib.join("consul").exists() {
        let st = Command::new(python())
            .args(["-m", "pip", "install", "-q", "--no-deps", "--target"])
            .arg(&lib)
            .arg("py-consul==1.5.1")
            .status()
            .expect("pip");
        assert!(st.success(), "installing py-consul 1.5.1 failed");
    }
    let out = run_py("acl_py_consul.py", &[host, port, ROOT], Some(&lib));
    assert!(out.contains("all checks passed"));
}

/// tribune-template with a token (`-consul-token`, and CONSUL_HTTP_TOKEN)
/// renders what the token may read; without one it is refused.
#[test]
fn template_runner_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::dev(&["-config-dir", &with_root(dir.path())]);
    wait_root(&a);
    let (tok, _) = token_with(&a, "tmpl", r#"key_prefix "app/" { policy = "read" }"#);
    assert_eq!(
        call(&a, "PUT", "/v1/kv/app/port", Some(ROOT), Some(json!(8080))).status(),
        200
    );
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("t")).unwrap();
    std::fs::write(w.join("t/p.tmpl"), "p={{getv \"/app/port\"}}\n").unwrap();
    let args = [
        "-once",
        "-node",
        &a.addr,
        "-template",
        "t/p.tmpl:out/p.conf",
    ];
    let out = tribune_tests::run_renderer(w, &args, &[]);
    assert_ne!(out.code, 0, "rendered without a token: {}", out.stdout);
    assert!(!w.join("out/p.conf").exists());
    let mut with = args.to_vec();
    with.extend(["-consul-token", &tok]);
    let out = tribune_tests::run_renderer(w, &with, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(w.join("out/p.conf")).unwrap(),
        "p=8080\n"
    );
    std::fs::remove_file(w.join("out/p.conf")).unwrap();
    let out = tribune_tests::run_renderer(w, &args, &[("CONSUL_HTTP_TOKEN", &tok)]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(w.join("out/p.conf")).unwrap(),
        "p=8080\n"
    );
}

/// A token sent in the URL never reaches the log, at any level.
#[test]
fn token_in_url_is_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::dev(&["-config-dir", &with_root(dir.path()), "-log-level", "trace"]);
    wait_root(&a);
    let (tok, _) = token_with(&a, "app", r#"key_prefix "app/" { policy = "write" }"#);
    let c = client();
    for path in ["/v1/kv/app/x", "/v1/kv/other/x", "/v1/kv/?recurse"] {
        let url = format!(
            "{}{path}{}token={tok}",
            a.url,
            if path.contains('?') { "&" } else { "?" }
        );
        c.put(&url).body("1").send().unwrap();
        c.get(&url).send().unwrap();
    }
    c.get(format!("{}/v1/kv/x?token=not-a-real-secret-123", a.url))
        .send()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let log = a.log_text();
    assert!(!log.contains(&tok), "the secret is in the log");
    assert!(!log.contains(ROOT), "the management secret is in the log");
    assert!(!log.contains("not-a-real-secret-123"));
}

fn field_of(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
}

/// The ACL commands, as Consul's: bootstrap (once), policy create from a
/// rules file, token create by policy name, `-token` and
/// CONSUL_HTTP_TOKEN, read -self, list, delete, set-agent-token.
#[test]
fn acl_cli() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::dev(&["-config-dir", &acl_dir(dir.path(), "")]);
    let cli = |args: &[&str]| tribune_tests::run_cli(&a.addr, args, None);
    // The anonymous token may not be created yet: bootstrap retries.
    let mut out = cli(&["acl", "bootstrap"]);
    for _ in 0..50 {
        if out.code == 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        out = cli(&["acl", "bootstrap"]);
    }
    assert_eq!(out.code, 0, "{}", out.stderr);
    let root = field_of(&out.stdout, "SecretID:");
    assert!(out
        .stdout
        .contains("   00000000-0000-0000-0000-000000000001 - global-management"));
    let again = cli(&["acl", "bootstrap"]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("Failed ACL bootstrapping: Unexpected response code: 403 (Permission denied: ACL bootstrap no longer allowed"),
        "{}",
        again.stderr
    );
    let rules = dir.path().join("app.hcl");
    std::fs::write(&rules, "key_prefix \"app/\" { policy = \"write\" }\n").unwrap();
    let rules_arg = format!("@{}", rules.display());
    let out = cli(&[
        "acl", "policy", "create", "-token", &root, "-name", "app", "-rules", &rules_arg,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(field_of(&out.stdout, "Name:"), "app");
    let out = cli(&[
        "acl",
        "token",
        "create",
        "-token",
        &root,
        "-description",
        "cli",
        "-policy-name",
        "app",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let secret = field_of(&out.stdout, "SecretID:");
    let accessor = field_of(&out.stdout, "AccessorID:");
    let out = cli(&["kv", "put", "-token", &secret, "app/x", "1"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = cli(&["kv", "put", "-token", &secret, "other/x", "1"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    // CONSUL_HTTP_TOKEN, as every Consul command reads it.
    let env = std::process::Command::new(tribune_tests::bin("tribune"))
        .args(["acl", "token", "read", "-self"])
        .env("CONSUL_HTTP_ADDR", &a.addr)
        .env("CONSUL_HTTP_TOKEN", &secret)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&env.stdout);
    assert!(env.status.success(), "{stdout}");
    assert_eq!(field_of(&stdout, "AccessorID:"), accessor);
    let out = cli(&["acl", "policy", "list", "-token", &root]);
    assert!(out.stdout.contains("app:\n   ID:"), "{}", out.stdout);
    let out = cli(&["acl", "token", "list", "-token", &root, "-format", "json"]);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(list.as_array().unwrap().len() >= 3);
    let out = cli(&[
        "acl",
        "set-agent-token",
        "-token",
        &root,
        "default",
        &secret,
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "ACL token \"default\" set successfully");
    // Requests without a token now act with it.
    assert_eq!(cli(&["kv", "put", "app/y", "1"]).code, 0);
    let out = cli(&["acl", "token", "delete", "-token", &root, "-id", &accessor]);
    assert_eq!(
        out.stdout.trim(),
        format!("Token \"{accessor}\" deleted successfully")
    );
    let out = cli(&["kv", "put", "-token", &secret, "app/z", "1"]);
    assert_ne!(out.code, 0);
}

/// `enable_token_persistence`: a default token set through the API is
/// still the default after a restart.
#[test]
fn agent_token_persists_across_restart() {
    let data = tempfile::tempdir().unwrap();
    let conf = tempfile::tempdir().unwrap();
    let cfg = acl_dir(
        conf.path(),
        &format!("enable_token_persistence = true\n  tokens {{ initial_management = \"{ROOT}\" }}"),
    );
    let tok = {
        let a = Agent::server(data.path(), &["-config-dir", &cfg]);
        wait_root(&a);
        let (tok, _) = token_with(&a, "app", r#"key_prefix "app/" { policy = "write" }"#);
        let r = call(
            &a,
            "PUT",
            "/v1/agent/token/default",
            Some(ROOT),
            Some(json!({"Token": tok})),
        );
        assert_eq!(r.status(), 200);
        assert_eq!(
            call(&a, "PUT", "/v1/kv/app/a", None, Some(json!(1))).status(),
            200
        );
        tok
    };
    let file = data.path().join("acl-tokens.json");
    let saved = std::fs::read_to_string(&file).unwrap();
    assert!(saved.contains(&tok));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the token file is readable by others");
    let a = Agent::server(data.path(), &["-config-dir", &cfg]);
    wait_root(&a);
    assert_eq!(
        call(&a, "PUT", "/v1/kv/app/b", None, Some(json!(1))).status(),
        200
    );
    assert_eq!(
        call(&a, "PUT", "/v1/kv/other/b", None, Some(json!(1))).status(),
        403
    );
}

/// `/v1/operator/keyring` takes `keyring:read` to list and `keyring:write`
/// to change (Consul's rule; it was management-only, unclassified).
#[test]
fn keyring_needs_keyring_rules() {
    let dir = tempfile::tempdir().unwrap();
    // Any 32 bytes, base64: the dev agent's gossip key.
    let key = "pUqJrVyVRj5jsiYEkM/tFQYfWyJIv4s3XkvDwy7Cu5s=";
    let a = Agent::dev(&["-config-dir", &with_root(dir.path()), "-encrypt", key]);
    wait_root(&a);
    let (reader, _) = token_with(&a, "keyring-read", r#"keyring = "read""#);
    let (writer, _) = token_with(&a, "keyring-write", r#"keyring = "write""#);
    let path = "/v1/operator/keyring";
    assert_eq!(call(&a, "GET", path, None, None).status(), 403);
    let r = call(&a, "GET", path, Some(&reader), None);
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains(key));
    let body = json!({ "Key": key });
    let r = call(&a, "PUT", path, Some(&reader), Some(body.clone()));
    assert_eq!(r.status(), 403);
    let r = call(&a, "PUT", path, Some(&writer), Some(body));
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
}

/// Prepared queries need `query` rules on their name (a nameless one a
/// management token), lists are filtered, a Token is `<hidden>` without
/// write; coordinate updates need node:write on the body's node, reads
/// node:read.
#[test]
fn query_and_coordinate_rules() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::dev(&[
        "-node",
        "acl-n",
        "-config-dir",
        &with_root_agent(dir.path()),
    ]);
    wait_root(&a);
    let (w, _) = token_with(&a, "qw", r#"query_prefix "web-" { policy = "write" }"#);
    let (r, _) = token_with(&a, "qr", r#"query_prefix "" { policy = "read" }"#);
    let def =
        |name: &str| json!({"Name": name, "Token": "stored-secret", "Service": {"Service": "web"}});
    assert_eq!(
        call(&a, "POST", "/v1/query", None, Some(def("web-1"))).status(),
        403
    );
    assert_eq!(
        call(&a, "POST", "/v1/query", Some(&w), Some(def("db-1"))).status(),
        403
    );
    assert_eq!(
        call(
            &a,
            "POST",
            "/v1/query",
            Some(&w),
            Some(json!({"Service": {"Service": "web"}}))
        )
        .status(),
        403
    );
    assert_eq!(
        call(&a, "POST", "/v1/query", Some(&r), Some(def("web-2"))).status(),
        403
    );
    let id = ok_json(call(&a, "POST", "/v1/query", Some(&w), Some(def("web-1"))))["ID"]
        .as_str()
        .unwrap()
        .to_string();
    ok_json(call(&a, "POST", "/v1/query", Some(ROOT), Some(def("db-1"))));
    // The writer sees its query's Token; a reader sees it hidden.
    let mine = ok_json(call(&a, "GET", &format!("/v1/query/{id}"), Some(&w), None));
    assert_eq!(mine[0]["Token"], "stored-secret");
    let theirs = ok_json(call(&a, "GET", &format!("/v1/query/{id}"), Some(&r), None));
    assert_eq!(theirs[0]["Token"], "<hidden>");
    // Lists hold only what the token may read.
    let names = |v: Value| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["Name"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(
        names(ok_json(call(&a, "GET", "/v1/query", Some(&w), None))),
        ["web-1"]
    );
    assert_eq!(
        names(ok_json(call(&a, "GET", "/v1/query", Some(&r), None))),
        ["db-1", "web-1"]
    );
    assert_eq!(
        names(ok_json(call(&a, "GET", "/v1/query", None, None))),
        Vec::<String>::new()
    );
    assert_eq!(
        call(&a, "DELETE", &format!("/v1/query/{id}"), Some(&r), None).status(),
        403
    );
    assert_eq!(
        call(&a, "DELETE", &format!("/v1/query/{id}"), Some(&w), None).status(),
        200
    );

    let mut v = vec![0.0; 8];
    v[0] = 0.001;
    let body = json!({"Node": "acl-n", "Coord": {"Vec": v, "Error": 0.5, "Adjustment": 0.0, "Height": 0.0001}});
    assert_eq!(
        call(
            &a,
            "PUT",
            "/v1/coordinate/update",
            Some(&r),
            Some(body.clone())
        )
        .status(),
        403
    );
    let (nw, _) = token_with(&a, "nw", r#"node "acl-n" { policy = "write" }"#);
    assert_eq!(
        call(&a, "PUT", "/v1/coordinate/update", Some(&nw), Some(body)).status(),
        200
    );
    let found = tribune_tests::wait_until(Duration::from_secs(10), || {
        call(&a, "GET", "/v1/coordinate/node/acl-n", Some(&nw), None).status() == 200
    });
    assert!(found);
    assert_eq!(
        call(&a, "GET", "/v1/coordinate/node/acl-n", None, None).status(),
        403
    );
    let all = ok_json(call(&a, "GET", "/v1/coordinate/nodes", None, None));
    assert_eq!(all, json!([]));
}
