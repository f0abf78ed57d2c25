//! Two datacenters federated over the WAN pool, real processes on
//! 127.0.0.1: dc1 = 3 servers + 1 client, dc2 = 1 server + 1 client.
//! Each test starts both once and checks a lot (the machine is small).

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribune_tests::servers::{self, Member};
use tribune_tests::{client, dig, free_ports, index_of, run_renderer, wait_until, Agent};

/// Both datacenters, their members in start order.
struct Federation {
    dc1: Vec<Member>,
    /// dc1's client agent (DNS on).
    c1: Agent,
    dc1_dns: u16,
    dc2: Member,
    c2: Agent,
}

/// Every agent of both datacenters holds this gossip key: the WAN pool is
/// sealed with the LAN pool's keyring.
const KEY: &str = "P6JtZsaOgYDb4hRYmm+mVp3WYIyprBPsJ/U3fpQ1doA=";

/// Every agent's config: fast raft, gauges in the Prometheus form.
const COMMON: &str = r#"{"performance":{"raft_multiplier":1},
    "telemetry":{"disable_hostname":true,"prometheus_retention_time":"60s"}}"#;

fn strs(v: &[&str]) -> Vec<OsString> {
    v.iter().map(Into::into).collect()
}

/// Who a server is: its node name, datacenter, `-bootstrap-expect` and
/// extra config (a JSON object).
struct Spec<'a>(&'a str, &'a str, &'a str, &'a str);

/// A server (`spec`), retry-joining `lan` and the WAN pool at `wan_join`.
fn server(dir: &Path, spec: Spec, ports: &[u16], lan: &[String], wan_join: &[String]) -> Member {
    let Spec(node, dc, expect, conf) = spec;
    let data = dir.join(format!("{node}-{dc}"));
    let p = |i: usize| ports[i].to_string();
    let mut args = strs(&[
        "agent",
        "-server",
        "-bootstrap-expect",
        expect,
        "-node",
        node,
        "-datacenter",
        dc,
        "-http-port",
        "0",
        "-server-port",
        &p(0),
        "-serf-lan-port",
        &p(1),
        "-serf-wan-port",
        &p(2),
        "-dns-port",
        "-1",
        "-retry-interval",
        "1s",
        "-retry-interval-wan",
        "1s",
        "-encrypt",
        KEY,
    ]);
    args.extend(["-data-dir".into(), data.clone().into_os_string()]);
    let perf = dir.join("perf.json");
    std::fs::write(&perf, COMMON).unwrap();
    args.extend(["-config-file".into(), perf.into_os_string()]);
    let extra = dir.join(format!("{node}-{dc}.json"));
    std::fs::write(&extra, conf).unwrap();
    args.extend(["-config-file".into(), extra.into_os_string()]);
    for j in lan {
        args.extend(["-retry-join".into(), j.into()]);
    }
    for j in wan_join {
        args.extend(["-retry-join-wan".into(), j.into()]);
    }
    Member {
        agent: servers::start(&args, &data),
        args,
        data,
        rpc: format!("127.0.0.1:{}", ports[0]),
        serf: format!("127.0.0.1:{}", ports[1]),
    }
}

/// A client agent of `dc` joining `servers`, DNS on a port it picks.
fn client_agent(dir: &Path, node: &str, dc: &str, lan_port: u16, servers: &[&Member]) -> Agent {
    let data = dir.join(node);
    let lan = lan_port.to_string();
    let mut args = strs(&[
        "agent",
        "-node",
        node,
        "-datacenter",
        dc,
        "-http-port",
        "0",
        "-serf-lan-port",
        &lan,
        "-dns-port",
        "0",
        "-retry-interval",
        "1s",
        "-encrypt",
        KEY,
    ]);
    args.extend(["-data-dir".into(), data.clone().into_os_string()]);
    let common = dir.join(format!("{node}-common.json"));
    std::fs::write(&common, COMMON).unwrap();
    args.extend(["-config-file".into(), common.into_os_string()]);
    for m in servers {
        args.extend(["-retry-join".into(), m.serf.clone().into()]);
    }
    servers::start(&args, &data)
}

fn federation(dir: &Path) -> Federation {
    // dc1 servers: rpc, lan, wan each; dc2's server; the clients' LAN ports.
    let p = free_ports(14);
    let dc1_lan: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", p[3 * i + 1]))
        .collect();
    let dc2_wan = format!("127.0.0.1:{}", p[11]);
    let s0_wan = format!("127.0.0.1:{}", p[2]);
    let dc1: Vec<Member> = (0..3)
        .map(|i| {
            server(
                dir,
                Spec(&format!("s{i}"), "dc1", "3", "{}"),
                &p[3 * i..3 * i + 3],
                &dc1_lan,
                std::slice::from_ref(&dc2_wan),
            )
        })
        .collect();
    let dc2 = server(dir, Spec("s0", "dc2", "1", "{}"), &p[9..12], &[], &[s0_wan]);
    let c1 = client_agent(dir, "c1", "dc1", p[12], &dc1.iter().collect::<Vec<_>>());
    let c2 = client_agent(dir, "c2", "dc2", p[13], &[&dc2]);
    for a in dc1.iter().map(|m| &m.agent).chain([&dc2.agent, &c1, &c2]) {
        a.wait_leader();
    }
    let dc1_dns = c1.dns_port();
    Federation {
        dc1,
        c1,
        dc1_dns,
        dc2,
        c2,
    }
}

/// A gauge of the agent's `/v1/agent/metrics` (Prometheus form).
fn gauge(a: &Agent, name: &str) -> Option<f64> {
    let text = get(&format!("{}/v1/agent/metrics?format=prometheus", a.url))
        .text()
        .ok()?;
    let prom = name.replace('.', "_");
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(prom.as_str())?;
        rest.starts_with([' ', '{'])
            .then(|| rest.rsplit(' ').next()?.parse().ok())
            .flatten()
    })
}

fn get(url: &str) -> reqwest::blocking::Response {
    client().get(url).send().unwrap()
}

fn json_of(url: &str) -> Value {
    let r = get(url);
    assert!(r.status().is_success(), "{url}: {}", r.status());
    r.json().unwrap()
}

/// WAN membership, `?dc=` reads and writes (KV, blocking), the
/// datacenter list, python-consul, and a datacenter that goes away.
#[test]
fn two_datacenters_federated() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = federation(dir.path());
    let s0 = &f.dc1[0];

    // The WAN pool: every server of both datacenters, named <node>.<dc>.
    let names = ["s0.dc1", "s1.dc1", "s2.dc1", "s0.dc2"];
    let wan_alive = |a: &Agent| {
        let v = json_of(&format!("{}/v1/agent/members?wan=1", a.url));
        let list = v.as_array().cloned().unwrap_or_default();
        names.iter().all(|n| {
            list.iter()
                .any(|m| m["Name"] == *n && m["Status"] == 1 && m["Tags"]["role"] == "consul")
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || wan_alive(s0)
            && wan_alive(&f.dc2)),
        "WAN pool never complete; s0 log:\n{}",
        s0.log_text()
    );
    let sealed = s0
        .log_text()
        .lines()
        .any(|l| l.contains("gossip (WAN) listening on") && l.ends_with(", encrypted"));
    assert!(sealed, "{}", s0.log_text());
    let out = s0.cli(&["members", "-wan"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let header = out.stdout.lines().next().unwrap();
    assert!(
        header.starts_with("Node") && header.contains("DC"),
        "{}",
        out.stdout
    );
    for n in names {
        let row = out.stdout.lines().find(|l| l.starts_with(n)).unwrap_or("");
        assert!(
            row.contains("alive") && row.contains("server"),
            "{n}:\n{}",
            out.stdout
        );
    }
    assert!(out
        .stdout
        .lines()
        .any(|l| l.starts_with("s0.dc2") && l.contains(" dc2 ")));
    // A client agent has no WAN pool: its members are its LAN's only.
    let v = json_of(&format!("{}/v1/agent/members?wan=1", f.c1.url));
    assert_eq!(v, serde_json::json!([]));
    let out = f.c1.cli(&["join", "-wan", &f.dc2.serf], None);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("Must be a server to join WAN cluster"),
        "{}",
        out.stderr
    );

    // Every datacenter, the local one first, from clients and servers.
    let dcs = |a: &Agent| json_of(&format!("{}/v1/catalog/datacenters", a.url));
    assert!(wait_until(Duration::from_secs(10), || dcs(&f.c1)
        == serde_json::json!(["dc1", "dc2"])));
    assert_eq!(dcs(&f.c2), serde_json::json!(["dc2", "dc1"]));
    assert_eq!(dcs(&f.dc1[2]), serde_json::json!(["dc1", "dc2"]));
    let out = f.c2.cli(&["catalog", "datacenters"], None);
    assert_eq!(out.stdout, "dc2\ndc1\n", "{}", out.stderr);

    // A write with ?dc=dc2 through dc1's client lands in dc2 only.
    let http = client();
    let r = http
        .put(format!("{}/v1/kv/fed/a?dc=dc2", f.c1.url))
        .body("from-dc1")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "true");
    let local = get(&format!("{}/v1/kv/fed/a?raw", f.c2.url));
    assert_eq!(local.status(), 200);
    let dc2_index = index_of(&local);
    assert_eq!(local.text().unwrap(), "from-dc1");
    assert_eq!(get(&format!("{}/v1/kv/fed/a", f.c1.url)).status(), 404);
    assert_eq!(get(&format!("{}/v1/kv/fed/a", s0.url)).status(), 404);
    let remote = get(&format!("{}/v1/kv/fed/a?dc=dc2&raw", f.c1.url));
    assert_eq!(remote.status(), 200);
    assert_eq!(index_of(&remote), dc2_index, "dc2's index, not dc1's");
    assert_eq!(remote.text().unwrap(), "from-dc1");
    // A server of dc1 routes it too; an unknown datacenter has no path.
    let r = get(&format!("{}/v1/kv/fed/a?dc=dc2&raw", f.dc1[1].url));
    assert_eq!(r.text().unwrap(), "from-dc1");
    let r = get(&format!("{}/v1/kv/fed/a?dc=nowhere", f.c1.url));
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().unwrap(), "No path to datacenter");

    // Blocking reads of dc2 data through dc1's client wake on a dc2 PUT
    // with dc2's new index; identical ones share one query (dc2's server
    // holds one).
    let url = format!("{}/v1/kv/fed/a?dc=dc2&index={dc2_index}&wait=60s", f.c1.url);
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                let r = client().get(url).send().unwrap();
                let idx = index_of(&r);
                let body: Value = r.json().unwrap();
                (t.elapsed(), idx, body)
            })
        })
        .collect();
    let parked = wait_until(Duration::from_secs(10), || {
        gauge(&f.c1, "tribune.coalesce.waiters") == Some(4.0)
            && gauge(&f.dc2, "consul.rpc.queries_blocking") == Some(1.0)
    });
    assert!(
        parked,
        "waiters {:?}, dc2 holds {:?}",
        gauge(&f.c1, "tribune.coalesce.waiters"),
        gauge(&f.dc2, "consul.rpc.queries_blocking")
    );
    assert!(
        waiters.iter().all(|w| !w.is_finished()),
        "a blocking read returned before the change"
    );
    let r = http
        .put(format!("{}/v1/kv/fed/a", f.c2.url))
        .body("changed-in-dc2")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let now = index_of(&get(&format!("{}/v1/kv/fed/a", f.c2.url)));
    for w in waiters {
        let (took, idx, body) = w.join().unwrap();
        assert_eq!(idx, now, "woke with dc2's index");
        assert!(idx > dc2_index);
        assert!(took < Duration::from_secs(30), "woke after {took:?}");
        assert_eq!(body[0]["Key"], "fed/a");
    }

    // python-consul's dc= argument.
    let (host, port) = f.c1.addr.rsplit_once(':').unwrap();
    let script = "import consul,sys\n\
        c = consul.Consul(host=sys.argv[1], port=int(sys.argv[2]))\n\
        assert c.kv.put('fed/py', 'v2', dc='dc2') is True\n\
        i, v = c.kv.get('fed/py', dc='dc2')\n\
        assert v['Value'] == b'v2', v\n\
        i, v = c.kv.get('fed/py')\n\
        assert v is None, v\n\
        print('ok')\n";
    let out = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .args(["-c", script, host, port])
        .output()
        .expect("python3 with python-consul");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        get(&format!("{}/v1/kv/fed/py?raw", f.c2.url))
            .text()
            .unwrap(),
        "v2"
    );

    // DNS: dc1's client answers dc2's names by asking dc2 (through its servers).
    let r = http
        .put(format!("{}/v1/agent/service/register", f.c2.url))
        .body(r#"{"Name":"web","Port":8080,"Tags":["v1"]}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let in_dc2 = || {
        let v = json_of(&format!("{}/v1/catalog/service/web?dc=dc2", f.c1.url));
        v.as_array().is_some_and(|a| a.len() == 1)
    };
    assert!(
        wait_until(Duration::from_secs(20), in_dc2),
        "web never in dc2's catalog"
    );
    assert_eq!(
        json_of(&format!("{}/v1/catalog/service/web", f.c1.url)),
        serde_json::json!([])
    );
    let srv = dig(f.dc1_dns, &["web.service.dc2.consul", "SRV"]);
    assert!(srv.contains("status: NOERROR"), "{srv}");
    assert!(srv.contains("8080 c2.node.dc2.consul."), "{srv}");
    let additional_a = srv.lines().any(|l| {
        l.split_whitespace().collect::<Vec<_>>()
            == ["c2.node.dc2.consul.", "0", "IN", "A", "127.0.0.1"]
    });
    assert!(additional_a, "{srv}");
    let short = dig(f.dc1_dns, &["+short", "_web._v1.service.dc2.consul", "SRV"]);
    assert!(short.contains("8080 c2.node.dc2.consul."), "{short}");
    let short = dig(f.dc1_dns, &["+short", "v1.web.service.dc2.consul"]);
    assert_eq!(short.trim(), "127.0.0.1");
    let node = dig(f.dc1_dns, &["+short", "c2.node.dc2.consul"]);
    assert_eq!(node.trim(), "127.0.0.1");
    // Not in dc1, and no such datacenter.
    assert!(dig(f.dc1_dns, &["web.service.consul"]).contains("NXDOMAIN"));
    assert!(dig(f.dc1_dns, &["web.service.nowhere.consul"]).contains("NXDOMAIN"));

    // Prepared queries defined in dc1 fail over to dc2, which has the only
    // healthy web: by Datacenters and by NearestN, through dc1's client.
    for (name, failover) in [
        ("web-fo", r#"{"Datacenters": ["nowhere", "dc2"]}"#),
        ("web-near", r#"{"NearestN": 1}"#),
    ] {
        let r = client()
            .post(format!("{}/v1/query", f.c1.url))
            .body(format!(
                r#"{{"Name": "{name}", "Service": {{"Service": "web", "Failover": {failover}}}}}"#
            ))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().unwrap());
        let v = json_of(&format!("{}/v1/query/{name}/execute", f.c1.url));
        assert_eq!(v["Datacenter"], "dc2", "{name}: {v}");
        assert_eq!(v["Failovers"], 1, "{name}: {v}");
        assert_eq!(v["Nodes"][0]["Service"]["Port"], 8080, "{name}: {v}");
        assert_eq!(v["Nodes"][0]["Node"]["Node"], "c2", "{name}: {v}");
    }

    // tribune-template through dc1's client: consul-template's @dc.
    let work = dir.path().join("tmpl");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("fed.ctmpl"),
        "{{key \"fed/a@dc2\"}}|{{keyOrDefault \"fed/a\" \"none-in-dc1\"}}|\
         {{range ls \"fed@dc2\"}}{{.Key}}={{.Value}},{{end}}|\
         {{range tree \"fed@dc2\"}}{{.Key}},{{end}}|\
         {{range service \"web@dc2\"}}{{.Node}}:{{.Port}}{{end}}|\
         {{range datacenters}}{{.}},{{end}}\n",
    )
    .unwrap();
    let out = run_renderer(
        &work,
        &[
            "-once",
            "-consul-addr",
            &f.c1.addr,
            "-template",
            "fed.ctmpl:fed.out",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(work.join("fed.out")).unwrap(),
        "changed-in-dc2|none-in-dc1|a=changed-in-dc2,py=v2,|a,py,|c2:8080|dc1,dc2,\n"
    );

    // dc2's only server gone: ?dc=dc2 fails fast; dc1 keeps serving.
    f.dc2.agent.kill9();
    for _ in 0..3 {
        let t = Instant::now();
        let r = get(&format!("{}/v1/kv/fed/a?dc=dc2", f.c1.url));
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "took {:?}",
            t.elapsed()
        );
        assert_eq!(r.status(), 500);
        assert_eq!(r.text().unwrap(), "No path to datacenter");
        std::thread::sleep(Duration::from_millis(300));
    }
    let r = http
        .put(format!("{}/v1/kv/local?dc=dc1", f.c1.url))
        .body("still")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(&format!("{}/v1/kv/local?raw", f.c1.url))
            .text()
            .unwrap(),
        "still"
    );

    // The WAN pool sees it fail; force-leave -wan makes it left.
    let wan_status = || {
        let v = json_of(&format!("{}/v1/agent/members?wan=1", f.dc1[0].url));
        v.as_array()
            .into_iter()
            .flatten()
            .find(|m| m["Name"] == "s0.dc2")
            .map(|m| m["Status"].as_u64().unwrap_or(0))
    };
    assert!(wait_until(Duration::from_secs(20), || wan_status() == Some(4)));
    let out = f.dc1[0].cli(&["force-leave", "-wan", "s0.dc2"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        wait_until(Duration::from_secs(10), || wan_status() == Some(3)),
        "s0.dc2 not left: {:?}; log:\n{}",
        wan_status(),
        f.dc1[0].agent.log_text()
    );
    // c1 asks any dc1 server: each hears of the failure on its own.
    let dcs = || json_of(&format!("{}/v1/catalog/datacenters", f.c1.url));
    assert!(
        wait_until(Duration::from_secs(20), || dcs()
            == serde_json::json!(["dc1"])),
        "{}",
        dcs()
    );
}

/// ACL replication: policies and global tokens made in the primary (dc1)
/// appear in dc2, so a dc1 token works there; deleting it in dc1 revokes
/// it in dc2 too. Local tokens made in dc2 stay there; global ones made
/// through dc2 are made in dc1.
#[test]
fn acl_tokens_replicate_from_the_primary() {
    let dir = tempfile::tempdir().unwrap();
    let p = free_ports(6);
    let acl = |extra: &str| {
        format!(
            r#"{{"primary_datacenter":"dc1","acl":{{"enabled":true,"default_policy":"deny",
               "tokens":{{{extra}}}}}}}"#
        )
    };
    let primary_conf = acl(r#""initial_management":"root-secret""#);
    let secondary_conf = acl(r#""replication":"root-secret""#);
    let wan = |i: usize| format!("127.0.0.1:{}", p[i]);
    let dc1 = server(
        dir.path(),
        Spec("a0", "dc1", "1", &primary_conf),
        &p[0..3],
        &[],
        &[wan(5)],
    );
    let dc2 = server(
        dir.path(),
        Spec("b0", "dc2", "1", &secondary_conf),
        &p[3..6],
        &[],
        &[wan(2)],
    );
    dc1.wait_leader();
    dc2.wait_leader();
    let http = client();
    let root = |rb: reqwest::blocking::RequestBuilder| rb.header("X-Consul-Token", "root-secret");
    // The leader creates the initial management token just after it takes
    // office: wait for it before using it.
    assert!(
        wait_until(Duration::from_secs(20), || {
            root(http.get(format!("{}/v1/acl/token/self", dc1.url)))
                .send()
                .is_ok_and(|r| r.status() == 200)
        }),
        "the initial management token never worked in dc1:\n{}",
        dc1.log_text()
    );
    let r = root(http.put(format!("{}/v1/acl/policy", dc1.url)))
        .body(r#"{"Name":"fed-writer","Rules":"key_prefix \"fed/\" { policy = \"write\" }"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let r = root(http.put(format!("{}/v1/acl/token", dc1.url)))
        .body(r#"{"Description":"made in dc1","Policies":[{"Name":"fed-writer"}]}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let tok: Value = r.json().unwrap();
    let secret = tok["SecretID"].as_str().unwrap().to_string();
    let accessor = tok["AccessorID"].as_str().unwrap().to_string();
    let put = |url: String, token: Option<&str>| {
        let mut rb = http.put(url).body("v");
        if let Some(t) = token {
            rb = rb.header("X-Consul-Token", t);
        }
        rb.send().unwrap().status().as_u16()
    };
    let works = wait_until(Duration::from_secs(30), || {
        put(format!("{}/v1/kv/fed/x", dc2.url), Some(&secret)) == 200
    });
    assert!(
        works,
        "dc1's token never worked in dc2; dc2 log:\n{}",
        dc2.log_text()
    );
    assert_eq!(put(format!("{}/v1/kv/fed/x", dc2.url), None), 403);
    assert_eq!(put(format!("{}/v1/kv/other", dc2.url), Some(&secret)), 403);
    // dc2's copy of the token, by its dc1 accessor.
    let r = root(http.get(format!("{}/v1/acl/token/{accessor}", dc2.url)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let copy: Value = r.json().unwrap();
    assert_eq!(copy["Description"], "made in dc1");
    // Through dc1 with ?dc=dc2: dc2 checks the token.
    assert_eq!(
        put(format!("{}/v1/kv/fed/y?dc=dc2", dc1.url), Some(&secret)),
        200
    );
    assert_eq!(put(format!("{}/v1/kv/fed/y?dc=dc2", dc1.url), None), 403);
    // A policy written in dc2 is made in the primary, and replicated back.
    let r = root(http.put(format!("{}/v1/acl/policy", dc2.url)))
        .body(r#"{"Name":"made-in-dc2","Rules":"node_prefix \"\" { policy = \"read\" }"}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let names = |a: &Agent| -> Vec<String> {
        let r = root(http.get(format!("{}/v1/acl/policies", a.url)))
            .send()
            .unwrap();
        let v: Value = r.json().unwrap();
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["Name"].as_str().map(String::from))
            .collect()
    };
    assert!(names(&dc1).contains(&"made-in-dc2".to_string()));
    assert!(wait_until(Duration::from_secs(30), || names(&dc2)
        .contains(&"made-in-dc2".to_string())));

    // A local token made in dc2 stays in dc2 (works at once, unknown to
    // dc1, kept through replication rounds); a global one made through dc2
    // is made in dc1 and replicated back; each is deleted where it lives.
    let make = |body: &str| -> (String, String) {
        let r = root(http.put(format!("{}/v1/acl/token", dc2.url)))
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().unwrap();
        let field = |k: &str| v[k].as_str().unwrap().to_string();
        (field("AccessorID"), field("SecretID"))
    };
    let read = |a: &Agent, accessor: &str| {
        root(http.get(format!("{}/v1/acl/token/{accessor}", a.url)))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let (local_acc, local_secret) =
        make(r#"{"Description":"dc2 only","Local":true,"Policies":[{"Name":"fed-writer"}]}"#);
    assert_eq!(
        put(format!("{}/v1/kv/fed/l", dc2.url), Some(&local_secret)),
        200
    );
    assert_eq!(read(&dc1, &local_acc), 403, "a dc2 local token reached dc1");
    assert_eq!(
        put(format!("{}/v1/kv/fed/l", dc1.url), Some(&local_secret)),
        403
    );
    let (global_acc, global_secret) =
        make(r#"{"Description":"global, via dc2","Policies":[{"Name":"fed-writer"}]}"#);
    assert_eq!(
        read(&dc1, &global_acc),
        200,
        "a global token is made in the primary"
    );
    assert_eq!(
        put(format!("{}/v1/kv/fed/g", dc1.url), Some(&global_secret)),
        200
    );
    assert!(wait_until(Duration::from_secs(30), || read(
        &dc2,
        &global_acc
    ) == 200));
    // The replication round that brought it kept dc2's local token.
    assert_eq!(read(&dc2, &local_acc), 200);
    let r = root(http.delete(format!("{}/v1/acl/token/{global_acc}", dc2.url)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        read(&dc1, &global_acc),
        403,
        "deleted through dc2 in the primary"
    );
    let r = root(http.delete(format!("{}/v1/acl/token/{local_acc}", dc2.url)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        put(format!("{}/v1/kv/fed/l", dc2.url), Some(&local_secret)),
        403
    );

    // Deleted in the primary: refused in dc2 soon after.
    let r = root(http.delete(format!("{}/v1/acl/token/{accessor}", dc1.url)))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let revoked = wait_until(Duration::from_secs(30), || {
        put(format!("{}/v1/kv/fed/x", dc2.url), Some(&secret)) == 403
    });
    assert!(revoked, "the deleted token still works in dc2");
}
