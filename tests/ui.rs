//! The web UI: how the agent serves it (`-ui`, `-dev`), and the whole UI
//! driven in Debian's chromium by playwright-core (tests/ui/ui.test.mjs)
//! against a real agent. Chromium, node and `npm ci` in tests/ui are
//! installed by ./test.sh; when missing this test fails saying so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tribune_tests::{client, root, Agent};

fn header(r: &reqwest::blocking::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default()
}

fn no_redirects() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `-dev` serves the embedded UI: `/` redirects, assets carry their types
/// and validators, app routes get index.html and missing files 404.
#[test]
fn dev_agent_serves_the_ui() {
    let a = Agent::dev(&[]);
    // 301, as Consul's `/` (issue 13); `/ui` too, as Go's mux answers it.
    for p in ["/", "/ui"] {
        let r = no_redirects().get(format!("{}{p}", a.url)).send().unwrap();
        assert_eq!(r.status(), 301, "{p}");
        assert_eq!(header(&r, "location"), "/ui/", "{p}");
    }

    let c = client();
    let r = c.get(format!("{}/ui/", a.url)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&r, "cache-control"), "no-cache");
    assert!(header(&r, "content-security-policy").contains("default-src 'self'"));
    let index = r.text().unwrap();
    assert!(index.contains(r#"<script type="module" src="/ui/js/app.js">"#));

    for (path, ty) in [
        ("js/app.js", "text/javascript; charset=utf-8"),
        ("js/views/kv.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ] {
        let r = c.get(format!("{}/ui/{path}", a.url)).send().unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "content-type"), ty, "{path}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        let etag = header(&r, "etag");
        assert!(etag.starts_with('"'), "{path}: etag {etag:?}");
        let again = c
            .get(format!("{}/ui/{path}", a.url))
            .header("If-None-Match", &etag)
            .send()
            .unwrap();
        assert_eq!(again.status(), 304, "{path}");
    }

    // An app route (no file extension) is the app; a missing file is not.
    let r = c.get(format!("{}/ui/services/web", a.url)).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), index);
    // Consul's deep links are the app too, dotted names included.
    for deep in [
        "dc1/services",
        "dc1/services/redis.db/instances",
        "dc1/nodes/host.example.com/health-checks",
        "dc1/kv/app/config.json/edit",
        "dc1/kv/app/config.json",
    ] {
        let r = c.get(format!("{}/ui/{deep}", a.url)).send().unwrap();
        assert_eq!(r.status(), 200, "{deep}");
        assert_eq!(r.text().unwrap(), index, "{deep}");
    }
    for missing in ["js/nope.js", "nope.css", "js/views/../app.js.map"] {
        let r = c.get(format!("{}/ui/{missing}", a.url)).send().unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
    let r = c.head(format!("{}/ui/style.css", a.url)).send().unwrap();
    assert_eq!(r.status(), 200);

    // The summaries the list pages read are blocking queries (once the
    // server's own `consul` service is in: anti-entropy registers it just
    // after the agent starts).
    let consul_in = || {
        c.get(format!("{}/v1/catalog/service/consul", a.url))
            .send()
            .ok()
            .and_then(|r| r.json::<Vec<serde_json::Value>>().ok())
            .is_some_and(|v| !v.is_empty())
    };
    assert!(tribune_tests::wait_until(
        std::time::Duration::from_secs(10),
        consul_in
    ));
    let r = c
        .get(format!("{}/v1/internal/ui/services", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let idx = tribune_tests::index_of(&r);
    let v: serde_json::Value = r.json().unwrap();
    assert!(v.as_array().unwrap().iter().any(|s| s["Name"] == "consul"));
    let t = std::time::Instant::now();
    let r = c
        .get(format!(
            "{}/v1/internal/ui/services?index={idx}&wait=300ms",
            a.url
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // It waited its 300 ms, unless something really changed meanwhile (a
    // fresh dev agent still syncs its own checks): then the index moved.
    let moved = tribune_tests::index_of(&r) > idx;
    assert!(
        moved || t.elapsed() >= std::time::Duration::from_millis(250),
        "answered after {:?} at the same index {idx}",
        t.elapsed()
    );
    let r = c
        .get(format!("{}/v1/internal/ui/node/no-such-node", a.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}

/// Without `-ui` there is no UI, and the answer says how to turn it on.
#[test]
fn ui_is_off_without_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let a = Agent::server(dir.path(), &[]);
    let c = client();
    // `/` answers 200 as Consul's index does without a UI; the UI's paths 404.
    for (p, status) in [
        ("/", 200),
        ("/ui", 404),
        ("/ui/", 404),
        ("/ui/js/app.js", 404),
    ] {
        let r = c.get(format!("{}{p}", a.url)).send().unwrap();
        assert_eq!(r.status(), status, "{p}");
        assert!(r.text().unwrap().contains("-ui"), "{p}");
    }
    drop(a);
    let a = Agent::server(dir.path(), &["-ui"]);
    let r = c.get(format!("{}/ui/", a.url)).send().unwrap();
    assert_eq!(r.status(), 200);
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The UI in a real browser: health summary, live updates by blocking
/// queries, KV create/edit (CAS conflict)/delete, token, keyboard, phone
/// width, no console errors. Screenshots land in target/ui-artifacts/.
#[test]
fn ui_in_chromium() {
    let node = find_on_path("node")
        .expect("node is not installed: run ./test.sh (it installs nodejs) to run the UI test");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "chromium not found at {chromium}: run ./test.sh (it installs Debian's chromium)"
    );
    let dir = root().join("tests/ui");
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed: run `npm ci` in tests/ui (./test.sh does)"
    );
    let artifacts = root().join("target/ui-artifacts");

    let a = Agent::dev(&[]);
    let out = Command::new(node)
        .arg("ui.test.mjs")
        .current_dir(&dir)
        .env("TRIBUNE_HTTP_ADDR", &a.url)
        .env("CHROMIUM", &chromium)
        .env("UI_ARTIFACTS", &artifacts)
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "UI browser test failed ({}):\n{stdout}\n{stderr}\nagent log:\n{}",
        out.status,
        a.log_text()
    );
}

/// The UI with ACLs on (default deny), in chromium: the permission-denied
/// state, logging in with a token that sees only `app/`, and a management
/// token creating a policy and a token on the ACL pages.
#[test]
fn ui_acl_in_chromium() {
    let node = find_on_path("node")
        .expect("node is not installed: run ./test.sh (it installs nodejs) to run the UI test");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let dir = root().join("tests/ui");
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed: run `npm ci` in tests/ui (./test.sh does)"
    );
    let root_token = "5b2a9c1e-0000-4000-8000-00000000c0de";
    let conf = tempfile::tempdir().unwrap();
    std::fs::write(
        conf.path().join("acl.hcl"),
        format!(
            "acl {{\n enabled = true\n default_policy = \"deny\"\n tokens {{ initial_management = \"{root_token}\" }}\n}}\n"
        ),
    )
    .unwrap();
    let a = Agent::dev(&["-config-dir", conf.path().to_str().unwrap()]);
    let c = tribune_tests::client();
    let call = |method: reqwest::Method, path: &str, body: String| {
        c.request(method, format!("{}{path}", a.url))
            .header("X-Consul-Token", root_token)
            .body(body)
            .send()
            .unwrap()
    };
    assert!(tribune_tests::wait_until(Duration::from_secs(10), || {
        call(reqwest::Method::GET, "/v1/acl/token/self", String::new()).status() == 200
    }));
    for k in ["app/a", "other/b"] {
        assert_eq!(
            call(reqwest::Method::PUT, &format!("/v1/kv/{k}"), "1".into()).status(),
            200
        );
    }
    let p: serde_json::Value = call(
        reqwest::Method::PUT,
        "/v1/acl/policy",
        serde_json::json!({"Name": "app-read", "Rules": "key_prefix \"app/\" { policy = \"read\" }"})
            .to_string(),
    )
    .json()
    .unwrap();
    let t: serde_json::Value = call(
        reqwest::Method::PUT,
        "/v1/acl/token",
        serde_json::json!({"Policies": [{"ID": p["ID"]}]}).to_string(),
    )
    .json()
    .unwrap();
    let out = Command::new(node)
        .arg("acl.test.mjs")
        .current_dir(&dir)
        .env("TRIBUNE_HTTP_ADDR", &a.url)
        .env("CHROMIUM", &chromium)
        .env("ROOT_TOKEN", root_token)
        .env("APP_TOKEN", t["SecretID"].as_str().unwrap())
        .env("UI_ARTIFACTS", root().join("target/ui-artifacts"))
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ACL UI browser test failed:\n{stdout}\n{stderr}\nagent log:\n{}",
        a.log_text()
    );
}

/// A server of datacenter `dc` (with the UI), its WAN pool on `wan`,
/// retry-joining the other datacenter's at `join_wan`.
fn dc_server(dir: &Path, dc: &str, rpc: u16, wan: u16, join_wan: u16) -> Agent {
    let (rpc, wan, join) = (
        rpc.to_string(),
        wan.to_string(),
        format!("127.0.0.1:{join_wan}"),
    );
    let node = format!("server-{dc}");
    let args = [
        "-ui",
        "-datacenter",
        dc,
        "-node",
        &node,
        "-server-port",
        &rpc,
        "-serf-wan-port",
        &wan,
        "-retry-join-wan",
        &join,
        "-retry-interval-wan",
        "1s",
    ];
    Agent::server(dir, &args)
}

/// Two federated datacenters in chromium: the datacenter menu, dc2's
/// services, nodes and keys shown from dc1's UI (live), a key written and
/// deleted in dc2 from there, and a datacenter the agent has no path to.
#[test]
fn ui_datacenters_in_chromium() {
    let node = find_on_path("node")
        .expect("node is not installed: run ./test.sh (it installs nodejs) to run the UI test");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let dir = root().join("tests/ui");
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed: run `npm ci` in tests/ui (./test.sh does)"
    );
    let p = tribune_tests::free_ports(4);
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dc1 = dc_server(d1.path(), "dc1", p[0], p[1], p[3]);
    let dc2 = dc_server(d2.path(), "dc2", p[2], p[3], p[1]);
    let c = client();
    let dcs_of = |a: &Agent| {
        c.get(format!("{}/v1/catalog/datacenters", a.url))
            .send()
            .ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
    };
    assert!(
        tribune_tests::wait_until(Duration::from_secs(20), || {
            dcs_of(&dc1) == Some(serde_json::json!(["dc1", "dc2"]))
        }),
        "dc1 never saw dc2; dc1 log:\n{}",
        dc1.log_text()
    );

    // Only in dc2: a key and a service (with a passing check); a key only in dc1.
    tribune_tests::put_kv(&dc1, "only-dc1/key", "dc1's");
    let r = c
        .put(format!("{}/v1/kv/only-dc2/greeting", dc2.url))
        .body("hello from dc2")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let svc = serde_json::json!({
        "Name": "dc2-web", "ID": "dc2-web-1", "Port": 9090,
        "Check": {"CheckID": "dc2-web-ttl", "TTL": "10m", "Status": "passing"}
    });
    let r = c
        .put(format!("{}/v1/agent/service/register", dc2.url))
        .body(svc.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let in_dc2_catalog = || {
        c.get(format!("{}/v1/catalog/service/dc2-web?dc=dc2", dc1.url))
            .send()
            .ok()
            .and_then(|r| r.json::<Vec<serde_json::Value>>().ok())
            .is_some_and(|v| !v.is_empty())
    };
    assert!(tribune_tests::wait_until(
        Duration::from_secs(10),
        in_dc2_catalog
    ));

    let out = Command::new(node)
        .arg("dc.test.mjs")
        .current_dir(&dir)
        .env("DC1_ADDR", &dc1.url)
        .env("DC2_ADDR", &dc2.url)
        .env("CHROMIUM", &chromium)
        .env("UI_ARTIFACTS", root().join("target/ui-artifacts"))
        .output()
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "datacenter UI browser test failed:\n{stdout}\n{stderr}\ndc1 log:\n{}\ndc2 log:\n{}",
        dc1.log_text(),
        dc2.log_text()
    );
}
