//! Connection limits and timeouts: Consul's `limits` block, plus the
//! HTTP timeouts tribune adds (Consul's plain-HTTP listener has none).
//!
//! ```hcl
//! limits {
//!   http_max_conns_per_client = 200    # Consul's; 0 = no cap
//!   rpc_max_conns_per_client  = 100    # Consul's; 0 = no cap
//!   rpc_handshake_timeout     = "5s"   # Consul's
//!   http_read_header_timeout  = "10s"  # tribune: request line and headers
//!   http_read_body_timeout    = "30s"  # tribune: the body, after its head
//!   http_write_timeout        = "30s"  # tribune: a stalled response write
//!   http_idle_timeout         = "2m"   # tribune: kept-alive, no request
//! }
//! ```
//!
//! A parked blocking query is a request in progress: no timeout here cuts
//! it short (its own `wait` does).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use gocompat::duration::parse_duration;

/// The resolved `limits` block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Concurrent HTTP connections from one IP address (0: no cap); the
    /// next one is answered 429, as Consul does.
    pub http_max_conns_per_client: u32,
    /// Concurrent server RPC connections from one IP address (0: no cap).
    pub rpc_max_conns_per_client: u32,
    /// A new RPC connection must send its first request within this.
    pub rpc_handshake_timeout: Duration,
    /// A new HTTPS connection must finish its TLS handshake within this.
    pub https_handshake_timeout: Duration,
    /// A request's head must arrive within this, from the connection's
    /// accept or from the request's first byte.
    pub http_read_header_timeout: Duration,
    /// A request's body must arrive within this after its head.
    pub http_read_body_timeout: Duration,
    /// A response write that makes no progress for this long closes the
    /// connection (a client that stopped reading).
    pub http_write_timeout: Duration,
    /// A kept-alive connection with no request in progress is closed after this.
    pub http_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            http_max_conns_per_client: 200,
            rpc_max_conns_per_client: 100,
            rpc_handshake_timeout: Duration::from_secs(5),
            https_handshake_timeout: Duration::from_secs(5),
            http_read_header_timeout: Duration::from_secs(10),
            http_read_body_timeout: Duration::from_secs(30),
            http_write_timeout: Duration::from_secs(30),
            // Longer than Go's client idle timeout (90 s), so Consul's Go
            // clients close idle connections first and never race a close.
            http_idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Consul `limits` keys tribune accepts but does not implement.
const UNSUPPORTED: [&str; 6] = [
    "rpc_client_timeout",
    "rpc_rate",
    "rpc_max_burst",
    "kv_max_value_size",
    "txn_max_req_len",
    "request_limits",
];

/// Timeouts must be positive and below this (a typo such as "10000h"
/// would otherwise disable the limit).
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl Limits {
    /// Apply a `limits` object from `path`; problems that are not errors
    /// (unsupported keys) go to `warnings`.
    pub fn merge(
        &mut self,
        path: &Path,
        v: &Value,
        warnings: &mut Vec<String>,
    ) -> Result<(), String> {
        let obj = v.as_object().ok_or("limits: expected an object")?;
        for (k, val) in obj {
            let count = || {
                val.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or(format!(
                        "limits.{k}: expected a number of connections (0 for no cap)"
                    ))
            };
            let dur = || {
                val.as_str()
                    .and_then(parse_duration)
                    .filter(|d| !d.is_zero() && *d <= MAX_TIMEOUT)
                    .ok_or(format!(
                        "limits.{k}: expected a duration like \"10s\" (above 0, at most 24h)"
                    ))
            };
            match k.as_str() {
                "http_max_conns_per_client" => self.http_max_conns_per_client = count()?,
                "rpc_max_conns_per_client" => self.rpc_max_conns_per_client = count()?,
                "rpc_handshake_timeout" => self.rpc_handshake_timeout = dur()?,
                "https_handshake_timeout" => self.https_handshake_timeout = dur()?,
                "http_read_header_timeout" => self.http_read_header_timeout = dur()?,
                "http_read_body_timeout" => self.http_read_body_timeout = dur()?,
                "http_write_timeout" => self.http_write_timeout = dur()?,
                "http_idle_timeout" => self.http_idle_timeout = dur()?,
                other if UNSUPPORTED.contains(&other) => warnings.push(format!(
                    "{}: limits.{other} is not supported by tribune: ignored",
                    path.display()
                )),
                other => warnings.push(format!(
                    "{}: unknown key limits.{other} ignored",
                    path.display()
                )),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known keys set values, Consul's unimplemented ones warn, bad values fail.
    #[test]
    fn merge_values() {
        let mut l = Limits::default();
        let mut w = Vec::new();
        let v = serde_json::json!({
            "http_max_conns_per_client": 0, "http_idle_timeout": "5m",
            "rpc_handshake_timeout": "1s", "rpc_rate": 10, "mystery": 1,
        });
        l.merge(Path::new("x.json"), &v, &mut w).unwrap();
        assert_eq!(l.http_max_conns_per_client, 0);
        assert_eq!(l.http_idle_timeout, Duration::from_secs(300));
        assert_eq!(l.rpc_handshake_timeout, Duration::from_secs(1));
        assert_eq!(w.len(), 2, "{w:?}");
        for bad in [
            serde_json::json!({"http_max_conns_per_client": -1}),
            serde_json::json!({"http_max_conns_per_client": "200"}),
            serde_json::json!({"http_idle_timeout": "0s"}),
            serde_json::json!({"http_idle_timeout": 5}),
            serde_json::json!({"http_read_header_timeout": "1000h"}),
            serde_json::json!([1]),
        ] {
            let e = Limits::default().merge(Path::new("x"), &bad, &mut w);
            assert!(e.is_err(), "{bad}");
        }
    }
}
