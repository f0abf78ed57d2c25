//! One log event as a line, in the two shapes Consul's logger (hclog)
//! writes: text (`2024-05-01T10:00:00.123Z [INFO]  agent: Synced node info:
//! key=value`) and JSON (`{"@level":"info","@message":...}`, for
//! `monitor -log-json`). Module names are Consul's (`agent.server.raft`,
//! `agent.server.serf.lan`, ...), from the Rust module that logged.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level};

/// Message and fields of an event, in the order they were given.
#[derive(Default)]
pub struct Record {
    pub message: String,
    pub fields: Vec<(&'static str, String)>,
}

impl Visit for Record {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else {
            self.fields.push((field.name(), value.to_string()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // `%x` fields arrive here too, through Display's Debug shim.
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields.push((field.name(), text));
        }
    }
}

impl Record {
    pub fn of(event: &Event<'_>) -> Self {
        let mut r = Record::default();
        event.record(&mut r);
        r
    }
}

/// Consul's logger name for the code that logged (`target` is the Rust
/// module path, or an explicit `agent...` name).
pub fn module(target: &str, server: bool) -> String {
    if target.starts_with("agent") {
        return target.to_string();
    }
    let role = if server {
        "agent.server"
    } else {
        "agent.client"
    };
    let table: [(&str, String); 14] = [
        ("tribune::raft", "agent.server.raft".into()),
        ("openraft", "agent.server.raft".into()),
        ("tribune::cluster::gossip", format!("{role}.serf.lan")),
        ("foca", format!("{role}.memberlist.lan")),
        (
            "tribune::cluster::autopilot",
            "agent.server.autopilot".into(),
        ),
        ("tribune::cluster", format!("{role}.rpc")),
        ("tribune::session_ttl", "agent.server.session".into()),
        ("tribune::state", "agent.server.fsm".into()),
        ("tribune::http", "agent.http".into()),
        ("tribune::dns", "agent.dns".into()),
        ("hickory", "agent.dns".into()),
        ("tribune::watchplan", "agent.watch".into()),
        ("tribune::local::probe", "agent.checks".into()),
        ("tribune", "agent".into()),
    ];
    for (prefix, name) in table {
        if target.starts_with(prefix) {
            return name;
        }
    }
    target.to_string()
}

/// hclog's level tags, padded to one width.
fn level_tag(l: &Level) -> &'static str {
    match *l {
        Level::TRACE => "[TRACE] ",
        Level::DEBUG => "[DEBUG] ",
        Level::INFO => "[INFO]  ",
        Level::WARN => "[WARN]  ",
        Level::ERROR => "[ERROR] ",
    }
}

/// A value as hclog writes it: quoted when it holds spaces or quotes.
fn value_text(v: &str) -> String {
    if v.contains(|c: char| c.is_whitespace() || c == '"') {
        format!("{v:?}")
    } else {
        v.to_string()
    }
}

/// The text line, newline included.
pub fn text_line(level: &Level, module: &str, r: &Record) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    let mut out = format!("{now} {}{module}: {}", level_tag(level), r.message);
    if !r.fields.is_empty() {
        out.push(':');
        for (k, v) in &r.fields {
            let _ = write!(out, " {k}={}", value_text(v));
        }
    }
    out.push('\n');
    out
}

/// The JSON line, newline included.
pub fn json_line(level: &Level, module: &str, r: &Record) -> String {
    let mut m = Map::new();
    let level = match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    };
    m.insert("@level".into(), Value::from(level));
    m.insert("@message".into(), Value::from(r.message.clone()));
    m.insert("@module".into(), Value::from(module));
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ");
    m.insert("@timestamp".into(), Value::from(now.to_string()));
    for (k, v) in &r.fields {
        m.insert((*k).into(), Value::from(v.clone()));
    }
    let mut s = Value::Object(m).to_string();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_consuls() {
        assert_eq!(module("tribune::raft::node", true), "agent.server.raft");
        assert_eq!(module("openraft::core", true), "agent.server.raft");
        assert_eq!(
            module("tribune::cluster::gossip", false),
            "agent.client.serf.lan"
        );
        assert_eq!(module("tribune::local::sync", true), "agent");
        assert_eq!(module("agent.server", true), "agent.server");
        assert_eq!(module("h2::codec", true), "h2::codec");
    }

    #[test]
    fn lines_read_as_hclog_writes_them() {
        let r = Record {
            message: "Synced service".into(),
            fields: vec![("service", "web".into()), ("why", "two words".into())],
        };
        let line = text_line(&Level::INFO, "agent", &r);
        assert!(
            line.ends_with(" [INFO]  agent: Synced service: service=web why=\"two words\"\n"),
            "{line}"
        );
        let j: Value = serde_json::from_str(&json_line(&Level::WARN, "agent", &r)).unwrap();
        assert_eq!(j["@level"], "warn");
        assert_eq!(j["@module"], "agent");
        assert_eq!(j["service"], "web");
    }
}
