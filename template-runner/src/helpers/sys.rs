//! The process's surroundings: environment (`getenv env`), time
//! (`datetime timestamp`), files (`fileExists file`) and `plugin` (runs a
//! program; off unless `-enable-plugin` is given).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::gotime;
use super::{both, s_arg, text, Helper, R};
use crate::dependency::{Data, Dependency};
use crate::render::Ctx;

pub const HELPERS: &[Helper] = &[
    both("getenv", getenv),
    both("env", env),
    both("datetime", datetime),
    both("timestamp", timestamp),
    both("fileExists", file_exists),
    both("file", file),
    both("plugin", plugin),
];

/// How long a plugin may run (consul-template's limit).
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Output kept from a plugin.
const PLUGIN_MAX_OUTPUT: u64 = 1 << 20;

/// confd `getenv key [default]`: the default when unset or empty.
fn getenv(_: &Ctx, args: &[Value]) -> R {
    let k = s_arg(args, 0, "variable")?;
    Ok(json!(std::env::var(&k)
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| args.get(1).map(text))
        .unwrap_or_default()))
}

/// consul-template `env key` (ours: an optional default when unset).
fn env(_: &Ctx, args: &[Value]) -> R {
    let k = s_arg(args, 0, "variable")?;
    Ok(json!(std::env::var(&k)
        .ok()
        .or_else(|| args.get(1).map(text))
        .unwrap_or_default()))
}

/// confd `datetime`: now, local time. Go templates print it as Go prints a
/// `time.Time` and can call `.Format "layout"` and `.Unix` on it;
/// Handlebars gets RFC 3339.
fn datetime(ctx: &Ctx, _: &[Value]) -> R {
    let now = chrono::Local::now().fixed_offset();
    if ctx.is_go() {
        Ok(json!(gotime::format(&now, gotime::GO_STRING)))
    } else {
        Ok(json!(now.to_rfc3339()))
    }
}

/// consul-template `timestamp [layout|"unix"]`: now, in UTC.
fn timestamp(_: &Ctx, args: &[Value]) -> R {
    let now = chrono::Utc::now().fixed_offset();
    match args.first().map(text) {
        None => Ok(json!(gotime::format(&now, gotime::RFC3339))),
        Some(f) if f == "unix" => Ok(json!(now.timestamp().to_string())),
        Some(f) => Ok(json!(gotime::format(&now, &f))),
    }
}

fn file_exists(_: &Ctx, args: &[Value]) -> R {
    Ok(json!(
        std::path::Path::new(&s_arg(args, 0, "path")?).exists()
    ))
}

/// consul-template `file path`: the file's contents, watched; waits while
/// the file does not exist.
fn file(ctx: &Ctx, args: &[Value]) -> R {
    let p = s_arg(args, 0, "path")?;
    if p.is_empty() {
        return Ok(json!(""));
    }
    let dep = Dependency::File(p);
    match ctx.data(dep.clone()).as_deref() {
        Some(Data::File(Some(s))) => Ok(json!(s)),
        Some(Data::File(None)) => {
            ctx.wait_for(dep);
            Ok(json!(""))
        }
        _ => Ok(json!("")),
    }
}

/// consul-template `plugin name args...`: run `name` (no shell), its
/// trimmed stdout is the value; 30 s at most.
fn plugin(ctx: &Ctx, args: &[Value]) -> R {
    if !ctx.plugins_enabled() {
        return Err("plugin is disabled (start tribune-template with -enable-plugin)".into());
    }
    let name = s_arg(args, 0, "command")?;
    if name.is_empty() {
        return Ok(json!(""));
    }
    let argv: Vec<String> = args[1..]
        .iter()
        .map(|a| text(a).trim().to_string())
        .filter(|a| !a.is_empty())
        .collect();
    let mut child = Command::new(&name)
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("exec {name:?}: {e}"))?;
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    // Readers on threads, so a chatty plugin cannot fill its pipe and stall.
    let read = |s: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(s) = s {
                let _ = s.take(PLUGIN_MAX_OUTPUT).read_to_end(&mut buf);
            }
            buf
        })
    };
    let o = read(out.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let e = read(err.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if started.elapsed() > PLUGIN_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("exec {name:?}: did not finish in 30s"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("exec {name:?}: {e}")),
        }
    };
    let stdout = String::from_utf8_lossy(&o.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&e.join().unwrap_or_default()).into_owned();
        return Err(format!(
            "exec {name:?}: {status}\n\nstdout:\n\n{stdout}\n\nstderr:\n\n{stderr}"
        ));
    }
    Ok(json!(stdout.trim()))
}
