//! `tribune snapshot save|restore|inspect`, with Consul's messages.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde::Serialize;

use super::client::Api;
use super::HttpOpts;
use crate::snapshot::format::{self, decode_record, Summary};
use crate::snapshot::{byte_size, tables};
use crate::state::KvEntry;

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub cmd: SnapshotCmd,
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCmd {
    /// Save a point-in-time snapshot of the servers' state to FILE.
    Save(SaveArgs),
    /// Replace the state of the whole cluster with a snapshot FILE.
    Restore(RestoreArgs),
    /// Describe a snapshot FILE.
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct SaveArgs {
    #[command(flatten)]
    http: HttpOpts,
    #[arg(hide = true)]
    files: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    http: HttpOpts,
    #[arg(hide = true)]
    files: Vec<String>,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Output format: pretty or json.
    #[arg(long, default_value = "pretty")]
    format: String,
    /// Break the KV space down by key prefix.
    #[arg(long)]
    kvdetails: bool,
    /// With -kvdetails: the prefix depth to break down by.
    #[arg(long, default_value_t = 2)]
    kvdepth: usize,
    /// With -kvdetails: only keys under this prefix.
    #[arg(long, default_value = "")]
    kvfilter: String,
    #[arg(hide = true)]
    files: Vec<String>,
}

pub fn run(a: SnapshotArgs) -> ExitCode {
    let r = match a.cmd {
        SnapshotCmd::Save(a) => one_file(&a.files).and_then(|f| save(&a.http, f)),
        SnapshotCmd::Restore(a) => one_file(&a.files).and_then(|f| restore(&a.http, f)),
        SnapshotCmd::Inspect(a) => one_file(&a.files).and_then(|f| inspect(&a, f)),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::from(1)
        }
    }
}

fn one_file(files: &[String]) -> Result<&str, String> {
    match files {
        [] => Err("Missing FILE argument".into()),
        [f] => Ok(f),
        _ => Err(format!(
            "Too many arguments (expected 1, got {})",
            files.len()
        )),
    }
}

/// GET the snapshot into a temp file beside `file`, fsync, verify it,
/// rename it over `file`, fsync the directory.
fn save(http: &HttpOpts, file: &str) -> Result<(), String> {
    let api = Api::new(http);
    let mut resp = api
        .send(Method::GET, "snapshot", &[], None)
        .map_err(|e| format!("Error saving snapshot: {e}"))?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let body = resp.text().unwrap_or_default();
        return Err(format!(
            "Error saving snapshot: Unexpected response code: {status} ({})",
            body.trim()
        ));
    }
    let index = resp
        .headers()
        .get("x-consul-index")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_string();
    let path = Path::new(file);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tribune-snapshot-")
        .suffix(".unverified")
        .tempfile_in(dir)
        .map_err(|e| format!("Error writing unverified snapshot file: {e}"))?;
    resp.copy_to(tmp.as_file_mut())
        .map_err(|e| format!("Error writing unverified snapshot file: {e}"))?;
    tmp.as_file_mut()
        .flush()
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| format!("Error writing unverified snapshot file: {e}"))?;
    let f = std::fs::File::open(tmp.path())
        .map_err(|e| format!("Error opening snapshot file for verify: {e}"))?;
    format::verify(BufReader::new(f))
        .and_then(|s| tables::check_sections(&s))
        .map_err(|e| format!("Error verifying snapshot file: {e}"))?;
    tmp.persist(path)
        .map_err(|e| format!("Error renaming snapshot file to {file:?}: {e}"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| format!("Error syncing directory of {file:?}: {e}"))?;
    println!("Saved and verified snapshot to index {index}");
    Ok(())
}

fn restore(http: &HttpOpts, file: &str) -> Result<(), String> {
    let f = std::fs::File::open(file).map_err(|e| format!("Error opening snapshot file: {e}"))?;
    let api = Api::new(http);
    let resp = api
        .send_body(Method::PUT, "snapshot", &[], Some(f.into()))
        .map_err(|e| format!("Error restoring snapshot: {e}"))?;
    if !resp.status().is_success() {
        let status = resp.status().as_u16();
        let body = resp.text().unwrap_or_default();
        return Err(format!(
            "Error restoring snapshot: Unexpected response code: {status} ({})",
            body.trim()
        ));
    }
    println!("Restored snapshot");
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Meta {
    #[serde(rename = "ID")]
    id: String,
    size: u64,
    index: u64,
    term: u64,
    version: u32,
}

#[derive(Serialize, Clone)]
#[serde(rename_all = "PascalCase")]
struct Stat {
    name: String,
    sum: u64,
    count: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Output {
    meta: Meta,
    stats: Vec<Stat>,
    #[serde(rename = "StatsKV")]
    stats_kv: Vec<Stat>,
    total_size: u64,
    #[serde(rename = "TotalSizeKV")]
    total_size_kv: u64,
}

fn inspect(a: &InspectArgs, file: &str) -> Result<(), String> {
    if a.format != "pretty" && a.format != "json" {
        return Err(format!(
            "Error outputting enhanced snapshot data: Unknown format: {}",
            a.format
        ));
    }
    let f = std::fs::File::open(file).map_err(|e| format!("Error opening snapshot file: {e}"))?;
    let mut kv: BTreeMap<String, Stat> = BTreeMap::new();
    let summary = format::read(BufReader::new(f), |info, _, rec| {
        if a.kvdetails && info.name == "kv" {
            if let Ok((key, _)) = decode_record::<(String, KvEntry)>(rec) {
                kv_stat(&mut kv, &key, rec.len() as u64 + 4, a);
            }
        }
        Ok(())
    })
    .map_err(|e| format!("Error reading snapshot: {e}"))?;
    let out = output(&summary, kv);
    let text = if a.format == "json" {
        let mut buf = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
        let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
        out.serialize(&mut ser).map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&buf).into_owned()
    } else {
        pretty(&out, a.kvdetails)
    };
    println!("{text}");
    Ok(())
}

fn kv_stat(kv: &mut BTreeMap<String, Stat>, key: &str, size: u64, a: &InspectArgs) {
    if !key.starts_with(&a.kvfilter) {
        return;
    }
    let parts: Vec<&str> = key.split('/').collect();
    let prefix = parts[..a.kvdepth.min(parts.len())].join("/");
    let s = kv.entry(prefix.clone()).or_insert(Stat {
        name: prefix,
        sum: 0,
        count: 0,
    });
    s.sum += size;
    s.count += 1;
}

fn sorted(mut v: Vec<Stat>) -> Vec<Stat> {
    v.sort_by(|a, b| b.sum.cmp(&a.sum).then_with(|| a.name.cmp(&b.name)));
    v
}

fn output(s: &Summary, kv: BTreeMap<String, Stat>) -> Output {
    let stats: Vec<Stat> = s
        .sections
        .iter()
        .filter(|x| x.records > 0)
        .map(|x| Stat {
            name: tables::display_name(&x.name).to_string(),
            sum: x.bytes,
            count: x.records,
        })
        .collect();
    let total_size = stats.iter().map(|x| x.sum).sum();
    let stats_kv = sorted(kv.into_values().collect());
    Output {
        meta: Meta {
            id: s.header.id.clone(),
            size: s.size,
            index: s.header.index,
            term: s.header.term,
            version: s.format,
        },
        stats: sorted(stats),
        total_size_kv: stats_kv.iter().map(|x| x.sum).sum(),
        stats_kv,
        total_size,
    }
}

/// Lay out rows as Go's tabwriter does: a cell followed by a tab is padded
/// to its column's widest cell plus `pad`, and to at least `min`. With
/// `trailing_tab` every cell of a row is followed by one, except on the last
/// row, which (unlike the others) has no newline after it either.
fn tabulate(rows: &[Vec<String>], min: usize, pad: usize, trailing_tab: bool) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let last = rows.len().saturating_sub(1);
    let aligned = |i: usize, c: usize| c + 1 < rows[i].len() || (trailing_tab && i != last);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            (0..rows.len())
                .filter(|&i| c < rows[i].len() && aligned(i, c))
                .map(|i| rows[i][c].chars().count() + pad)
                .max()
                .unwrap_or(0)
                .max(min)
        })
        .collect();
    let mut out = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            line.push_str(cell);
            if aligned(i, c) {
                let n = width[c].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', n));
            }
        }
        out.push(line);
    }
    out.join("\n")
}

fn pretty(o: &Output, kvdetails: bool) -> String {
    let m = &o.meta;
    let head: Vec<Vec<String>> = [
        ("ID", m.id.clone()),
        ("Size", m.size.to_string()),
        ("Index", m.index.to_string()),
        ("Term", m.term.to_string()),
        ("Version", m.version.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| vec![format!(" {k}"), v])
    .collect();
    let dashes = || vec![" ----".to_string(), "----".into(), "----".into()];
    let table = |stats: &[Stat], first: &str, total: u64| {
        let mut rows = vec![
            vec![format!(" {first}"), "Count".into(), "Size".into()],
            dashes(),
        ];
        for s in stats {
            rows.push(vec![
                format!(" {}", s.name),
                s.count.to_string(),
                byte_size(s.sum),
            ]);
        }
        rows.push(dashes());
        rows.push(vec![" Total".into(), String::new(), byte_size(total)]);
        rows
    };
    let mut text = tabulate(&head, 8, 6, false);
    text.push_str("\n\n");
    text.push_str(&tabulate(
        &table(&o.stats, "Type", o.total_size),
        8,
        6,
        true,
    ));
    if kvdetails {
        text.push_str("\n\n");
        text.push_str(&tabulate(
            &table(&o.stats_kv, "Key Name", o.total_size_kv),
            30,
            12,
            true,
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of Consul's `snapshot inspect` (its golden file, with the
    /// leading space its current formatter adds).
    #[test]
    fn pretty_matches_consul_layout() {
        let o = Output {
            meta: Meta {
                id: "2-11-1602262512378".into(),
                size: 4863,
                index: 11,
                term: 2,
                version: 1,
            },
            stats: vec![
                Stat {
                    name: "Register".into(),
                    sum: 1638,
                    count: 3,
                },
                Stat {
                    name: "Index".into(),
                    sum: 313,
                    count: 11,
                },
            ],
            stats_kv: vec![],
            total_size: 4813,
            total_size_kv: 0,
        };
        let want = " ID           2-11-1602262512378
 Size         4863
 Index        11
 Term         2
 Version      1

 Type          Count      Size       
 ----          ----       ----       
 Register      3          1.6KB      
 Index         11         313B       
 ----          ----       ----       
 Total                    4.7KB";
        assert_eq!(pretty(&o, false), want);
    }
}
