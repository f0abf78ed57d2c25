//! `tribune services register|deregister`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::Api;
use super::common::{fail, HttpOpts};
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

/// Service definitions in a file: `service`, `services`, or a bare definition.
fn file_services(path: &str) -> Result<Vec<Value>, String> {
    let v = crate::config::read_file(std::path::Path::new(path)).map_err(|e| e.to_string())?;
    // Keys are checked as Consul checks a config file, in their spelling.
    let keys = |r: Result<(), consul_keys::UnknownKey>| {
        r.map_err(|e| format!("failed to parse {path}: {e}"))
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
