//! `tribune acl bootstrap|policy|token|role|set-agent-token`, with Consul's
//! flags and output (`command/acl/*`: the pretty formatters, `-format=json`).
//! Every subcommand takes the HTTP options, so `-token` and
//! `CONSUL_HTTP_TOKEN` pick the token it acts with.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::Api;
use super::common::{fail, HttpOpts};

#[derive(Args, Debug)]
pub struct AclArgs {
    #[command(subcommand)]
    pub cmd: AclCmd,
}

#[derive(Subcommand, Debug)]
pub enum AclCmd {
    /// Bootstrap the ACL system and create the initial management token.
    Bootstrap(FormatArgs),
    /// Manage ACL policies.
    Policy(PolicyArgs),
    /// Manage ACL tokens.
    Token(TokenArgs),
    /// Manage ACL roles.
    Role(RoleArgs),
    /// Assign tokens for the agent's use (default, agent, ...).
    #[command(name = "set-agent-token")]
    SetAgentToken(SetAgentTokenArgs),
}

#[derive(Args, Debug)]
pub struct FormatArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
}

#[derive(Args, Debug)]
pub struct SetAgentTokenArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// The kind of token: default, agent, agent_recovery, replication.
    kind: String,
    /// The secret of the token.
    #[arg(value_name = "token")]
    secret: String,
}

#[derive(Args, Debug)]
pub struct PolicyArgs {
    #[command(subcommand)]
    cmd: PolicyCmd,
}

#[derive(Subcommand, Debug)]
enum PolicyCmd {
    /// Create an ACL policy.
    Create(PolicyWrite),
    /// List ACL policies.
    List(FormatArgs),
    /// Read an ACL policy.
    Read(PolicyPick),
    /// Update an ACL policy.
    Update(PolicyWrite),
    /// Delete an ACL policy.
    Delete(PolicyPick),
}

#[derive(Args, Debug)]
struct PolicyWrite {
    #[command(flatten)]
    out: FormatArgs,
    /// The ID of the policy to update.
    #[arg(long)]
    id: Option<String>,
    /// The policy's name.
    #[arg(long)]
    name: Option<String>,
    /// A description of the policy.
    #[arg(long)]
    description: Option<String>,
    /// The rules (HCL or JSON); `@file` reads them from a file.
    #[arg(long)]
    rules: Option<String>,
    /// A datacenter the policy is valid in (repeatable).
    #[arg(long = "valid-datacenter")]
    datacenters: Vec<String>,
}

#[derive(Args, Debug)]
struct PolicyPick {
    #[command(flatten)]
    out: FormatArgs,
    /// The policy's ID.
    #[arg(long)]
    id: Option<String>,
    /// The policy's name.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    #[command(subcommand)]
    cmd: TokenCmd,
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Create an ACL token.
    Create(TokenWrite),
    /// List ACL tokens.
    List(FormatArgs),
    /// Read an ACL token.
    Read(TokenPick),
    /// Update an ACL token.
    Update(TokenWrite),
    /// Delete an ACL token.
    Delete(TokenPick),
    /// Clone an ACL token.
    Clone(TokenPick),
}

#[derive(Args, Debug)]
struct TokenWrite {
    #[command(flatten)]
    out: FormatArgs,
    /// The accessor ID of the token to update (or to create with).
    #[arg(long)]
    id: Option<String>,
    /// The accessor ID for a new token.
    #[arg(long)]
    accessor: Option<String>,
    /// The secret ID for a new token.
    #[arg(long)]
    secret: Option<String>,
    /// A description of the token.
    #[arg(long)]
    description: Option<String>,
    /// A policy to link, by ID (repeatable).
    #[arg(long = "policy-id")]
    policy_ids: Vec<String>,
    /// A policy to link, by name (repeatable).
    #[arg(long = "policy-name")]
    policy_names: Vec<String>,
    /// A role to link, by ID (repeatable).
    #[arg(long = "role-id")]
    role_ids: Vec<String>,
    /// A role to link, by name (repeatable).
    #[arg(long = "role-name")]
    role_names: Vec<String>,
    /// A token local to this datacenter.
    #[arg(long)]
    local: bool,
}

#[derive(Args, Debug)]
struct TokenPick {
    #[command(flatten)]
    out: FormatArgs,
    /// The accessor ID of the token.
    #[arg(long)]
    id: Option<String>,
    /// The token the request is made with (`read -self`).
    #[arg(long = "self")]
    me: bool,
    /// A description for the clone.
    #[arg(long)]
    description: Option<String>,
}

#[derive(Args, Debug)]
pub struct RoleArgs {
    #[command(subcommand)]
    cmd: RoleCmd,
}

#[derive(Subcommand, Debug)]
enum RoleCmd {
    /// Create an ACL role.
    Create(RoleWrite),
    /// List ACL roles.
    List(FormatArgs),
    /// Read an ACL role.
    Read(PolicyPick),
    /// Update an ACL role.
    Update(RoleWrite),
    /// Delete an ACL role.
    Delete(PolicyPick),
}

#[derive(Args, Debug)]
struct RoleWrite {
    #[command(flatten)]
    out: FormatArgs,
    /// The ID of the role to update.
    #[arg(long)]
    id: Option<String>,
    /// The role's name.
    #[arg(long)]
    name: Option<String>,
    /// A description of the role.
    #[arg(long)]
    description: Option<String>,
    /// A policy to link, by ID (repeatable).
    #[arg(long = "policy-id")]
    policy_ids: Vec<String>,
    /// A policy to link, by name (repeatable).
    #[arg(long = "policy-name")]
    policy_names: Vec<String>,
}

/// One API call with a JSON answer (`None`: 404).
fn call(api: &Api, m: Method, path: &str, body: Option<Value>) -> Result<Option<Value>, String> {
    let body = body.map(|b| b.to_string().into_bytes());
    match api.call(m, path, &[], body) {
        Ok(Some(b)) if b.is_empty() => Ok(Some(Value::Null)),
        Ok(Some(b)) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| e.to_string()),
        Ok(None) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

fn must(api: &Api, m: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
    call(api, m, path, body)?.ok_or_else(|| "Unexpected response code: 404".to_string())
}

fn print_as(format: &str, v: &Value, pretty: impl Fn(&Value) -> String) -> ExitCode {
    match format {
        "json" => println!("{}", json_indent(v)),
        "pretty" => print!("{}", pretty(v)),
        other => return fail(format!("Unknown format: {other}")),
    }
    ExitCode::SUCCESS
}

/// Go's `json.MarshalIndent(v, "", "    ")`.
fn json_indent(v: &Value) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    let _ = serde::Serialize::serialize(v, &mut ser);
    String::from_utf8_lossy(&out).into_owned()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("")
}

/// Go's `%v` of a time: `2026-12-01 16:19:07.630073107 +0000 UTC`.
fn go_time(rfc3339: &str) -> String {
    use chrono::Timelike;
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let t = t.with_timezone(&chrono::Utc);
    // Go prints the fraction without trailing zeros, and none when zero.
    let frac = match t.nanosecond() {
        0 => String::new(),
        n => format!(".{n:09}").trim_end_matches('0').to_string(),
    };
    format!("{}{frac} +0000 UTC", t.format("%Y-%m-%d %H:%M:%S"))
}

fn links(out: &mut String, title: &str, list: &Value, indent: &str) {
    let Some(items) = list.as_array().filter(|l| !l.is_empty()) else {
        return;
    };
    out.push_str(&format!("{title}:\n"));
    for l in items {
        out.push_str(&format!("{indent}{} - {}\n", s(l, "ID"), s(l, "Name")));
    }
}

/// Consul's pretty token.
pub fn format_token(t: &Value) -> String {
    let mut o = String::new();
    o += &format!("AccessorID:       {}\n", s(t, "AccessorID"));
    o += &format!("SecretID:         {}\n", s(t, "SecretID"));
    o += &format!("Description:      {}\n", s(t, "Description"));
    o += &format!(
        "Local:            {}\n",
        t["Local"].as_bool().unwrap_or(false)
    );
    o += &format!("Create Time:      {}\n", go_time(s(t, "CreateTime")));
    links(&mut o, "Policies", &t["Policies"], "   ");
    links(&mut o, "Roles", &t["Roles"], "   ");
    o
}

/// Consul's pretty policy.
pub fn format_policy(p: &Value) -> String {
    format!(
        "ID:           {}\nName:         {}\nDescription:  {}\nDatacenters:  {}\nRules:\n{}\n",
        s(p, "ID"),
        s(p, "Name"),
        s(p, "Description"),
        datacenters(p),
        s(p, "Rules")
    )
}

fn datacenters(p: &Value) -> String {
    p["Datacenters"]
        .as_array()
        .map(|d| {
            d.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn format_policy_list(list: &Value) -> String {
    let mut o = String::new();
    for p in list.as_array().into_iter().flatten() {
        o += &format!(
            "{}:\n   ID:           {}\n   Description:  {}\n   Datacenters:  {}\n",
            s(p, "Name"),
            s(p, "ID"),
            s(p, "Description"),
            datacenters(p)
        );
    }
    o
}

/// Consul's pretty role.
pub fn format_role(r: &Value) -> String {
    let mut o = format!(
        "ID:           {}\nName:         {}\nDescription:  {}\n",
        s(r, "ID"),
        s(r, "Name"),
        s(r, "Description")
    );
    links(&mut o, "Policies", &r["Policies"], "   ");
    o
}

fn joined(list: &Value, f: fn(&Value) -> String) -> String {
    let parts: Vec<String> = list.as_array().into_iter().flatten().map(f).collect();
    parts.join("\n")
}

pub fn run(a: AclArgs) -> ExitCode {
    match a.cmd {
        AclCmd::Bootstrap(f) => {
            match must(&Api::new(&f.http), Method::PUT, "acl/bootstrap", None) {
                Ok(t) => print_as(&f.format, &t, format_token),
                Err(e) => fail(format!("Failed ACL bootstrapping: {e}")),
            }
        }
        AclCmd::SetAgentToken(t) => {
            let body = json!({ "Token": t.secret });
            let path = format!("agent/token/{}", t.kind);
            match must(&Api::new(&t.http), Method::PUT, &path, Some(body)) {
                Ok(_) => {
                    println!("ACL token {:?} set successfully", t.kind);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("Error setting token {:?}: {e}", t.kind)),
            }
        }
        AclCmd::Policy(p) => policy(p.cmd),
        AclCmd::Token(t) => token(t.cmd),
        AclCmd::Role(r) => role(r.cmd),
    }
}

/// `@file` reads a file; anything else is the text itself.
fn text_or_file(v: &str) -> Result<String, String> {
    match v.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("Failed to read {path}: {e}"))
        }
        None => Ok(v.to_string()),
    }
}

/// The ID for `-id` or `-name` (looked up by name).
fn pick_id(
    api: &Api,
    kind: &str,
    id: &Option<String>,
    name: &Option<String>,
) -> Result<String, String> {
    match (id, name) {
        (Some(id), _) => Ok(id.clone()),
        (None, Some(n)) => {
            let v = must(api, Method::GET, &format!("acl/{kind}/name/{n}"), None)?;
            Ok(s(&v, "ID").to_string())
        }
        (None, None) => Err(format!("Must specify either the {kind} ID or name")),
    }
}

fn policy(cmd: PolicyCmd) -> ExitCode {
    match cmd {
        PolicyCmd::Create(w) | PolicyCmd::Update(w) if w.id.is_none() && w.name.is_none() => {
            let _ = w;
            fail("Missing require '-name' flag")
        }
        PolicyCmd::Create(w) => {
            let api = Api::new(&w.out.http);
            let rules = match w.rules.as_deref().map(text_or_file).transpose() {
                Ok(r) => r.unwrap_or_default(),
                Err(e) => return fail(e),
            };
            let body = json!({
                "Name": w.name, "Description": w.description.unwrap_or_default(),
                "Rules": rules, "Datacenters": w.datacenters,
            });
            match must(&api, Method::PUT, "acl/policy", Some(body)) {
                Ok(p) => print_as(&w.out.format, &p, format_policy),
                Err(e) => fail(format!("Failed to create new policy: {e}")),
            }
        }
        PolicyCmd::Update(w) => policy_update(w),
        PolicyCmd::List(f) => match must(&Api::new(&f.http), Method::GET, "acl/policies", None) {
            Ok(l) => print_as(&f.format, &l, format_policy_list),
            Err(e) => fail(format!("Failed to retrieve the policy list: {e}")),
        },
        PolicyCmd::Read(p) => {
            let api = Api::new(&p.out.http);
            let r = pick_id(&api, "policy", &p.id, &p.name)
                .and_then(|id| must(&api, Method::GET, &format!("acl/policy/{id}"), None));
            match r {
                Ok(v) => print_as(&p.out.format, &v, format_policy),
                Err(e) => fail(format!("Error reading policy: {e}")),
            }
        }
        PolicyCmd::Delete(p) => {
            let api = Api::new(&p.out.http);
            let r = pick_id(&api, "policy", &p.id, &p.name).and_then(|id| {
                must(&api, Method::DELETE, &format!("acl/policy/{id}"), None).map(|_| id)
            });
            match r {
                Ok(id) => {
                    println!("Policy {id:?} deleted successfully");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("Error deleting policy: {e}")),
            }
        }
    }
}

fn policy_update(w: PolicyWrite) -> ExitCode {
    let api = Api::new(&w.out.http);
    let Some(id) = w.id.clone() else {
        return fail("Must specify the -id parameter");
    };
    let mut p = match must(&api, Method::GET, &format!("acl/policy/{id}"), None) {
        Ok(p) => p,
        Err(e) => return fail(format!("Error reading policy {id:?}: {e}")),
    };
    if let Some(n) = w.name {
        p["Name"] = json!(n);
    }
    if let Some(d) = w.description {
        p["Description"] = json!(d);
    }
    if let Some(r) = w.rules {
        match text_or_file(&r) {
            Ok(r) => p["Rules"] = json!(r),
            Err(e) => return fail(e),
        }
    }
    if !w.datacenters.is_empty() {
        p["Datacenters"] = json!(w.datacenters);
    }
    match must(&api, Method::PUT, &format!("acl/policy/{id}"), Some(p)) {
        Ok(p) => print_as(&w.out.format, &p, format_policy),
        Err(e) => fail(format!("Error updating policy {id:?}: {e}")),
    }
}

fn link_list(ids: &[String], names: &[String]) -> Vec<Value> {
    ids.iter()
        .map(|i| json!({ "ID": i }))
        .chain(names.iter().map(|n| json!({ "Name": n })))
        .collect()
}

fn token(cmd: TokenCmd) -> ExitCode {
    match cmd {
        TokenCmd::Create(w) => {
            let api = Api::new(&w.out.http);
            let body = json!({
                "AccessorID": w.accessor.or(w.id).unwrap_or_default(),
                "SecretID": w.secret.unwrap_or_default(),
                "Description": w.description.unwrap_or_default(),
                "Policies": link_list(&w.policy_ids, &w.policy_names),
                "Roles": link_list(&w.role_ids, &w.role_names),
                "Local": w.local,
            });
            match must(&api, Method::PUT, "acl/token", Some(body)) {
                Ok(t) => print_as(&w.out.format, &t, format_token),
                Err(e) => fail(format!("Failed to create new token: {e}")),
            }
        }
        TokenCmd::Update(w) => token_update(w),
        TokenCmd::List(f) => match must(&Api::new(&f.http), Method::GET, "acl/tokens", None) {
            Ok(l) => print_as(&f.format, &l, |l| joined(l, format_token)),
            Err(e) => fail(format!("Failed to retrieve the token list: {e}")),
        },
        TokenCmd::Read(p) => {
            let api = Api::new(&p.out.http);
            let path = match (&p.id, p.me) {
                (_, true) => "acl/token/self".to_string(),
                (Some(id), false) => format!("acl/token/{id}"),
                (None, false) => return fail("Must specify the -id parameter"),
            };
            match must(&api, Method::GET, &path, None) {
                Ok(t) => print_as(&p.out.format, &t, format_token),
                Err(e) => fail(format!("Error reading token: {e}")),
            }
        }
        TokenCmd::Delete(p) => {
            let Some(id) = p.id else {
                return fail("Must specify the -id parameter");
            };
            let api = Api::new(&p.out.http);
            match must(&api, Method::DELETE, &format!("acl/token/{id}"), None) {
                Ok(_) => {
                    println!("Token {id:?} deleted successfully");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("Error deleting token {id:?}: {e}")),
            }
        }
        TokenCmd::Clone(p) => {
            let Some(id) = p.id else {
                return fail("Must specify the -id parameter");
            };
            let api = Api::new(&p.out.http);
            let body = json!({ "Description": p.description.unwrap_or_default() });
            match must(
                &api,
                Method::PUT,
                &format!("acl/token/{id}/clone"),
                Some(body),
            ) {
                Ok(t) => print_as(&p.out.format, &t, format_token),
                Err(e) => fail(format!("Error cloning token: {e}")),
            }
        }
    }
}

fn token_update(w: TokenWrite) -> ExitCode {
    let Some(id) = w.id.clone() else {
        return fail("Must specify the -id parameter");
    };
    let api = Api::new(&w.out.http);
    let mut t = match must(&api, Method::GET, &format!("acl/token/{id}"), None) {
        Ok(t) => t,
        Err(e) => return fail(format!("Failed to get token {id:?}: {e}")),
    };
    if let Some(d) = w.description {
        t["Description"] = json!(d);
    }
    let policies = link_list(&w.policy_ids, &w.policy_names);
    if !policies.is_empty() {
        t["Policies"] = json!(policies);
    }
    let roles = link_list(&w.role_ids, &w.role_names);
    if !roles.is_empty() {
        t["Roles"] = json!(roles);
    }
    // The server keeps the secret; the one a reader sees may be hidden.
    if let Some(o) = t.as_object_mut() {
        o.remove("SecretID");
    }
    match must(&api, Method::PUT, &format!("acl/token/{id}"), Some(t)) {
        Ok(t) => print_as(&w.out.format, &t, format_token),
        Err(e) => fail(format!("Failed to update token {id:?}: {e}")),
    }
}

fn role(cmd: RoleCmd) -> ExitCode {
    match cmd {
        RoleCmd::Create(w) => {
            let api = Api::new(&w.out.http);
            let body = json!({
                "Name": w.name.unwrap_or_default(),
                "Description": w.description.unwrap_or_default(),
                "Policies": link_list(&w.policy_ids, &w.policy_names),
            });
            match must(&api, Method::PUT, "acl/role", Some(body)) {
                Ok(r) => print_as(&w.out.format, &r, format_role),
                Err(e) => fail(format!("Failed to create new role: {e}")),
            }
        }
        RoleCmd::Update(w) => {
            let Some(id) = w.id.clone() else {
                return fail("Must specify the -id parameter");
            };
            let api = Api::new(&w.out.http);
            let mut r = match must(&api, Method::GET, &format!("acl/role/{id}"), None) {
                Ok(r) => r,
                Err(e) => return fail(format!("Error reading role {id:?}: {e}")),
            };
            if let Some(n) = w.name {
                r["Name"] = json!(n);
            }
            if let Some(d) = w.description {
                r["Description"] = json!(d);
            }
            let policies = link_list(&w.policy_ids, &w.policy_names);
            if !policies.is_empty() {
                r["Policies"] = json!(policies);
            }
            match must(&api, Method::PUT, &format!("acl/role/{id}"), Some(r)) {
                Ok(r) => print_as(&w.out.format, &r, format_role),
                Err(e) => fail(format!("Error updating role {id:?}: {e}")),
            }
        }
        RoleCmd::List(f) => match must(&Api::new(&f.http), Method::GET, "acl/roles", None) {
            Ok(l) => print_as(&f.format, &l, |l| joined(l, format_role)),
            Err(e) => fail(format!("Failed to retrieve the role list: {e}")),
        },
        RoleCmd::Read(p) => {
            let api = Api::new(&p.out.http);
            let r = pick_id(&api, "role", &p.id, &p.name)
                .and_then(|id| must(&api, Method::GET, &format!("acl/role/{id}"), None));
            match r {
                Ok(v) => print_as(&p.out.format, &v, format_role),
                Err(e) => fail(format!("Error reading role: {e}")),
            }
        }
        RoleCmd::Delete(p) => {
            let api = Api::new(&p.out.http);
            let r = pick_id(&api, "role", &p.id, &p.name).and_then(|id| {
                must(&api, Method::DELETE, &format!("acl/role/{id}"), None).map(|_| id)
            });
            match r {
                Ok(id) => {
                    println!("Role {id:?} deleted successfully");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(format!("Error deleting role: {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pretty token as Consul's formatter lays it out.
    #[test]
    fn pretty_token() {
        let t = json!({
            "AccessorID": "a", "SecretID": "s", "Description": "d", "Local": false,
            "CreateTime": "2026-12-01T16:19:07.5Z",
            "Policies": [{"ID": "p", "Name": "app"}],
        });
        assert_eq!(
            format_token(&t),
            "AccessorID:       a\nSecretID:         s\nDescription:      d\nLocal:            false\n\
             Create Time:      2026-12-01 16:19:07.5 +0000 UTC\nPolicies:\n   p - app\n"
        );
        assert!(json_indent(&json!({"a": 1})).contains("\n    \"a\": 1"));
    }
}
