//! `/v1/agent/version` and `/v1/agent/host`.
//!
//! Version answers Consul's `BuildInfo` (`SHA`, `BuildDate`,
//! `HumanVersion`, `FIPS`), with the Consul API version tribune follows as
//! `HumanVersion` (the one `/v1/agent/self` reports), plus tribune's own.
//!
//! Host answers Consul's `debug.HostInfo`: `Memory`, `CPU`, `Host`, `Disk`
//! (of `/`, as Consul), `CollectionTime` (Unix ns) and `Errors`, with the
//! field names of the gopsutil structs Consul serializes. Everything is
//! read from `/proc` and `statvfs`; a part that cannot be read is `null`
//! and its reason is listed in `Errors`, as Consul does.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::routes::{Endpoint as E, Routes};
use crate::pipeline::context::RequestCtx;
use crate::pipeline::render::json;

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/agent/version", E::get(version))
        .route("/v1/agent/host", E::get(host))
}

async fn version(ctx: RequestCtx) -> Response {
    let q = &ctx.query;
    let body = json!({
        "SHA": "",
        "BuildDate": crate::cli::version::BUILD_DATE,
        "HumanVersion": crate::version::CONSUL_API,
        "FIPS": "",
        "TribuneVersion": crate::version::TRIBUNE,
    });
    json(StatusCode::OK, &body, q.has("pretty"))
}

async fn host(ctx: RequestCtx) -> Response {
    let q = &ctx.query;
    let body = tokio::task::spawn_blocking(collect)
        .await
        .unwrap_or_else(|e| json!({ "Errors": [format!("collecting host info: {e}")] }));
    json(StatusCode::OK, &body, q.has("pretty"))
}

/// Consul's `HostInfo`, each part or its error.
pub fn collect() -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let mut errors = Vec::new();
    let mut part = |r: Result<Value, String>| {
        r.unwrap_or_else(|e| {
            errors.push(Value::String(e));
            Value::Null
        })
    };
    let host = part(host_info());
    let memory = part(memory());
    let disk = part(disk("/"));
    let cpu = part(cpus());
    json!({
        "Memory": memory,
        "CPU": cpu,
        "Host": host,
        "Disk": disk,
        "CollectionTime": now,
        "Errors": if errors.is_empty() { Value::Null } else { Value::Array(errors) },
    })
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("open {path}: {e}"))
}

/// `/proc/meminfo` as bytes by key.
fn meminfo() -> Result<BTreeMap<String, u64>, String> {
    let text = read("/proc/meminfo")?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let mut it = rest.split_whitespace();
            let n: u64 = it.next()?.parse().ok()?;
            let mult = if it.next() == Some("kB") { 1024 } else { 1 };
            Some((k.trim().to_string(), n.saturating_mul(mult)))
        })
        .collect())
}

/// gopsutil's `VirtualMemoryStat` (Linux): `used` is total minus free,
/// buffers and page cache, as there.
fn memory() -> Result<Value, String> {
    let m = meminfo()?;
    let g = |k: &str| m.get(k).copied().unwrap_or(0);
    let total = g("MemTotal");
    let cached = g("Cached") + g("SReclaimable");
    let used = total.saturating_sub(g("MemFree") + g("Buffers") + cached);
    let pct = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            a as f64 / b as f64 * 100.0
        }
    };
    Ok(json!({
        "total": total,
        "available": g("MemAvailable"),
        "used": used,
        "usedPercent": pct(used, total),
        "free": g("MemFree"),
        "active": g("Active"),
        "inactive": g("Inactive"),
        "wired": 0,
        "laundry": 0,
        "buffers": g("Buffers"),
        "cached": cached,
        "writeBack": g("Writeback"),
        "dirty": g("Dirty"),
        "writeBackTmp": g("WritebackTmp"),
        "shared": g("Shmem"),
        "slab": g("Slab"),
        "sreclaimable": g("SReclaimable"),
        "sunreclaim": g("SUnreclaim"),
        "pageTables": g("PageTables"),
        "swapCached": g("SwapCached"),
        "commitLimit": g("CommitLimit"),
        "committedAS": g("Committed_AS"),
        "highTotal": g("HighTotal"),
        "highFree": g("HighFree"),
        "lowTotal": g("LowTotal"),
        "lowFree": g("LowFree"),
        "swapTotal": g("SwapTotal"),
        "swapFree": g("SwapFree"),
        "mapped": g("Mapped"),
        "vmallocTotal": g("VmallocTotal"),
        "vmallocUsed": g("VmallocUsed"),
        "vmallocChunk": g("VmallocChunk"),
        "hugePagesTotal": g("HugePages_Total"),
        "hugePagesFree": g("HugePages_Free"),
        "hugePagesRsvd": g("HugePages_Rsvd"),
        "hugePagesSurp": g("HugePages_Surp"),
        "hugePageSize": g("Hugepagesize"),
        "anonHugePages": g("AnonHugePages"),
    }))
}

/// gopsutil's `UsageStat` of the file system holding `path`.
fn disk(path: &str) -> Result<Value, String> {
    let st = nix::sys::statvfs::statvfs(path).map_err(|e| format!("statvfs {path}: {e}"))?;
    let frsize = st.fragment_size() as u64;
    let total = st.blocks() as u64 * frsize;
    let free = st.blocks_available() as u64 * frsize;
    // As gopsutil: used excludes the blocks reserved for root.
    let used = (st.blocks() as u64).saturating_sub(st.blocks_free() as u64) * frsize;
    let (itotal, ifree) = (st.files() as u64, st.files_free() as u64);
    let iused = itotal.saturating_sub(ifree);
    let pct = |a: u64, b: u64| {
        if b == 0 {
            0.0
        } else {
            a as f64 / b as f64 * 100.0
        }
    };
    Ok(json!({
        "path": path,
        "fstype": fstype(path).unwrap_or_default(),
        "total": total,
        "free": free,
        "used": used,
        "usedPercent": pct(used, used + free),
        "inodesTotal": itotal,
        "inodesUsed": iused,
        "inodesFree": ifree,
        "inodesUsedPercent": pct(iused, itotal),
    }))
}

/// The type of the file system mounted at `path` (`/proc/self/mounts`).
fn fstype(path: &str) -> Option<String> {
    let mounts = read("/proc/self/mounts").ok()?;
    // The last mount on a path is the one in effect.
    mounts.lines().rev().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 3 && f[1] == path).then(|| f[2].to_string())
    })
}

/// gopsutil's `host.InfoStat`.
fn host_info() -> Result<Value, String> {
    let uptime: f64 = read("/proc/uptime")?
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or("parse /proc/uptime")?;
    let boot = read("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ").map(|v| v.trim().parse::<u64>()))
        })
        .and_then(Result::ok)
        .unwrap_or(0);
    let procs = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .bytes()
                        .all(|b| b.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(0);
    let os = read("/etc/os-release").unwrap_or_default();
    let field = |k: &str| {
        os.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_default()
    };
    let trim = |p: &str| read(p).map(|s| s.trim().to_string()).unwrap_or_default();
    let family = match field("ID").as_str() {
        "debian" | "ubuntu" | "linuxmint" | "raspbian" => "debian".to_string(),
        "fedora" => "fedora".into(),
        "rhel" | "centos" | "rocky" | "almalinux" | "ol" | "amzn" => "rhel".into(),
        "alpine" => "alpine".into(),
        other => field("ID_LIKE")
            .split_whitespace()
            .next()
            .unwrap_or(other)
            .to_string(),
    };
    Ok(json!({
        "hostname": hostname::get().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        "uptime": uptime as u64,
        "bootTime": boot,
        "procs": procs,
        "os": std::env::consts::OS,
        "platform": field("ID"),
        "platformFamily": family,
        "platformVersion": field("VERSION_ID"),
        "kernelVersion": trim("/proc/sys/kernel/osrelease"),
        "kernelArch": std::env::consts::ARCH,
        "virtualizationSystem": "",
        "virtualizationRole": "",
        "hostId": trim("/etc/machine-id"),
    }))
}

/// gopsutil's `cpu.InfoStat`, one per logical CPU of `/proc/cpuinfo`.
fn cpus() -> Result<Value, String> {
    let text = read("/proc/cpuinfo")?;
    let list: Vec<Value> = text
        .split("\n\n")
        .filter(|b| b.contains("processor"))
        .map(|block| {
            let kv: BTreeMap<&str, &str> = block
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim(), v.trim()))
                .collect();
            let s = |k: &str| kv.get(k).copied().unwrap_or("").to_string();
            let n = |k: &str| kv.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
            let cache = kv
                .get("cache size")
                .and_then(|v| v.split_whitespace().next()?.parse::<i64>().ok())
                .unwrap_or(0);
            json!({
                "cpu": n("processor"),
                "vendorId": s("vendor_id"),
                "family": s("cpu family"),
                "model": s("model"),
                "stepping": n("stepping"),
                "physicalId": s("physical id"),
                "coreId": s("core id"),
                "cores": n("cpu cores").max(1),
                "modelName": s("model name"),
                "mhz": kv.get("cpu MHz").and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0),
                "cacheSize": cache,
                "flags": s("flags").split_whitespace().collect::<Vec<_>>(),
                "microcode": s("microcode"),
            })
        })
        .collect();
    if list.is_empty() {
        return Err("no processor in /proc/cpuinfo".into());
    }
    Ok(Value::Array(list))
}
