//! `load`: many KV keys written as fast as one system takes them, the same
//! keys for tribune (`PUT /v1/kv/<key>`) and etcd (`POST /v3/kv/put`).
//!
//! Key `n` is `<prefix>p<NNNN>/k<NNNN>` with `n / per_prefix` and
//! `n % per_prefix`: `prefixes` directories of `keys / prefixes` keys each,
//! every value `value-bytes` long. Reports the time and rate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use base64::Engine;
use bytes::Bytes;
use tokio::task::JoinSet;

use crate::args::Args;
use crate::http::Conn;
use crate::{progress, result};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Tribune,
    Etcd,
}

pub struct Opts {
    kind: Kind,
    addr: SocketAddr,
    keys: usize,
    prefixes: usize,
    value_bytes: usize,
    concurrency: usize,
    prefix: String,
}

impl Opts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        let kind = match args.required::<String>("kind")?.as_str() {
            "tribune" => Kind::Tribune,
            "etcd" => Kind::Etcd,
            k => bail!("--kind {k:?}: tribune or etcd"),
        };
        let o = Self {
            kind,
            addr: args.addr()?,
            keys: args.get("keys", 1_000_000)?,
            prefixes: args.get("prefixes", 1_000)?,
            value_bytes: args.get("value-bytes", 100)?,
            concurrency: args.get("concurrency", 64)?,
            prefix: args.get("prefix", "large/".to_string())?,
        };
        if o.prefixes == 0 || !o.keys.is_multiple_of(o.prefixes) {
            bail!("--keys must be a multiple of --prefixes");
        }
        Ok(o)
    }
}

/// The `n`-th key.
pub fn key(o: &Opts, n: usize) -> String {
    let per = o.keys / o.prefixes;
    format!("{}p{:04}/k{:04}", o.prefix, n / per, n % per)
}

/// A value of `len` bytes that names its key (not all alike, so nothing
/// can be shared between them).
fn value(n: usize, len: usize) -> Vec<u8> {
    let mut v = format!("value-{n:08}-").into_bytes();
    v.resize(len, b'x');
    v
}

fn request(o: &Opts, n: usize) -> (String, Bytes) {
    let k = key(o, n);
    let v = value(n, o.value_bytes);
    match o.kind {
        Kind::Tribune => (format!("/v1/kv/{k}"), Bytes::from(v)),
        Kind::Etcd => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let body = format!(
                r#"{{"key":"{}","value":"{}"}}"#,
                b64.encode(k.as_bytes()),
                b64.encode(&v)
            );
            ("/v3/kv/put".to_string(), Bytes::from(body))
        }
    }
}

pub async fn run(o: Opts) -> Result<()> {
    let o = Arc::new(o);
    let started = Instant::now();
    let workers = o.concurrency.clamp(1, o.keys.max(1));
    let mut set = JoinSet::new();
    for w in 0..workers {
        let o = o.clone();
        set.spawn(async move {
            let mut conn = Conn::connect(o.addr).await?;
            for n in (w..o.keys).step_by(workers) {
                let (path, body) = request(&o, n);
                let r = match o.kind {
                    Kind::Tribune => conn.put(&path, body).await?,
                    Kind::Etcd => conn.request(hyper::Method::POST, &path, body).await?,
                };
                let r = r.ok(&path)?;
                if o.kind == Kind::Tribune && r.body.trim_ascii() != b"true" {
                    bail!("{path}: answered {:?}", String::from_utf8_lossy(&r.body));
                }
                if w == 0 && n > 0 && n.is_multiple_of(workers * 50_000) {
                    progress!("{n} keys written");
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.context("writer task panicked")??;
    }
    let s = started.elapsed().as_secs_f64();
    progress!("wrote {} keys in {s:.1} s", o.keys);
    result("load_s", format!("{s:.2}"));
    result("load_rate", format!("{:.0}", o.keys as f64 / s));
    result("load_last_key", key(&o, o.keys - 1));
    Ok(())
}
