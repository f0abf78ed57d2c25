//! Query-string parsing with Consul's conventions: boolean flags are
//! presence-only, durations are Go durations, `dc` must be ours.

use std::time::Duration;

use super::error::ApiError;
use gocompat::duration::parse_duration;

/// Default and maximum blocking wait (Consul's default_query_time / max_query_time).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
pub const MAX_WAIT: Duration = Duration::from_secs(600);

/// Decoded query parameters, in order.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        Self {
            pairs: raw
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default(),
        }
    }

    /// Present at all (`?recurse`, `?recurse=`, `?recurse=1` ...).
    pub fn has(&self, name: &str) -> bool {
        self.pairs.iter().any(|(k, _)| k == name)
    }

    /// Last value given for `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query re-encoded (Consul echoes it in conflicting-flags errors).
    pub fn encoded(&self) -> String {
        let mut pairs: Vec<&(String, String)> = self.pairs.iter().collect();
        pairs.sort();
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        s.finish()
    }

    /// 400 unless at most one of `flags` is present.
    pub fn conflicting(&self, flags: &[&str]) -> Result<(), ApiError> {
        if flags.iter().filter(|f| self.has(f)).count() > 1 {
            return Err(ApiError::bad(format!(
                "Conflicting flags: {}",
                self.encoded()
            )));
        }
        Ok(())
    }

    /// A u64 parameter, 400 with `msg` when malformed.
    pub fn u64(&self, name: &str, msg: &str) -> Result<Option<u64>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| ApiError::bad(msg)),
        }
    }
}

/// How a read may be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    Default,
    Stale,
    Consistent,
}

impl Consistency {
    pub fn header(self) -> &'static str {
        match self {
            Self::Default => "leader",
            Self::Stale => "stale",
            Self::Consistent => "consistent",
        }
    }
}

/// Options every read endpoint takes.
#[derive(Clone, Debug)]
pub struct ReadOpts {
    pub index: u64,
    pub wait: Duration,
    pub consistency: Consistency,
    pub pretty: bool,
}

impl ReadOpts {
    pub fn parse(q: &Query, datacenter: &str) -> Result<Self, ApiError> {
        check_dc(q, datacenter)?;
        let consistency = match (q.has("stale"), q.has("consistent")) {
            (true, true) => {
                return Err(ApiError::bad(
                    "Cannot specify ?stale with ?consistent, conflicting semantics.",
                ))
            }
            (true, false) => Consistency::Stale,
            (false, true) => Consistency::Consistent,
            _ => Consistency::Default,
        };
        let index = q.u64("index", "Invalid index")?.unwrap_or(0);
        let wait = match q.get("wait") {
            None | Some("") => DEFAULT_WAIT,
            Some(w) => parse_duration(w).ok_or_else(|| ApiError::bad("Invalid wait time"))?,
        };
        Ok(Self {
            index,
            wait: wait.min(MAX_WAIT),
            consistency,
            pretty: q.has("pretty"),
        })
    }
}

/// `?dc=` other than ours has no route (no federation yet).
pub fn check_dc(q: &Query, datacenter: &str) -> Result<(), ApiError> {
    match q.get("dc") {
        Some(dc) if !dc.is_empty() && dc != datacenter => Err(ApiError::NoPathToDatacenter),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("55000ms"), Some(Duration::from_secs(55)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "abc", "-1s", "5x", "s", "1e400s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn presence_flags_and_conflicts() {
        let q = Query::parse(Some("recurse&keys=True&stale=&x=1"));
        assert!(q.has("recurse") && q.has("keys") && q.has("stale"));
        assert!(!q.has("raw"));
        assert!(q.conflicting(&["recurse", "cas"]).is_ok());
        let q = Query::parse(Some("recurse&cas=3"));
        assert!(q.conflicting(&["recurse", "cas"]).is_err());
        let q = Query::parse(Some("stale&consistent"));
        assert!(ReadOpts::parse(&q, "dc1").is_err());
        let q = Query::parse(Some("wait=20m&index=5"));
        let o = ReadOpts::parse(&q, "dc1").unwrap();
        assert_eq!((o.index, o.wait), (5, MAX_WAIT));
        assert!(ReadOpts::parse(&Query::parse(Some("index=-1")), "dc1").is_err());
        assert!(matches!(
            ReadOpts::parse(&Query::parse(Some("dc=dc2")), "dc1"),
            Err(ApiError::NoPathToDatacenter)
        ));
    }
}
