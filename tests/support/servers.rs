//! A 3-server cluster on 127.0.0.1 for the tests that need one (operator,
//! snapshot): free ports for RPC and gossip, HTTP port 0 (each agent logs
//! the one it got), `raft_multiplier` 1, everyone retry-joining everyone.
//! Callers wait for the condition they need (a leader all agree on, a
//! write, reads).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{bin, spawn_logged, Agent};

/// A started server, how to start it again, and its server RPC address.
pub struct Member {
    pub agent: Agent,
    pub args: Vec<OsString>,
    pub data: PathBuf,
    pub rpc: String,
    /// Its gossip address (for agents joining the cluster).
    pub serf: String,
}

impl std::ops::Deref for Member {
    type Target = Agent;
    fn deref(&self) -> &Agent {
        &self.agent
    }
}

/// Start (or restart) one server with `args`, its data in `data`.
pub fn start(args: &[OsString], data: &Path) -> Agent {
    let mut cmd = Command::new(bin("tribune"));
    cmd.args(args).env_remove("CONSUL_HTTP_ADDR");
    let (child, addr, log) = spawn_logged(cmd, "HTTP API listening on http://");
    Agent {
        child,
        url: format!("http://{addr}"),
        addr,
        log,
        data_dir: Some(data.to_path_buf()),
    }
}

/// Spawn servers `<name>0..2` in `dir` (not yet waited for).
pub fn three_servers(dir: &Path, name: &str) -> Vec<Member> {
    three_servers_with(dir, name, "{}")
}

/// [`three_servers`] with `conf` (a JSON object) in their config too.
pub fn three_servers_with(dir: &Path, name: &str, conf: &str) -> Vec<Member> {
    let ports = crate::free_ports(9);
    let perf = dir.join("perf.json");
    std::fs::write(&perf, r#"{"performance":{"raft_multiplier":1}}"#).unwrap();
    let extra = dir.join("servers.json");
    std::fs::write(&extra, conf).unwrap();
    let join: Vec<String> = (0..3)
        .flat_map(|i| {
            [
                "-retry-join".into(),
                format!("127.0.0.1:{}", ports[3 * i + 2]),
            ]
        })
        .collect();
    (0..3)
        .map(|i| {
            let node = format!("{name}{i}");
            let data = dir.join(&node);
            let p = |k: usize| ports[3 * i + k].to_string();
            let mut args: Vec<OsString> = [
                "agent",
                "-server",
                "-bootstrap-expect",
                "3",
                "-node",
                &node,
                // Port 0: the agent logs the one it got (a pre-picked port can
                // be taken by another test before the agent binds it).
                "-http-port",
                "0",
                "-server-port",
                &p(1),
                "-serf-lan-port",
                &p(2),
                "-dns-port",
                "-1",
                "-retry-interval",
                "1s",
            ]
            .iter()
            .map(Into::into)
            .collect();
            args.extend(["-data-dir".into(), data.clone().into_os_string()]);
            args.extend(["-config-file".into(), perf.clone().into_os_string()]);
            args.extend(["-config-file".into(), extra.clone().into_os_string()]);
            args.extend(join.iter().map(Into::into));
            Member {
                agent: start(&args, &data),
                args,
                data,
                rpc: format!("127.0.0.1:{}", p(1)),
                serf: format!("127.0.0.1:{}", p(2)),
            }
        })
        .collect()
}

/// A client agent `name` (data in `dir/<name>`, `conf` a JSON object in
/// its config) retry-joining `servers`.
pub fn client_agent(dir: &Path, name: &str, servers: &[Member], conf: &str) -> Agent {
    let data = dir.join(name);
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, conf).unwrap();
    let ports: Vec<String> = crate::free_ports(2).iter().map(u16::to_string).collect();
    let mut args: Vec<OsString> = [
        "agent",
        "-node",
        name,
        "-http-port",
        "0",
        "-server-port",
        &ports[0],
        "-serf-lan-port",
        &ports[1],
        "-dns-port",
        "-1",
        "-retry-interval",
        "1s",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.extend(["-data-dir".into(), data.clone().into_os_string()]);
    args.extend(["-config-file".into(), file.into_os_string()]);
    for m in servers {
        args.extend(["-retry-join".into(), m.serf.clone().into()]);
    }
    start(&args, &data)
}
