//! A snapshot restore as raft commands.
//!
//! A restore replaces the whole state of every server, so it travels through
//! the raft log like any write: the leader cuts the verified file into
//! [`CHUNK`]-byte pieces, each one entry ([`RestoreCommand::Chunk`]), then
//! commits [`RestoreCommand::Install`]. Every server stages the pieces (they
//! are part of its snapshots, so a server that catches up from a snapshot
//! taken mid-restore still has them) and, on `Install`, decodes the file and
//! swaps its tables in one step; a file that does not decode changes nothing.
//! Pieces keep each entry, and each append to a follower, small; see
//! `crate::raft::network` for the append size bound.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Bytes of the file per raft entry.
pub const CHUNK: usize = 1 << 20;
/// The largest snapshot file a restore accepts.
pub const MAX_FILE: u64 = 4 << 30;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RestoreCommand {
    /// Piece `seq` of the file of restore `id` (a new `id` drops what an
    /// earlier, unfinished restore staged).
    Chunk {
        id: u64,
        seq: u32,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// All `chunks` pieces (`size` bytes) are staged: decode and install.
    Install { id: u64, chunks: u32, size: u64 },
    /// The leader gave up on restore `id`: drop its pieces.
    Abort { id: u64 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RestoreOutcome {
    Staged,
    /// The new state is in place, with this many keys.
    Installed {
        keys: u64,
    },
    Aborted,
    /// Refused; the tables are unchanged.
    Error(String),
}

/// The pieces of the restore in progress.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Staging {
    pub id: u64,
    pub chunks: BTreeMap<u32, Bytes>,
    pub bytes: u64,
}

impl Staging {
    /// Stage piece `seq` of restore `id` into `slot` (replacing another
    /// restore's pieces).
    pub fn stage(slot: &mut Option<Staging>, id: u64, seq: u32, data: &[u8]) -> RestoreOutcome {
        if slot.as_ref().is_some_and(|s| s.id != id) {
            *slot = None;
        }
        let s = slot.get_or_insert_with(|| Staging {
            id,
            ..Default::default()
        });
        if s.bytes + data.len() as u64 > MAX_FILE {
            *slot = None;
            return RestoreOutcome::Error(format!(
                "restore is larger than {MAX_FILE} bytes; abandoned"
            ));
        }
        if let Some(old) = s.chunks.insert(seq, Bytes::copy_from_slice(data)) {
            s.bytes -= old.len() as u64;
        }
        s.bytes += data.len() as u64;
        RestoreOutcome::Staged
    }

    /// The pieces in order, if they are exactly `chunks` pieces of `size` bytes.
    pub fn complete(self, chunks: u32, size: u64) -> Result<Vec<Bytes>, Incomplete> {
        if self.chunks.len() as u64 != u64::from(chunks)
            || self
                .chunks
                .keys()
                .next_back()
                .is_some_and(|k| *k + 1 != chunks)
        {
            return Err(Incomplete::Pieces {
                have: self.chunks.len(),
                want: chunks,
            });
        }
        if self.bytes != size {
            return Err(Incomplete::Bytes {
                have: self.bytes,
                want: size,
            });
        }
        Ok(self.chunks.into_values().collect())
    }
}

/// A staged restore that does not add up to the file announced.
#[derive(Debug, thiserror::Error)]
pub enum Incomplete {
    #[error("restore has {have} of its {want} pieces")]
    Pieces { have: usize, want: u32 },
    #[error("restore has {have} of its {want} bytes")]
    Bytes { have: u64, want: u64 },
}

/// Reads pieces back to back (the staged file).
pub struct ChunkReader {
    chunks: std::vec::IntoIter<Bytes>,
    current: Bytes,
}

impl ChunkReader {
    pub fn new(chunks: Vec<Bytes>) -> Self {
        Self {
            chunks: chunks.into_iter(),
            current: Bytes::new(),
        }
    }
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.next() {
                Some(c) => self.current = c,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn stages_in_any_order_and_checks_completeness() {
        let mut slot = None;
        assert_eq!(
            Staging::stage(&mut slot, 1, 1, b"cd"),
            RestoreOutcome::Staged
        );
        Staging::stage(&mut slot, 1, 0, b"ab");
        let s = slot.clone().unwrap();
        assert!(s.clone().complete(3, 4).is_err());
        assert!(s.clone().complete(2, 5).is_err());
        let mut out = String::new();
        ChunkReader::new(s.complete(2, 4).unwrap())
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "abcd");
        // another restore starts over
        Staging::stage(&mut slot, 2, 0, b"x");
        assert_eq!(slot.as_ref().unwrap().bytes, 1);
        // a gap is not complete
        let mut slot = None;
        Staging::stage(&mut slot, 3, 0, b"a");
        Staging::stage(&mut slot, 3, 2, b"c");
        assert!(slot.unwrap().complete(2, 2).is_err());
    }
}
