//! `tribune kv get|put|delete|export|import`, with Consul's messages and exit codes.

use std::io::{Read, Write};
use std::process::ExitCode;

use base64::Engine;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::Api;
use super::common::{fail, HttpOpts};
use crate::apiclient::key_path;

#[derive(Args, Debug)]
pub struct KvArgs {
    #[command(subcommand)]
    pub cmd: KvCmd,
}

#[derive(Subcommand, Debug)]
pub enum KvCmd {
    /// Read a key, or keys under a prefix.
    Get(GetArgs),
    /// Write a key.
    Put(PutArgs),
    /// Delete a key, or a prefix with -recurse.
    Delete(DeleteArgs),
    /// Export keys under a prefix as JSON.
    Export(ExportArgs),
    /// Import keys from JSON produced by export.
    Import(ImportArgs),
}

#[derive(Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// Base64-encode the value.
    #[arg(long)]
    base64: bool,
    /// Print all fields of the entry.
    #[arg(long)]
    detailed: bool,
    /// List keys only.
    #[arg(long)]
    keys: bool,
    /// Read every key under the prefix.
    #[arg(long)]
    recurse: bool,
    /// With -keys: collapse keys at this separator.
    #[arg(long, default_value = "/")]
    separator: String,
    key: Option<String>,
}

#[derive(Args, Debug)]
pub struct PutArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// The value is base64-encoded.
    #[arg(long)]
    base64: bool,
    /// Check-and-set: write only if the ModifyIndex matches -modify-index.
    #[arg(long)]
    cas: bool,
    #[arg(long = "modify-index")]
    modify_index: Option<u64>,
    /// Opaque unsigned integer stored with the key.
    #[arg(long)]
    flags: Option<u64>,
    /// Acquire the lock with this session.
    #[arg(long)]
    acquire: bool,
    /// Release the lock held by -session.
    #[arg(long)]
    release: bool,
    #[arg(long)]
    session: Option<String>,
    key: Option<String>,
    /// Value; `@file` reads a file, `-` reads stdin.
    value: Option<String>,
    #[arg(hide = true)]
    extra: Vec<String>,
}

#[derive(Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    http: HttpOpts,
    #[arg(long)]
    cas: bool,
    #[arg(long = "modify-index")]
    modify_index: Option<u64>,
    #[arg(long)]
    recurse: bool,
    key: Option<String>,
    #[arg(hide = true)]
    extra: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    http: HttpOpts,
    prefix: Option<String>,
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// Prepend this prefix to every imported key.
    #[arg(long, default_value = "")]
    prefix: String,
    /// JSON data; `@file` reads a file, `-` or nothing reads stdin.
    data: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Pair {
    key: String,
    #[serde(default)]
    flags: u64,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    create_index: u64,
    #[serde(default)]
    modify_index: u64,
    #[serde(default)]
    lock_index: u64,
    #[serde(default)]
    session: Option<String>,
}

impl Pair {
    fn bytes(&self) -> Vec<u8> {
        self.value
            .as_deref()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .unwrap_or_default()
    }
}

#[derive(Serialize, Deserialize)]
struct Exported {
    key: String,
    flags: u64,
    value: String,
}

fn ok(msg: impl std::fmt::Display) -> ExitCode {
    println!("{msg}");
    ExitCode::SUCCESS
}

pub fn run(a: KvArgs) -> ExitCode {
    match a.cmd {
        KvCmd::Get(g) => get(g),
        KvCmd::Put(p) => put(p),
        KvCmd::Delete(d) => delete(d),
        KvCmd::Export(e) => export(e),
        KvCmd::Import(i) => import(i),
    }
}

fn show_value(v: &[u8], b64: bool) -> String {
    if b64 {
        base64::engine::general_purpose::STANDARD.encode(v)
    } else {
        String::from_utf8_lossy(v).into_owned()
    }
}

fn detailed(p: &Pair, b64: bool) -> String {
    let session = p
        .session
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "-".into());
    let rows = [
        ("CreateIndex", p.create_index.to_string()),
        ("Flags", p.flags.to_string()),
        ("Key", p.key.clone()),
        ("LockIndex", p.lock_index.to_string()),
        ("ModifyIndex", p.modify_index.to_string()),
        ("Session", session),
        ("Value", show_value(&p.bytes(), b64)),
    ];
    rows.iter()
        .map(|(k, v)| format!("{k:<17}{v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn get(g: GetArgs) -> ExitCode {
    let api = Api::new(&g.http);
    let key = g.key.clone().unwrap_or_default();
    if key.is_empty() && !(g.recurse || g.keys) {
        return fail("Error! Missing KEY argument");
    }
    if g.keys {
        let q = [("keys", String::new()), ("separator", g.separator.clone())];
        return match api.call(Method::GET, &format!("kv/{}", key_path(&key)), &q, None) {
            Err(e) => fail(format!("Error querying Consul agent: {e}")),
            Ok(body) => {
                let keys: Vec<String> = body
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .unwrap_or_default();
                for k in keys {
                    println!("{k}");
                }
                ExitCode::SUCCESS
            }
        };
    }
    let q: Vec<(&str, String)> = if g.recurse {
        vec![("recurse", String::new())]
    } else {
        vec![]
    };
    let body = match api.call(Method::GET, &format!("kv/{}", key_path(&key)), &q, None) {
        Err(e) => return fail(format!("Error querying Consul agent: {e}")),
        Ok(b) => b,
    };
    let pairs: Vec<Pair> = match body.map(|b| serde_json::from_slice(&b)) {
        None => vec![],
        Some(Ok(p)) => p,
        Some(Err(e)) => return fail(format!("Error! Unreadable response: {e}")),
    };
    if g.recurse {
        let mut out = std::io::stdout().lock();
        for (i, p) in pairs.iter().enumerate() {
            if g.detailed {
                if i > 0 {
                    let _ = writeln!(out);
                }
                let _ = writeln!(out, "{}", detailed(p, g.base64));
            } else {
                let _ = writeln!(out, "{}:{}", p.key, show_value(&p.bytes(), g.base64));
            }
        }
        return ExitCode::SUCCESS;
    }
    match pairs.first() {
        None => fail(format!("Error! No key exists at: {key}")),
        Some(p) if g.detailed => ok(detailed(p, g.base64)),
        Some(p) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(show_value(&p.bytes(), g.base64).as_bytes());
            let _ = out.write_all(b"\n");
            ExitCode::SUCCESS
        }
    }
}

/// Resolve `@file`, `-` (stdin) or a literal.
fn read_arg(v: &str) -> Result<Vec<u8>, String> {
    if let Some(path) = v.strip_prefix('@') {
        return std::fs::read(path).map_err(|e| format!("Failed to read file: {e}"));
    }
    if v == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .map_err(|e| format!("Failed to read stdin: {e}"))?;
        return Ok(b);
    }
    Ok(v.as_bytes().to_vec())
}

fn put(p: PutArgs) -> ExitCode {
    let Some(key) = p.key.clone().filter(|k| !k.is_empty()) else {
        return fail("Error! Missing KEY argument");
    };
    if !p.extra.is_empty() {
        return fail(format!(
            "Too many arguments (expected 1 or 2, got {})",
            2 + p.extra.len()
        ));
    }
    if p.cas && p.modify_index.is_none() {
        return fail("Must specify -modify-index with -cas!");
    }
    if (p.acquire || p.release) && p.session.is_none() {
        return fail("Error! Missing -session (required with -acquire and -release)");
    }
    let mut value = match p.value.as_deref().map(read_arg).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return fail(format!("Error! {e}")),
    };
    if p.base64 {
        let text = String::from_utf8_lossy(&value).trim().to_string();
        value = match base64::engine::general_purpose::STANDARD.decode(text) {
            Ok(v) => v,
            Err(e) => return fail(format!("Error! Cannot base 64 decode data: {e}")),
        };
    }
    let mut q = vec![];
    if let Some(f) = p.flags {
        q.push(("flags", f.to_string()));
    }
    if p.cas {
        q.push(("cas", p.modify_index.unwrap_or(0).to_string()));
    }
    let session = p.session.clone().unwrap_or_default();
    if p.acquire {
        q.push(("acquire", session));
    } else if p.release {
        q.push(("release", session));
    }
    let api = Api::new(&p.http);
    let written = api.call(
        Method::PUT,
        &format!("kv/{}", key_path(&key)),
        &q,
        Some(value),
    );
    if p.acquire || p.release {
        let (done, verb) = if p.acquire {
            ("acquired", "acquire")
        } else {
            ("released", "release")
        };
        return match written {
            Err(e) => fail(format!("Error! Failed writing data: {e}")),
            Ok(Some(b)) if b.trim_ascii() == b"true" => {
                ok(format!("Success! Lock {done} on: {key}"))
            }
            Ok(_) => fail(format!("Error! Did not {verb} lock")),
        };
    }
    match written {
        Err(e) => fail(format!("Error! Failed writing data: {e}")),
        Ok(Some(b)) if b.trim_ascii() == b"true" => ok(format!("Success! Data written to: {key}")),
        Ok(_) if p.cas => fail(format!("Error! Did not write to {key}: CAS failed")),
        Ok(_) => fail(format!("Error! Failed writing data to {key}")),
    }
}

fn delete(d: DeleteArgs) -> ExitCode {
    let key = d.key.clone().unwrap_or_default();
    if key.is_empty() && !d.recurse {
        return fail("Error! Missing KEY argument");
    }
    if !d.extra.is_empty() {
        return fail(format!(
            "Too many arguments (expected 1, got {})",
            1 + d.extra.len()
        ));
    }
    if d.cas && d.recurse {
        return fail("Cannot specify both -cas and -recurse!");
    }
    if d.cas && d.modify_index.is_none() {
        return fail("Must specify -modify-index with -cas!");
    }
    let mut q = vec![];
    if d.recurse {
        q.push(("recurse", String::new()));
    }
    if d.cas {
        q.push(("cas", d.modify_index.unwrap_or(0).to_string()));
    }
    let api = Api::new(&d.http);
    match api.call(Method::DELETE, &format!("kv/{}", key_path(&key)), &q, None) {
        Err(e) => fail(format!("Error! Did not delete key {key}: {e}")),
        Ok(Some(b)) if b.trim_ascii() == b"true" => {
            if d.recurse {
                ok(format!("Success! Deleted keys with prefix: {key}"))
            } else {
                ok(format!("Success! Deleted key: {key}"))
            }
        }
        Ok(_) => fail(format!("Error! Did not delete key {key}: CAS failed")),
    }
}

fn export(e: ExportArgs) -> ExitCode {
    let api = Api::new(&e.http);
    let prefix = e.prefix.unwrap_or_default();
    let body = match api.call(
        Method::GET,
        &format!("kv/{}", key_path(&prefix)),
        &[("recurse", String::new())],
        None,
    ) {
        Err(err) => return fail(format!("Error querying Consul agent: {err}")),
        Ok(b) => b,
    };
    let pairs: Vec<Pair> = body
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let out: Vec<Exported> = pairs
        .into_iter()
        .map(|p| Exported {
            value: p.value.clone().unwrap_or_default(),
            key: p.key,
            flags: p.flags,
        })
        .collect();
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if let Err(err) = out.serialize(&mut ser) {
        return fail(format!("Error exporting KV data: {err}"));
    }
    ok(String::from_utf8_lossy(&buf))
}

fn import(i: ImportArgs) -> ExitCode {
    let data = match read_arg(i.data.as_deref().unwrap_or("-")) {
        Ok(d) => d,
        Err(e) => return fail(format!("Error! {e}")),
    };
    let entries: Vec<Value> = match serde_json::from_slice(&data) {
        Ok(v) => v,
        Err(e) => return fail(format!("Cannot unmarshal data: {e}")),
    };
    // Validate everything first: a bad entry imports nothing.
    let mut parsed = Vec::new();
    for (n, v) in entries.into_iter().enumerate() {
        let e: Exported = match serde_json::from_value(v) {
            Ok(e) => e,
            Err(err) => {
                return fail(format!(
                    "Error! Entry {n} is not {{key, flags, value}}: {err}"
                ))
            }
        };
        let value = match base64::engine::general_purpose::STANDARD.decode(&e.value) {
            Ok(v) => v,
            Err(err) => {
                return fail(format!(
                    "Error! Cannot base 64 decode value of {}: {err}",
                    e.key
                ))
            }
        };
        parsed.push((format!("{}{}", i.prefix, e.key), e.flags, value));
    }
    let api = Api::new(&i.http);
    for (key, flags, value) in parsed {
        let q = [("flags", flags.to_string())];
        match api.call(
            Method::PUT,
            &format!("kv/{}", key_path(&key)),
            &q,
            Some(value),
        ) {
            Ok(Some(b)) if b.trim_ascii() == b"true" => println!("Imported: {key}"),
            Ok(_) => return fail(format!("Error! Failed to write {key}")),
            Err(e) => return fail(format!("Error! Failed to write {key}: {e}")),
        }
    }
    ExitCode::SUCCESS
}
