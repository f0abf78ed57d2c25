//! Two small federated datacenters on 127.0.0.1 for the tests that need
//! another datacenter but not a 3-server one (`tests/datacenters.rs` has
//! that): dc1 and dc2, each one server (`s1`, `s2`, bootstrapping alone,
//! WAN-joined) and one client agent (`c1`, `c2`); every agent serves DNS
//! on a port it picks; each datacenter's agents get their own extra
//! config.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use crate::servers::{self, Member};
use crate::{client, free_ports, wait_until, Agent};

pub struct TwoDcs {
    pub s1: Member,
    pub c1: Agent,
    pub s2: Member,
    pub c2: Agent,
}

/// Fast raft, and `conf` (a JSON object).
fn config_files(dir: &Path, name: &str, conf: &str) -> Vec<OsString> {
    let perf = dir.join("perf.json");
    std::fs::write(&perf, r#"{"performance":{"raft_multiplier":1}}"#).unwrap();
    let extra = dir.join(format!("{name}.json"));
    std::fs::write(&extra, conf).unwrap();
    [
        "-config-file".into(),
        perf.into(),
        "-config-file".into(),
        extra.into(),
    ]
    .to_vec()
}

fn args(list: &[&str]) -> Vec<OsString> {
    list.iter().map(Into::into).collect()
}

/// A server of `dc` on `ports` (rpc, lan, wan), retry-joining `wan_join`.
fn server(dir: &Path, dc: &str, ports: &[u16], wan_join: &str, conf: &str) -> Member {
    let node = format!("s{}", &dc[2..]);
    let data = dir.join(&node);
    let p = |i: usize| ports[i].to_string();
    let mut a = args(&[
        "agent",
        "-server",
        "-bootstrap-expect",
        "1",
        "-node",
        &node,
        "-datacenter",
        dc,
        "-http-port",
        "0",
        "-dns-port",
        "0",
        "-server-port",
        &p(0),
        "-serf-lan-port",
        &p(1),
        "-serf-wan-port",
        &p(2),
        "-retry-interval-wan",
        "1s",
        "-retry-join-wan",
        wan_join,
    ]);
    a.extend(["-data-dir".into(), data.clone().into_os_string()]);
    a.extend(config_files(dir, &node, conf));
    Member {
        agent: servers::start(&a, &data),
        args: a,
        data,
        rpc: format!("127.0.0.1:{}", ports[0]),
        serf: format!("127.0.0.1:{}", ports[1]),
    }
}

/// A client agent of `dc` joining `server`.
fn client_agent(dir: &Path, dc: &str, lan: u16, server: &Member, conf: &str) -> Agent {
    let node = format!("c{}", &dc[2..]);
    let data = dir.join(&node);
    let mut a = args(&[
        "agent",
        "-node",
        &node,
        "-datacenter",
        dc,
        "-http-port",
        "0",
        "-dns-port",
        "0",
        "-serf-lan-port",
        &lan.to_string(),
        "-retry-interval",
        "1s",
        "-retry-join",
        &server.serf,
    ]);
    a.extend(["-data-dir".into(), data.clone().into_os_string()]);
    a.extend(config_files(dir, &node, conf));
    servers::start(&a, &data)
}

/// Start both datacenters, `confs` each one's agents' extra config (JSON
/// objects), and wait until each agent has a leader and both servers see
/// both datacenters.
pub fn two_dcs(dir: &Path, confs: [&str; 2]) -> TwoDcs {
    let p = free_ports(8);
    let [one, two] = confs;
    let s1 = server(dir, "dc1", &p[0..3], &format!("127.0.0.1:{}", p[5]), one);
    let s2 = server(dir, "dc2", &p[3..6], &format!("127.0.0.1:{}", p[2]), two);
    let c1 = client_agent(dir, "dc1", p[6], &s1, one);
    let c2 = client_agent(dir, "dc2", p[7], &s2, two);
    for a in [&s1.agent, &s2.agent, &c1, &c2] {
        a.wait_leader();
    }
    let both = |a: &Agent| {
        let r = client()
            .get(format!("{}/v1/catalog/datacenters", a.url))
            .send();
        r.ok()
            .and_then(|r| r.json::<serde_json::Value>().ok())
            .is_some_and(|v| v.as_array().is_some_and(|l| l.len() == 2))
    };
    assert!(
        wait_until(Duration::from_secs(30), || both(&s1) && both(&s2)),
        "the WAN pool never held both datacenters; s1 log:\n{}",
        s1.log_text()
    );
    TwoDcs { s1, c1, s2, c2 }
}
