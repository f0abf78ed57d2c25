//! What reading or writing a snapshot can fail with, in words an operator
//! can act on.

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading snapshot: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a tribune snapshot (no TRIBSNAP header)")]
    NotASnapshot,
    #[error("snapshot format version {0} is not one this tribune reads (it reads version 1)")]
    UnsupportedFormat(u32),
    #[error("snapshot is truncated: the file {0}")]
    Truncated(String),
    #[error("snapshot is corrupt: {0}")]
    Corrupt(String),
    #[error("snapshot is corrupt: its SHA-256 checksum does not match its contents")]
    Checksum,
    #[error(
        "snapshot holds section {name:?} version {version}, which this tribune ({}) cannot read: \
         restore it with the tribune that wrote it or a newer one",
        env!("CARGO_PKG_VERSION")
    )]
    UnknownSection { name: String, version: u32 },
    #[error("snapshot is corrupt: record {n} of section {section}: {msg}")]
    Record {
        section: String,
        n: u64,
        msg: String,
    },
    #[error("encoding snapshot: {0}")]
    Encode(String),
}
