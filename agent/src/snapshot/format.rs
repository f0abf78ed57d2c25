//! The snapshot container: a header, named and versioned sections of
//! length-prefixed records, and a SHA-256 of everything before it.
//!
//! ```text
//! "TRIBSNAP"                    8 bytes, magic
//! u32 format version            (1)
//! u32 length, header JSON       id, index, term, ... (see Header)
//! per section:
//!   u8 1                        section tag
//!   u16 length, name            "kv", "nodes", ...
//!   u32 section version         how its records are encoded
//!   u64 records, u64 bytes      what follows, for skipping and checking
//!   records: u32 length, bincode (varint) bytes
//! u8 0                          end tag
//! 32 bytes                      SHA-256 of every byte before them
//! ```
//!
//! All integers are little-endian. A reader checks the framing and the
//! checksum in the same pass it decodes, and reports a checksum mismatch in
//! preference to whatever a corrupt record looked like.

use std::io::Read;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::SnapshotError;

pub const MAGIC: &[u8; 8] = b"TRIBSNAP";
pub const FORMAT_VERSION: u32 = 1;
/// Bounds a reader enforces before allocating anything.
const MAX_HEADER: usize = 64 << 10;
pub const MAX_RECORD: usize = 16 << 20;
const MAX_SECTIONS: usize = 256;
const MAX_NAME: usize = 64;
const TAG_SECTION: u8 = 1;
const TAG_END: u8 = 0;

/// What the header says about the state in the file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// `<term>-<index>-<unix ms>`, as Consul names its snapshots.
    pub id: String,
    /// Every index in the file is at most this (the last applied index).
    pub index: u64,
    /// The raft log index and term of the last entry applied.
    pub raft_index: u64,
    pub term: u64,
    pub created_unix_ms: u64,
    pub datacenter: String,
    /// The program that wrote the file (`tribune 0.1.0`).
    pub writer: String,
}

/// One section as the file lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SectionInfo {
    pub name: String,
    pub version: u32,
    pub records: u64,
    /// Bytes of its records (length prefixes included).
    pub bytes: u64,
}

/// What a complete, verified file holds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub format: u32,
    pub header: Header,
    pub sections: Vec<SectionInfo>,
    /// Bytes of the whole file.
    pub size: u64,
}

fn codec() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_limit(MAX_RECORD as u64)
        .reject_trailing_bytes()
}

/// Decode one record's bytes.
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> bincode::Result<T> {
    use bincode::Options;
    codec().deserialize(bytes)
}

/// Builds a file in memory.
pub struct Writer {
    buf: Vec<u8>,
    /// Where the open section's record count sits, and its counts so far.
    open: Option<(usize, u64)>,
}

impl Writer {
    pub fn new(header: &Header, capacity: usize) -> Result<Self, SnapshotError> {
        let json = serde_json::to_vec(header).map_err(|e| SnapshotError::Encode(e.to_string()))?;
        let mut buf = Vec::with_capacity(capacity + json.len() + 64);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
        buf.extend_from_slice(&json);
        Ok(Self { buf, open: None })
    }

    /// Start a section (closing the one before).
    pub fn section(&mut self, name: &str, version: u32) {
        self.close();
        self.buf.push(TAG_SECTION);
        self.buf
            .extend_from_slice(&(name.len() as u16).to_le_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.extend_from_slice(&version.to_le_bytes());
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 16]);
        self.open = Some((at, 0));
    }

    /// Append one record to the open section.
    pub fn record<T: Serialize + ?Sized>(&mut self, r: &T) -> Result<(), SnapshotError> {
        use bincode::Options;
        let Some((_, n)) = self.open.as_mut() else {
            return Err(SnapshotError::Encode("record outside a section".into()));
        };
        *n += 1;
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        codec()
            .serialize_into(&mut self.buf, r)
            .map_err(|e| SnapshotError::Encode(e.to_string()))?;
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    fn close(&mut self) {
        if let Some((at, n)) = self.open.take() {
            let bytes = (self.buf.len() - at - 16) as u64;
            self.buf[at..at + 8].copy_from_slice(&n.to_le_bytes());
            self.buf[at + 8..at + 16].copy_from_slice(&bytes.to_le_bytes());
        }
    }

    /// Close the file: end tag and checksum.
    pub fn finish(mut self) -> Vec<u8> {
        self.close();
        self.buf.push(TAG_END);
        let sum = Sha256::digest(&self.buf);
        self.buf.extend_from_slice(&sum);
        self.buf
    }
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    sha: Sha256,
    read: u64,
}

impl<R: Read> Hashing<R> {
    /// Fill `buf` completely; `what` names it for a truncation error.
    fn exact(&mut self, buf: &mut [u8], what: &dyn Fn() -> String) -> Result<(), SnapshotError> {
        match self.inner.read_exact(buf) {
            Ok(()) => {
                self.sha.update(&buf[..]);
                self.read += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(SnapshotError::Truncated(what()))
            }
            Err(e) => Err(SnapshotError::Io(e)),
        }
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8, SnapshotError> {
        let mut b = [0; 1];
        self.exact(&mut b, what)?;
        Ok(b[0])
    }
    fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16, SnapshotError> {
        let mut b = [0; 2];
        self.exact(&mut b, what)?;
        Ok(u16::from_le_bytes(b))
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, SnapshotError> {
        let mut b = [0; 4];
        self.exact(&mut b, what)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, SnapshotError> {
        let mut b = [0; 8];
        self.exact(&mut b, what)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Read a whole file: check its framing and checksum and hand every record
/// to `visit` (section, record number from 0, bytes). A visitor error stops
/// the visiting but not the reading: a file whose checksum fails is reported
/// as corrupt whatever its records looked like.
pub fn read<R: Read>(
    r: R,
    mut visit: impl FnMut(&SectionInfo, u64, &[u8]) -> Result<(), SnapshotError>,
) -> Result<Summary, SnapshotError> {
    let mut h = Hashing {
        inner: r,
        sha: Sha256::new(),
        read: 0,
    };
    let mut magic = [0u8; 8];
    h.exact(&mut magic, &|| "empty file".into())
        .map_err(|_| SnapshotError::NotASnapshot)?;
    if &magic != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let format = h.u32(&|| "ends in the header".into())?;
    if format != FORMAT_VERSION {
        return Err(SnapshotError::UnsupportedFormat(format));
    }
    let len = h.u32(&|| "ends in the header".into())? as usize;
    if len > MAX_HEADER {
        return Err(SnapshotError::Corrupt(format!(
            "header of {len} bytes is over the limit"
        )));
    }
    let mut json = vec![0; len];
    h.exact(&mut json, &|| "ends in the header".into())?;
    let header: Result<Header, _> = serde_json::from_slice(&json);
    let mut failed: Option<SnapshotError> = None;
    let header = header.unwrap_or_else(|e| {
        failed = Some(SnapshotError::Corrupt(format!("header: {e}")));
        Header::default()
    });
    let mut sections = Vec::new();
    let mut buf = Vec::new();
    loop {
        let after = sections
            .last()
            .map(|s: &SectionInfo| format!("after section {}", s.name))
            .unwrap_or_else(|| "after the header".into());
        match h.u8(&|| format!("ends {after}: no end marker"))? {
            TAG_END => break,
            TAG_SECTION => {}
            t => {
                return Err(SnapshotError::Corrupt(format!(
                    "unexpected tag {t} {after}"
                )))
            }
        }
        if sections.len() >= MAX_SECTIONS {
            return Err(SnapshotError::Corrupt("too many sections".into()));
        }
        let info = section_head(&mut h, &after)?;
        read_records(&mut h, &info, &mut buf, &mut |n, b| {
            if failed.is_none() {
                failed = visit(&info, n, b).err();
            }
        })?;
        sections.push(info);
    }
    let sum: [u8; 32] = h.sha.finalize_reset().into();
    let mut stored = [0u8; 32];
    h.exact(&mut stored, &|| "ends in the checksum".into())?;
    if sum != stored {
        return Err(SnapshotError::Checksum);
    }
    let mut extra = [0u8; 1];
    match h.inner.read(&mut extra) {
        Ok(0) => {}
        Ok(_) => {
            return Err(SnapshotError::Corrupt(
                "data after the checksum (two files joined?)".into(),
            ))
        }
        Err(e) => return Err(SnapshotError::Io(e)),
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(Summary {
        format,
        header,
        sections,
        size: h.read,
    })
}

fn section_head<R: Read>(h: &mut Hashing<R>, after: &str) -> Result<SectionInfo, SnapshotError> {
    let what = || format!("ends in a section header {after}");
    let n = h.u16(&what)? as usize;
    if n == 0 || n > MAX_NAME {
        return Err(SnapshotError::Corrupt(format!(
            "section name of {n} bytes {after}"
        )));
    }
    let mut name = vec![0; n];
    h.exact(&mut name, &what)?;
    let name = String::from_utf8(name)
        .map_err(|_| SnapshotError::Corrupt(format!("section name is not UTF-8 {after}")))?;
    let version = h.u32(&what)?;
    let records = h.u64(&what)?;
    let bytes = h.u64(&what)?;
    Ok(SectionInfo {
        name,
        version,
        records,
        bytes,
    })
}

fn read_records<R: Read>(
    h: &mut Hashing<R>,
    info: &SectionInfo,
    buf: &mut Vec<u8>,
    each: &mut dyn FnMut(u64, &[u8]),
) -> Result<(), SnapshotError> {
    let mut bytes = 0u64;
    for n in 0..info.records {
        let what = || {
            format!(
                "ends in section {} after {n} of {} records",
                info.name, info.records
            )
        };
        let len = h.u32(&what)? as usize;
        if len > MAX_RECORD {
            return Err(SnapshotError::Corrupt(format!(
                "record {n} of section {} claims {len} bytes",
                info.name
            )));
        }
        buf.resize(len, 0);
        h.exact(buf, &what)?;
        bytes += 4 + len as u64;
        if bytes > info.bytes {
            break;
        }
        each(n, buf);
    }
    if bytes != info.bytes {
        return Err(SnapshotError::Corrupt(format!(
            "section {} holds {bytes} bytes of records, its header says {}",
            info.name, info.bytes
        )));
    }
    Ok(())
}

/// Check a whole file (framing and checksum) without decoding records.
pub fn verify<R: Read>(r: R) -> Result<Summary, SnapshotError> {
    read(r, |_, _, _| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(
            &Header {
                id: "2-9-1".into(),
                index: 9,
                ..Default::default()
            },
            0,
        )
        .unwrap();
        w.section("a", 1);
        w.record(&("k".to_string(), 7u64)).unwrap();
        w.record(&("l".to_string(), 8u64)).unwrap();
        w.section("b", 3);
        w.finish()
    }

    #[test]
    fn round_trip_and_counts() {
        let f = sample();
        let mut seen = Vec::new();
        let s = read(&f[..], |sec, n, b| {
            let (k, v): (String, u64) = decode_record(b).unwrap();
            seen.push((sec.name.clone(), n, k, v));
            Ok(())
        })
        .unwrap();
        assert_eq!(s.header.index, 9);
        assert_eq!(s.size, f.len() as u64);
        assert_eq!(
            s.sections
                .iter()
                .map(|x| (&x.name[..], x.version, x.records))
                .collect::<Vec<_>>(),
            [("a", 1, 2), ("b", 3, 0)]
        );
        assert_eq!(seen[1], ("a".into(), 1, "l".into(), 8));
    }

    /// Every truncation and every flipped byte is refused.
    #[test]
    fn truncated_or_flipped_is_refused() {
        let f = sample();
        for n in 0..f.len() {
            assert!(verify(&f[..n]).is_err(), "truncated to {n}");
            let mut g = f.clone();
            g[n] ^= 0x40;
            assert!(verify(&g[..]).is_err(), "byte {n} flipped");
        }
        let mut joined = f.clone();
        joined.extend_from_slice(&f);
        assert!(matches!(
            verify(&joined[..]),
            Err(SnapshotError::Corrupt(_))
        ));
        let mut g = f.clone();
        // inside the header's JSON: framing intact, contents changed
        g[20] ^= 1;
        assert!(matches!(verify(&g[..]), Err(SnapshotError::Checksum)));
        assert!(matches!(
            verify(&f[..f.len() - 10]),
            Err(SnapshotError::Truncated(_))
        ));
        assert!(matches!(
            verify(&b"PK\x03\x04 a zip"[..]),
            Err(SnapshotError::NotASnapshot)
        ));
    }
}
