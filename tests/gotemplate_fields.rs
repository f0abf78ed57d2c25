//! consul-template's data shapes through the real `tribune-template`
//! against a real `tribune agent -dev`: KV pairs with their indexes, flags
//! and session; service, node, nodes and services with consul-template's
//! fields; `@dc` sent as `?dc=`; `~near` keeping the agent's order;
//! `toJSON`/`toYAML`/`toTOML` of that data as consul-template prints it;
//! `retry { attempts }` bounding retries; `ssl { server_name }` applied
//! through a real TLS endpoint, and ssl settings on plain http warned about.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tribune_tests::{client, put_kv, run_renderer, tls, wait_until, Agent, CliOutput, Renderer};

fn get(a: &Agent, path: &str) -> Value {
    client()
        .get(format!("{}{path}", a.url))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// Render `tmpl` once with `-template` against `a`; the output file's text.
fn render_once(a: &Agent, tmpl: &str, extra: &[&str]) -> (CliOutput, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.ctmpl"), tmpl).unwrap();
    let mut args = vec![
        "-once",
        "-consul-addr",
        &a.addr,
        "-template",
        "in.ctmpl:out.txt",
    ];
    args.extend(extra);
    let out = run_renderer(dir.path(), &args, &[]);
    let text = std::fs::read_to_string(dir.path().join("out.txt")).unwrap_or_default();
    (out, text)
}

/// `tree`/`ls`/`safeLs`/`safeTree` pairs carry consul-template's `KeyPair`
/// fields with the agent's values: indexes, flags, and the session holding
/// a lock.
#[test]
fn kv_pairs_have_keypair_fields() {
    let a = Agent::dev(&["-node", "kv1"]);
    a.wait_serf_health();
    let r = client()
        .put(format!("{}/v1/kv/x/a?flags=42", a.url))
        .body("one")
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "true");
    put_kv(&a, "x/sub/b", "two");
    let session: Value = client()
        .put(format!("{}/v1/session/create", a.url))
        .json(&json!({"Name": "t"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let session = session["ID"].as_str().unwrap().to_string();
    let r = client()
        .put(format!("{}/v1/kv/x/lock?acquire={session}", a.url))
        .body("held")
        .send()
        .unwrap();
    assert_eq!(r.text().unwrap(), "true");
    let raw = get(&a, "/v1/kv/x?recurse");
    let by_key = |k: &str| {
        raw.as_array()
            .unwrap()
            .iter()
            .find(|e| e["Key"] == k)
            .unwrap()
            .clone()
    };
    let (xa, xb, xl) = (by_key("x/a"), by_key("x/sub/b"), by_key("x/lock"));
    assert_eq!(xl["LockIndex"], 1);
    assert_eq!(xa["Flags"], 42);
    let tmpl = "{{ range tree \"x\" }}{{ .Key }} {{ .Path }} {{ .CreateIndex }} {{ .ModifyIndex }} {{ .LockIndex }} {{ .Flags }} {{ .Session }} |\n{{ end }}\
                {{ range ls \"x\" }}ls {{ .Key }} {{ .ModifyIndex }} {{ .Flags }}\n{{ end }}\
                {{ range safeTree \"x/sub\" }}safeTree {{ .Key }} {{ .ModifyIndex }}\n{{ end }}\
                {{ range safeLs \"x\" }}safeLs {{ .Key }} {{ .LockIndex }}\n{{ end }}";
    let (out, text) = render_once(&a, tmpl, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want_tree = |e: &Value, rel: &str| {
        format!(
            "{rel} {} {} {} {} {} {} |\n",
            e["Key"].as_str().unwrap(),
            e["CreateIndex"],
            e["ModifyIndex"],
            e["LockIndex"],
            e["Flags"],
            e["Session"].as_str().unwrap_or("")
        )
    };
    let want = format!(
        "{}{}{}ls a {} 42\nls lock {} 0\nsafeTree b {}\nsafeLs a 0\nsafeLs lock 1\n",
        want_tree(&xa, "a"),
        want_tree(&xl, "lock"),
        want_tree(&xb, "sub/b"),
        xa["ModifyIndex"],
        xl["ModifyIndex"],
        xb["ModifyIndex"],
    );
    assert_eq!(text, want);
    assert!(text.contains(&session), "{text}");
}

/// `toJSON`, `toYAML` and `toTOML` of KV pairs print like consul-template:
/// `KeyPair`'s field order (yaml.v2 lowercasing the names), Go's quoting.
#[test]
fn encoders_print_keypairs_like_consul_template() {
    let a = Agent::dev(&["-node", "enc1"]);
    put_kv(&a, "e/one", "1");
    put_kv(&a, "e/two", "<b>");
    let raw = get(&a, "/v1/kv/e?recurse");
    let idx = |k: &str, f: &str| {
        raw.as_array()
            .unwrap()
            .iter()
            .find(|e| e["Key"] == k)
            .unwrap()[f]
            .as_u64()
            .unwrap()
    };
    let (c1, m1, c2, m2) = (
        idx("e/one", "CreateIndex"),
        idx("e/one", "ModifyIndex"),
        idx("e/two", "CreateIndex"),
        idx("e/two", "ModifyIndex"),
    );
    let tmpl = "{{ ls \"e\" | toJSON }}\n---\n{{ ls \"e\" | toYAML }}\n---\n{{ toTOML (parseJSON `{\"name\":\"web\",\"port\":80,\"upstream\":{\"addr\":\"10.0.0.1\",\"tls\":{\"on\":true}},\"servers\":[{\"n\":\"a\"},{\"n\":\"b\"}]}`) }}\n";
    let (out, text) = render_once(&a, tmpl, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want = format!(
        concat!(
            r#"[{{"Path":"e/one","Key":"one","Value":"1","CreateIndex":{c1},"ModifyIndex":{m1},"LockIndex":0,"Flags":0,"Session":""}},"#,
            r#"{{"Path":"e/two","Key":"two","Value":"\u003cb\u003e","CreateIndex":{c2},"ModifyIndex":{m2},"LockIndex":0,"Flags":0,"Session":""}}]"#,
            "\n---\n",
            "- path: e/one\n  key: one\n  value: \"1\"\n  createindex: {c1}\n  modifyindex: {m1}\n  lockindex: 0\n  flags: 0\n  session: \"\"\n",
            "- path: e/two\n  key: two\n  value: <b>\n  createindex: {c2}\n  modifyindex: {m2}\n  lockindex: 0\n  flags: 0\n  session: \"\"\n",
            "---\n",
            "name = \"web\"\nport = 80\n\n[[servers]]\n  n = \"a\"\n\n[[servers]]\n  n = \"b\"\n\n[upstream]\n  addr = \"10.0.0.1\"\n  [upstream.tls]\n    on = true\n",
        ),
        c1 = c1,
        m1 = m1,
        c2 = c2,
        m2 = m2
    );
    assert_eq!(text, want);
}

/// `service` instances carry consul-template's `HealthService` fields with
/// the agent's data (tags sorted); `services "@dc1"`, `nodes "@dc1"` and
/// `node` carry `CatalogSnippet`, `Node` and `CatalogNode`'s.
#[test]
fn catalog_fields_like_consul_template() {
    let a = Agent::dev(&["-node", "cat1"]);
    a.wait_serf_health();
    let reg = json!({"Name": "web", "ID": "w1", "Port": 8080, "Tags": ["zeta", "alpha"],
        "Meta": {"version": "7"}, "Weights": {"Passing": 3, "Warning": 2},
        "TaggedAddresses": {"lan": {"Address": "10.1.1.1", "Port": 8081}},
        "Check": {"TTL": "60s", "Status": "passing"}});
    let r = client()
        .put(format!("{}/v1/agent/service/register", a.url))
        .json(&reg)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let synced = wait_until(Duration::from_secs(10), || {
        get(&a, "/v1/health/service/web?passing")
            .as_array()
            .is_some_and(|l| !l.is_empty())
    });
    assert!(synced, "web not passing");
    let node = get(&a, "/v1/catalog/node/cat1");
    let node_id = node["Node"]["ID"].as_str().unwrap().to_string();
    let tmpl = concat!(
        "{{ range service \"web\" }}",
        "{{ .Node }}|{{ .NodeID }}|{{ .NodeAddress }}|{{ .NodeDatacenter }}|",
        "{{ .NodeTaggedAddresses.lan }}|{{ index .NodeMeta \"consul-network-segment\" }}|",
        "{{ .ServiceMeta.version }}|{{ .Address }}|{{ (index .ServiceTaggedAddresses \"lan\").Port }}|",
        "{{ .ID }}|{{ .Name }}|[{{ .Kind }}]|{{ .Tags | join \",\" }}|{{ len .Checks }}|",
        "{{ .Status }}|{{ .Port }}|{{ .Weights.Passing }}/{{ .Weights.Warning }}|[{{ .Namespace }}]\n",
        "{{ end }}",
        "{{ range services \"@dc1\" }}{{ .Name }}={{ .Tags | join \",\" }};{{ end }}\n",
        "{{ range nodes \"@dc1\" }}{{ .ID }} {{ .Node }} {{ .Address }} {{ .Datacenter }} {{ .TaggedAddresses.wan }}{{ end }}\n",
        "{{ with node }}{{ .Node.Node }} {{ .Node.Datacenter }}{{ range .Services }} {{ .Service }}/{{ .ID }}/{{ .EnableTagOverride }}{{ end }}{{ end }}\n",
        "{{ with node \"cat1\" \"@dc1\" }}{{ .Node.ID }}{{ end }}\n",
    );
    let (out, text) = render_once(&a, tmpl, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want = format!(
        "cat1|{node_id}|127.0.0.1|dc1|127.0.0.1||7|127.0.0.1|8081|w1|web|[]|alpha,zeta|2|passing|8080|3/2|[]\n\
         consul=;web=alpha,zeta;\n\
         {node_id} cat1 127.0.0.1 dc1 127.0.0.1\n\
         cat1 dc1 consul/consul/false web/w1/false\n\
         {node_id}\n"
    );
    assert_eq!(text, want);
}

/// A service in maintenance has consul's aggregated status `maintenance`
/// (not `critical`): `|maintenance` lists it, the default (passing) and
/// `|critical` do not.
#[test]
fn maintenance_status_like_consul() {
    let a = Agent::dev(&["-node", "maint1"]);
    let r = client()
        .put(format!("{}/v1/agent/service/register", a.url))
        .json(&json!({"Name": "db", "ID": "db1", "Port": 5432}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .put(format!(
            "{}/v1/agent/service/maintenance/db1?enable=true&reason=upgrade",
            a.url
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let in_maint = wait_until(Duration::from_secs(10), || {
        get(&a, "/v1/health/service/db")[0]["Checks"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["CheckID"] == "_service_maintenance:db1"))
    });
    assert!(in_maint, "maintenance check not in the catalog");
    let (out, text) = render_once(
        &a,
        "[{{ range service \"db|maintenance\" }}{{ .ID }}:{{ .Status }}{{ end }}]\
         [{{ range service \"db|critical\" }}{{ .ID }}{{ end }}]\
         [{{ range service \"db|any\" }}{{ .Status }}{{ end }}]",
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(text, "[db1:maintenance][][maintenance]");
}

/// `@dc` on `services`, `nodes`, `node` and `service` reaches the agent as
/// `?dc=`: an unknown datacenter is the agent's error, named by -once.
#[test]
fn dc_argument_is_sent() {
    let a = Agent::dev(&["-node", "dc1n"]);
    for (tmpl, shown) in [
        ("{{ services \"@nowhere\" }}", "catalog.services(@nowhere)"),
        ("{{ nodes \"@nowhere\" }}", "catalog.nodes(@nowhere)"),
        ("{{ node \"dc1n@nowhere\" }}", "catalog.node(dc1n@nowhere)"),
        (
            "{{ service \"web@nowhere\" }}",
            "health.service(web@nowhere)",
        ),
    ] {
        let (out, _) = render_once(&a, tmpl, &[]);
        assert_eq!(out.code, 1, "{tmpl}: {}", out.stderr);
        assert!(
            out.stderr.contains(shown) && out.stderr.contains("No path to datacenter"),
            "{tmpl}: {}",
            out.stderr
        );
    }
    // A malformed datacenter is the template's error, before any query.
    let (out, _) = render_once(&a, "{{ services \"@bad dc\" }}", &[]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid format"), "{}", out.stderr);
}

/// `~near` is accepted on `service` and `nodes` and sent as `?near=`;
/// with no coordinates to sort by, the instances come in the agent's order
/// for that query (tribune's agent lists them by node, so this checks the
/// order is passed through, not re-sorted differently). A `~` without a
/// node is the template's error.
#[test]
fn near_keeps_the_agent_order() {
    let a = Agent::dev(&["-node", "near1"]);
    for n in ["zz", "aa", "mm"] {
        let r = client()
            .put(format!("{}/v1/catalog/register", a.url))
            .json(&json!({"Node": n, "Address": "10.0.0.1",
                "Service": {"Service": "web", "ID": format!("id-{n}"), "Port": 80}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let ids: Vec<String> = get(&a, "/v1/health/service/web?near=zz")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Service"]["ID"].as_str().unwrap().to_string())
        .collect();
    let nodes: Vec<String> = get(&a, "/v1/catalog/nodes?near=zz")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 3);
    let (out, text) = render_once(
        &a,
        "{{ range service \"web~zz|any\" }}{{ .ID }} {{ end }}\n{{ range nodes \"@dc1~zz\" }}{{ .Node }} {{ end }}\n",
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(text, format!("{} \n{} \n", ids.join(" "), nodes.join(" ")));
    let (out, _) = render_once(&a, "{{ service \"web~\" }}", &[]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("invalid near"), "{}", out.stderr);
}

/// A closed port: every query fails at once.
fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    addr
}

/// `retry { attempts = 2 }`: after the first failure and two retries the
/// daemon gives up and exits with an error, as consul-template does; in
/// `-once` the first fetch is retried the same way.
#[test]
fn retry_attempts_bound_the_retries() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.ctmpl"), "{{ key \"k\" }}").unwrap();
    std::fs::write(
        dir.path().join("ct.hcl"),
        format!(
            "consul {{\n  address = \"{}\"\n  retry {{\n    attempts = 2\n    backoff = \"50ms\"\n    max_backoff = \"100ms\"\n  }}\n}}\ntemplate {{\n  source = \"in.ctmpl\"\n  destination = \"out.txt\"\n}}\n",
            dead_addr()
        ),
    )
    .unwrap();
    let mut r = Renderer::spawn(dir.path(), &["-config", "ct.hcl"], &[]);
    let code = r.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(2), "{}", r.log_text());
    assert_eq!(
        r.count(&["fetch failed; keeping last data"]),
        2,
        "{}",
        r.log_text()
    );
    assert!(
        r.log_text().contains("gave up after 2 retries"),
        "{}",
        r.log_text()
    );

    let out = run_renderer(dir.path(), &["-once", "-config", "ct.hcl"], &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stderr.matches("fetch failed; retrying").count(),
        2,
        "{}",
        out.stderr
    );
}

/// A TLS endpoint in front of the agent (`tests/support/tls.rs`): its
/// certificate names `agent.tribune.test` (and localhost), not 127.0.0.1.
fn tls_front(dir: &Path, agent: &Agent) -> tls::TlsFront {
    tls::make_certs(dir);
    let up = agent.addr.rsplit(':').next().unwrap().parse().unwrap();
    tls::front(dir, up, false)
}

/// `ssl { ca_cert server_name verify }` are applied: without
/// `server_name` the certificate (for agent.tribune.test) does not match
/// 127.0.0.1 and nothing renders; with it the name is checked instead and
/// the template renders; `verify = false` renders without the CA, with a
/// warning. ssl settings for a plain http address are warned about.
#[test]
fn ssl_settings_are_applied_or_warned_about() {
    let a = Agent::dev(&["-node", "tls1"]);
    put_kv(&a, "t/k", "over-tls");
    let dir = tempfile::tempdir().unwrap();
    let front = tls_front(dir.path(), &a);
    std::fs::write(dir.path().join("in.ctmpl"), "{{ key \"t/k\" }}").unwrap();
    let run = |ssl: &str, address: &str| {
        std::fs::write(
            dir.path().join("ct.hcl"),
            format!(
                "consul {{\n  address = \"{address}\"\n  ssl {{\n{ssl}\n  }}\n}}\ntemplate {{\n  source = \"in.ctmpl\"\n  destination = \"out.txt\"\n}}\n"
            ),
        )
        .unwrap();
        let _ = std::fs::remove_file(dir.path().join("out.txt"));
        let out = run_renderer(dir.path(), &["-once", "-config", "ct.hcl"], &[]);
        let text = std::fs::read_to_string(dir.path().join("out.txt")).unwrap_or_default();
        (out, text)
    };
    let tls_addr = format!("127.0.0.1:{}", front.port);
    let (out, text) = run("    enabled = true\n    ca_cert = \"ca.pem\"", &tls_addr);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(text, "");
    let (out, text) = run(
        "    enabled = true\n    ca_cert = \"ca.pem\"\n    server_name = \"agent.tribune.test\"",
        &tls_addr,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(text, "over-tls");
    let (out, text) = run("    enabled = true\n    verify = false", &tls_addr);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(text, "over-tls");
    assert!(out.stderr.contains("not checked"), "{}", out.stderr);
    // Plain http: rendered, and the unused ssl settings named in a warning.
    let (out, text) = run(
        "    ca_cert = \"ca.pem\"\n    server_name = \"agent.tribune.test\"",
        &format!("http://{}", a.addr),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(text, "over-tls");
    assert!(
        out.stderr.contains("consul.ssl settings are not applied"),
        "{}",
        out.stderr
    );
}
