//! Snapshots of the replicated state: `GET /v1/snapshot` files, `tribune
//! snapshot save|restore|inspect`, and the raft snapshots servers keep and
//! send each other — one format for all three.
//!
//! - [`format`](mod@format): the container (header, versioned sections of records,
//!   SHA-256 trailer) and its reader, which checks everything it reads.
//! - [`tables`]: [`crate::state::Tables`] as sections and back.
//! - [`error`]: what reading or writing one can fail with.
//!
//! A restore replaces the state of the whole cluster through raft; see
//! [`crate::state::restore`] for the commands and `crate::http::snapshot`
//! for the endpoint.

pub mod error;
pub mod format;
pub mod tables;

pub use error::SnapshotError;
pub use format::{Header, SectionInfo, Summary};
pub use tables::{decode, encode, Decoded};

use crate::state::Tables;

/// The header describing `t` now.
pub fn header_for(t: &Tables, datacenter: &str) -> Header {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let (raft_index, term) = t
        .last_applied
        .map(|l| (l.index, l.leader_id.term))
        .unwrap_or((0, 0));
    let index = t.applied_index();
    Header {
        id: format!("{term}-{index}-{now_ms}"),
        index,
        raft_index,
        term,
        created_unix_ms: now_ms,
        datacenter: datacenter.to_string(),
        writer: format!("tribune {}", env!("CARGO_PKG_VERSION")),
    }
}

/// Bytes as Consul's `snapshot inspect` prints them: 0, 313B, 1.6KB, 4.7MB.
pub fn byte_size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TB"),
        (1 << 30, "GB"),
        (1 << 20, "MB"),
        (1 << 10, "KB"),
    ];
    if bytes == 0 {
        return "0".into();
    }
    for (size, unit) in UNITS {
        if bytes >= size {
            let v = format!("{:.1}", bytes as f64 / size as f64);
            return format!("{}{unit}", v.strip_suffix(".0").unwrap_or(&v));
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    #[test]
    fn byte_sizes_as_consul() {
        assert_eq!(super::byte_size(0), "0");
        assert_eq!(super::byte_size(313), "313B");
        assert_eq!(super::byte_size(1638), "1.6KB");
        assert_eq!(super::byte_size(2048), "2KB");
        assert_eq!(super::byte_size(5 << 20), "5MB");
    }
}
