//! `tribune services register|deregister`, `tribune reload`,
//! `tribune members`, `tribune catalog services|nodes|datacenters`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::Api;
use super::HttpOpts;
use crate::consul_keys;
use crate::local::defs::normalize;

#[derive(Args, Debug)]
pub struct ServicesArgs {
    #[command(subcommand)]
    pub cmd: ServicesCmd,
}

#[derive(Subcommand, Debug)]
pub enum ServicesCmd {
    /// Register services from a definition file, or one service from flags.
    Register(RegisterArgs),
    /// Deregister a service by -id, or the services of a definition file.
    Deregister(DeregisterArgs),
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    #[command(flatten)]
    http: HttpOpts,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    address: Option<String>,
    #[arg(long)]
    port: Option<u16>,
    /// Tag (repeatable).
    #[arg(long)]
    tag: Vec<String>,
    /// key=value (repeatable).
    #[arg(long)]
    meta: Vec<String>,
    /// Definition files (`{"service": {...}}` or `{"services": [...]}`, JSON or HCL).
    files: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DeregisterArgs {
    #[command(flatten)]
    http: HttpOpts,
    #[arg(long)]
    id: Option<String>,
    files: Vec<String>,
}

#[derive(Args, Debug)]
pub struct SimpleArgs {
    #[command(flatten)]
    pub http: HttpOpts,
}

#[derive(Args, Debug)]
pub struct MembersArgs {
    #[command(flatten)]
    pub http: HttpOpts,
    /// Provides detailed information about nodes.
    #[arg(long)]
    pub detailed: bool,
    /// If provided, output is filtered to only nodes matching the regular
    /// expression for status.
    #[arg(long, default_value = ".*")]
    pub status: String,
}

#[derive(Args, Debug)]
pub struct CatalogArgs {
    #[command(subcommand)]
    pub cmd: CatalogCmd,
}

#[derive(Subcommand, Debug)]
pub enum CatalogCmd {
    /// List services.
    Services(CatalogListArgs),
    /// List nodes.
    Nodes(SimpleArgs),
    /// List datacenters.
    Datacenters(SimpleArgs),
}

#[derive(Args, Debug)]
pub struct CatalogListArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// Show tags too.
    #[arg(long)]
    tags: bool,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(1)
}

/// Service definitions in a file: `service`, `services`, or a bare definition.
fn file_services(path: &str) -> Result<Vec<Value>, String> {
    let v = crate::config::read_file(std::path::Path::new(path)).map_err(|e| e.to_string())?;
    // Keys are checked as Consul checks a config file, in their spelling.
    let keys = |r: Result<(), String>| {
        r.map_err(|key| format!("failed to parse {path}: invalid config key {key}"))
    };
    if let Some(raw) = v.as_object() {
        for (k, d) in raw {
            match k.to_ascii_lowercase().as_str() {
                "service" => keys(consul_keys::service_definition(d, k))?,
                "services" => {
                    for (i, s) in d.as_array().into_iter().flatten().enumerate() {
                        keys(consul_keys::service_definition(s, &format!("{k}[{i}]")))?;
                    }
                }
                _ => {}
            }
        }
    }
    let n = normalize(&v);
    let obj = n
        .as_object()
        .ok_or_else(|| format!("{path}: expected an object"))?;
    if let Some(s) = obj.get("service") {
        return Ok(vec![s.clone()]);
    }
    if let Some(Value::Array(a)) = obj.get("services") {
        return Ok(a.clone());
    }
    if obj.contains_key("name") {
        // A bare definition (a tribune extension): its keys are a service's.
        keys(consul_keys::service_definition(&v, "service"))?;
        return Ok(vec![n.clone()]);
    }
    Err(format!(
        "{path}: no \"service\" or \"services\" definition found"
    ))
}

pub fn run(a: ServicesArgs) -> ExitCode {
    match a.cmd {
        ServicesCmd::Register(r) => register(r),
        ServicesCmd::Deregister(d) => deregister(d),
    }
}

fn register(r: RegisterArgs) -> ExitCode {
    let mut defs = Vec::new();
    for f in &r.files {
        match file_services(f) {
            Ok(v) => defs.extend(v),
            Err(e) => return fail(format!("Error! {e}")),
        }
    }
    if let Some(name) = &r.name {
        let mut meta = BTreeMap::new();
        for m in &r.meta {
            let Some((k, v)) = m.split_once('=') else {
                return fail(format!("Error! -meta {m:?} must be key=value"));
            };
            meta.insert(k.to_string(), v.to_string());
        }
        defs.push(json!({
            "name": name, "id": r.id.clone().unwrap_or_default(), "address": r.address.clone().unwrap_or_default(),
            "port": r.port.unwrap_or(0), "tags": r.tag, "meta": meta,
        }));
    }
    if defs.is_empty() {
        return fail("Error! Give a definition file or -name");
    }
    // Validate every definition before registering any.
    for d in &defs {
        if let Err(e) = crate::local::defs::parse_service(d, true) {
            return fail(format!("Error! Invalid service definition: {e}"));
        }
    }
    let api = Api::new(&r.http);
    for d in defs {
        let name = d
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let body = serde_json::to_vec(&d).unwrap_or_default();
        if let Err(e) = api.call(Method::PUT, "agent/service/register", &[], Some(body)) {
            return fail(format!("Error registering service {name:?}: {e}"));
        }
        println!("Registered service: {name}");
    }
    ExitCode::SUCCESS
}

fn deregister(d: DeregisterArgs) -> ExitCode {
    let mut ids = Vec::new();
    if let Some(id) = &d.id {
        ids.push(id.clone());
    }
    for f in &d.files {
        match file_services(f) {
            Ok(v) => {
                for s in v {
                    match crate::local::defs::parse_service(&s, true) {
                        Ok(def) => ids.push(def.id),
                        Err(e) => {
                            return fail(format!("Error! Invalid service definition in {f}: {e}"))
                        }
                    }
                }
            }
            Err(e) => return fail(format!("Error! {e}")),
        }
    }
    if ids.is_empty() {
        return fail("Error! Give -id or a definition file");
    }
    let api = Api::new(&d.http);
    for id in ids {
        let path = format!(
            "agent/service/deregister/{}",
            crate::apiclient::key_path(&id)
        );
        match api.call(Method::PUT, &path, &[], None) {
            Err(e) => return fail(format!("Error deregistering service {id:?}: {e}")),
            Ok(None) => {
                return fail(format!(
                    "Error deregistering service {id:?}: Unknown service ID"
                ))
            }
            Ok(Some(_)) => {}
        }
        println!("Deregistered service: {id}");
    }
    ExitCode::SUCCESS
}

pub fn reload(a: SimpleArgs) -> ExitCode {
    match Api::new(&a.http).call(Method::PUT, "agent/reload", &[], None) {
        Ok(_) => {
            println!("Configuration reload triggered");
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("Error reloading: {e}")),
    }
}

pub(crate) fn get_json(api: &Api, path: &str) -> Result<Value, String> {
    match api.call(Method::GET, path, &[], None) {
        Ok(Some(b)) => serde_json::from_slice(&b).map_err(|e| e.to_string()),
        Ok(None) => Err("not found".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Print rows as space-padded columns.
pub(crate) fn table(rows: Vec<Vec<String>>) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// Serf's member status names, by their number in `/v1/agent/members`.
fn status_name(code: Option<u64>) -> &'static str {
    match code {
        Some(1) => "alive",
        Some(2) => "leaving",
        Some(3) => "left",
        Some(4) => "failed",
        _ => "none",
    }
}

/// `ip:port` as Go's `net.TCPAddr` prints it (IPv6 in brackets).
fn member_addr(m: &Value) -> String {
    let ip = m["Addr"].as_str().unwrap_or("");
    let port = m["Port"].as_u64().unwrap_or(0);
    match ip.parse::<std::net::IpAddr>() {
        Ok(ip) => std::net::SocketAddr::new(ip, port as u16).to_string(),
        Err(_) => format!("{ip}:{port}"),
    }
}

pub fn members(a: MembersArgs) -> ExitCode {
    let status_re = match regex::Regex::new(&a.status) {
        Ok(r) => r,
        Err(e) => return fail(format!("Failed to compile status regexp: {e}")),
    };
    let v = match get_json(&Api::new(&a.http), "agent/members") {
        Ok(v) => v,
        Err(e) => return fail(format!("Error retrieving members: {e}")),
    };
    let mut list: Vec<Value> = v.as_array().cloned().unwrap_or_default();
    for m in &mut list {
        // As Consul shows them: the default partition, and servers in every segment.
        let server = m["Tags"]["role"] == "consul";
        if let Some(tags) = m["Tags"].as_object_mut() {
            if tags
                .get("partition")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                tags.insert("partition".into(), json!("default"));
            }
            if server {
                tags.insert("segment".into(), json!("<all>"));
            } else if tags
                .get("segment")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                tags.insert("segment".into(), json!("<default>"));
            }
        }
    }
    list.retain(|m| status_re.is_match(status_name(m["Status"].as_u64())));
    if list.is_empty() {
        // No member matches: Consul prints nothing and exits 2.
        return ExitCode::from(2);
    }
    let tag = |m: &Value, k: &str| m["Tags"][k].as_str().unwrap_or("").to_string();
    // Servers first, then by segment, partition and name.
    list.sort_by_key(|m| {
        (
            tag(m, "role") != "consul",
            tag(m, "partition") != "default",
            tag(m, "segment"),
            tag(m, "partition"),
            m["Name"].as_str().unwrap_or("").to_string(),
        )
    });
    let rows = if a.detailed {
        detailed_rows(&list)
    } else {
        standard_rows(&list)
    };
    table(rows);
    ExitCode::SUCCESS
}

fn standard_rows(list: &[Value]) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "Node",
        "Address",
        "Status",
        "Type",
        "Build",
        "Protocol",
        "DC",
        "Partition",
        "Segment",
    ]
    .map(String::from)
    .to_vec()];
    for m in list {
        let tag = |k: &str| m["Tags"][k].as_str().unwrap_or("").to_string();
        let kind = match tag("role").as_str() {
            "consul" => "server",
            "node" => "client",
            _ => "unknown",
        };
        let name = m["Name"].as_str().unwrap_or("").to_string();
        let status = status_name(m["Status"].as_u64()).to_string();
        if kind == "unknown" {
            rows.push(vec![name, member_addr(m), status, kind.into()]);
            continue;
        }
        let build = tag("build");
        let build = match build.split_once(':') {
            _ if build.is_empty() => "< 0.3".to_string(),
            Some((b, _)) => b.to_string(),
            None => build,
        };
        rows.push(vec![
            name,
            member_addr(m),
            status,
            kind.into(),
            build,
            tag("vsn"),
            tag("dc"),
            tag("partition"),
            tag("segment"),
        ]);
    }
    rows
}

/// `-detailed`: every tag, as `k=v` pairs sorted by key.
fn detailed_rows(list: &[Value]) -> Vec<Vec<String>> {
    let mut rows = vec![["Node", "Address", "Status", "Tags"]
        .map(String::from)
        .to_vec()];
    for m in list {
        let tags: BTreeMap<&str, &str> = m["Tags"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
            .collect();
        let pairs: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(vec![
            m["Name"].as_str().unwrap_or("").to_string(),
            member_addr(m),
            status_name(m["Status"].as_u64()).to_string(),
            pairs.join(","),
        ]);
    }
    rows
}

pub fn catalog(a: CatalogArgs) -> ExitCode {
    match a.cmd {
        CatalogCmd::Services(c) => match get_json(&Api::new(&c.http), "catalog/services") {
            Ok(Value::Object(m)) => {
                for (name, tags) in m {
                    if c.tags {
                        let t: Vec<&str> = tags
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        println!("{name}  {}", t.join(","));
                    } else {
                        println!("{name}");
                    }
                }
                ExitCode::SUCCESS
            }
            Ok(_) => fail("Error listing services: unexpected response"),
            Err(e) => fail(format!("Error listing services: {e}")),
        },
        CatalogCmd::Nodes(s) => match get_json(&Api::new(&s.http), "catalog/nodes") {
            Ok(v) => {
                let mut rows = vec![["Node", "ID", "Address", "DC"].map(String::from).to_vec()];
                for n in v.as_array().into_iter().flatten() {
                    let f = |k: &str| n[k].as_str().unwrap_or("").to_string();
                    rows.push(vec![
                        f("Node"),
                        f("ID").chars().take(8).collect(),
                        f("Address"),
                        f("Datacenter"),
                    ]);
                }
                table(rows);
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("Error listing nodes: {e}")),
        },
        CatalogCmd::Datacenters(s) => match get_json(&Api::new(&s.http), "catalog/datacenters") {
            Ok(v) => {
                for d in v.as_array().into_iter().flatten() {
                    println!("{}", d.as_str().unwrap_or(""));
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("Error listing datacenters: {e}")),
        },
    }
}
