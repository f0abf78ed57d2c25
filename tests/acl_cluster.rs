//! ACLs in a real cluster: three servers and a client agent, ACLs on with
//! default deny. Bootstrap through a follower (forwarded to the leader),
//! once for the whole cluster; tokens created through the client agent;
//! the token's rules hold on every path (client -> server, follower ->
//! leader, a follower's `?stale` read of replicated ACL state, the client
//! agent's own endpoints); a deleted token is refused at once, on the
//! client agent too; everything survives a leader kill.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tribune_tests::servers::{client_agent, three_servers_with, Member};
use tribune_tests::{client, wait_until, Agent};

/// The shared 3-server harness and a client agent, ACLs on, default deny.
struct Cluster {
    _dir: tempfile::TempDir,
    servers: Vec<Option<Member>>,
    client: Agent,
}

const SERVERS: usize = 3;
const ACL: &str = r#"{"acl": {"enabled": true, "default_policy": "deny"}}"#;

impl Cluster {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let servers = three_servers_with(dir.path(), "s", ACL);
        let client = client_agent(dir.path(), "c0", &servers, ACL);
        Cluster {
            _dir: dir,
            servers: servers.into_iter().map(Some).collect(),
            client,
        }
    }

    fn agent(&self, i: usize) -> &Agent {
        &self.servers[i].as_ref().expect("running").agent
    }

    fn client_agent(&self) -> &Agent {
        &self.client
    }

    /// The leader's index, once every running server names it and it
    /// answers reads (a 403 is an answer: ACLs refused it).
    fn wait_leader(&self, limit: Duration) -> usize {
        let t = Instant::now();
        loop {
            let views: Vec<Option<usize>> = (0..SERVERS)
                .filter(|i| self.servers[*i].is_some())
                .map(|i| {
                    let l: String = client()
                        .get(format!("{}/v1/status/leader", self.agent(i).url))
                        .send()
                        .ok()?
                        .json()
                        .ok()?;
                    self.servers
                        .iter()
                        .position(|m| m.as_ref().is_some_and(|m| m.rpc == l))
                })
                .collect();
            if let Some(Some(l)) = views.first() {
                if views.iter().all(|v| *v == Some(*l)) && self.servers[*l].is_some() {
                    let r = client()
                        .get(format!("{}/v1/kv/__probe__", self.agent(*l).url))
                        .send();
                    if r.is_ok_and(|r| [200, 403, 404].contains(&r.status().as_u16())) {
                        return *l;
                    }
                }
            }
            assert!(t.elapsed() < limit, "no agreed leader: {views:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn call(
    a: &Agent,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = client()
        .request(m, format!("{}{path}", a.url))
        .timeout(Duration::from_secs(20));
    if let Some(t) = token {
        r = r.header("X-Consul-Token", t);
    }
    if let Some(b) = body {
        r = r.body(b.to_string());
    }
    let r = r.send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn ok(a: &Agent, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let (st, text) = call(a, method, path, Some(token), body);
    assert_eq!(st, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn acls_across_servers_client_and_leader_kill() {
    let mut c = Cluster::start();
    let leader = c.wait_leader(Duration::from_secs(30));
    let follower = (leader + 1) % SERVERS;
    let other = (leader + 2) % SERVERS;
    // Wait for the leader to create the builtins (the anonymous token).
    assert!(wait_until(Duration::from_secs(10), || {
        call(c.agent(leader), "GET", "/v1/kv/x", None, None).0 == 403
    }));
    // Bootstrap through a follower: forwarded, answered by the leader.
    let (st, text) = call(c.agent(follower), "PUT", "/v1/acl/bootstrap", None, None);
    assert_eq!(st, 200, "{text}");
    let root_tok: Value = serde_json::from_str(&text).unwrap();
    let root = root_tok["SecretID"].as_str().unwrap().to_string();
    let (st, text) = call(c.agent(other), "PUT", "/v1/acl/bootstrap", None, None);
    assert_eq!(st, 403);
    assert!(text.contains("ACL bootstrap no longer allowed"), "{text}");
    // A policy and a token through the client agent.
    let cl = c.client_agent();
    assert!(wait_until(Duration::from_secs(20), || {
        call(cl, "GET", "/v1/acl/token/self", Some(&root), None).0 == 200
    }));
    let p = ok(
        cl,
        "PUT",
        "/v1/acl/policy",
        &root,
        Some(json!({"Name": "app", "Rules": "key_prefix \"app/\" { policy = \"write\" }"})),
    );
    let t = ok(
        cl,
        "PUT",
        "/v1/acl/token",
        &root,
        Some(json!({"Policies": [{"ID": p["ID"]}]})),
    );
    let tok = t["SecretID"].as_str().unwrap().to_string();
    let acc = t["AccessorID"].as_str().unwrap().to_string();
    // Its rules through the client agent and through a follower.
    for a in [cl, c.agent(follower)] {
        let (st, _) = call(a, "PUT", "/v1/kv/app/x", Some(&tok), Some(json!(1)));
        assert_eq!(st, 200);
        let (st, text) = call(a, "PUT", "/v1/kv/other/x", Some(&tok), Some(json!(1)));
        assert_eq!(
            (st, text.as_str()),
            (
                403,
                "Permission denied: provided token lacks permission 'key:write' on \"other/x\""
            )
        );
    }
    // Replicated: every server decides a stale read from its own tables.
    for i in 0..SERVERS {
        let a = c.agent(i);
        assert!(wait_until(Duration::from_secs(10), || {
            call(a, "GET", "/v1/kv/app/x?stale", Some(&tok), None).0 == 200
        }));
        assert_eq!(
            call(a, "GET", "/v1/kv/other/x?stale", Some(&tok), None).0,
            403
        );
    }
    // The client agent's own endpoints ask a server for the token.
    let svc = json!({"Name": "web", "Port": 80});
    let (st, _) = call(
        cl,
        "PUT",
        "/v1/agent/service/register",
        Some(&tok),
        Some(svc.clone()),
    );
    assert_eq!(st, 403);
    let (st, _) = call(
        cl,
        "PUT",
        "/v1/agent/service/register",
        Some(&root),
        Some(svc),
    );
    assert_eq!(st, 200);
    assert_eq!(
        call(cl, "GET", "/v1/agent/services", Some(&tok), None).1,
        "{}"
    );
    // Deleted: refused on the very next request, on the client agent too.
    let d = ok(cl, "DELETE", &format!("/v1/acl/token/{acc}"), &root, None);
    assert_eq!(d, json!(true));
    let (st, text) = call(cl, "GET", "/v1/agent/services", Some(&tok), None);
    assert_eq!((st, text.as_str()), (403, "ACL not found"));
    let (st, _) = call(cl, "PUT", "/v1/kv/app/y", Some(&tok), Some(json!(1)));
    assert_eq!(st, 403);
    // The leader dies: the rest elect another, ACL state intact.
    c.servers[leader].as_mut().unwrap().agent.kill9();
    c.servers[leader] = None;
    let next = c.wait_leader(Duration::from_secs(30));
    assert_ne!(next, leader);
    let (st, _) = call(
        c.agent(next),
        "PUT",
        "/v1/kv/app/after",
        Some(&root),
        Some(json!(1)),
    );
    assert_eq!(st, 200);
    let (st, _) = call(c.agent(next), "PUT", "/v1/acl/bootstrap", None, None);
    assert_eq!(st, 403);
    let (st, _) = call(c.agent(next), "GET", "/v1/kv/app/x", Some(&tok), None);
    assert_eq!(st, 403);
    let path = format!("/v1/acl/policy/{}", p["ID"].as_str().unwrap());
    let r = ok(c.client_agent(), "GET", &path, &root, None);
    assert_eq!(r["Name"], "app");
}
