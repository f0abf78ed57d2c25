//! The raft log on disk: an append-only write-ahead log in segment files.
//!
//! Every mutation of the log (append, truncate, purge, a meta value such as
//! the vote) is one checksummed record appended to the current segment; a
//! batch of them is one `pwrite` and, when durable, one `fdatasync`. A
//! B-tree file rewrote half a dozen scattered pages per commit, and the
//! fsync had to flush all of them; an append flushes the pages it wrote.
//!
//! The current segment is kept zero-filled ahead of its last record
//! (`ZERO_AHEAD`); replay ends at the first zero length whose remainder is
//! all zeros.
//!
//! Loading replays the segments in order. A record that is cut short or
//! fails its checksum at the end of the last segment is what a crash leaves
//! of a write that was never acknowledged (acknowledging waits for the
//! fsync, which makes everything before it durable), so the log is cut
//! there. Anywhere else it is corruption, reported, never skipped.
//!
//! A segment is closed at [`SEGMENT_BYTES`]; the next one starts with the
//! current meta values and purge point, so an old segment holds nothing but
//! entries, and is deleted once all of them are purged (after the purge
//! record is durable).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A segment is closed once it holds this much (one batch may go past it).
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// The file is zero-filled this far ahead of the last record: overwriting
/// blocks already written makes an fdatasync flush data only, where growing
/// the file would also commit the file system's journal for its new size.
const ZERO_AHEAD: u64 = 1 << 20;
static ZEROS: [u8; ZERO_AHEAD as usize] = [0; ZERO_AHEAD as usize];
/// No record is larger (raft entries are bounded far below this).
const MAX_RECORD: u32 = 1 << 30;
const MAGIC: &[u8; 8] = b"TRIBWAL1";
const HEADER: u64 = 20;
const RECORD_HEAD: usize = 8;

const APPEND: u8 = 1;
const TRUNCATE: u8 = 2;
const PURGE: u8 = 3;
const META: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: corrupt at byte {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("fsync of {0} failed: written data may not be on disk")]
    SyncFailed(PathBuf),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One change to the log, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record<'a> {
    Append { index: u64, entry: &'a [u8] },
    Truncate { since: u64 },
    Purge { upto: u64, id: &'a [u8] },
    Meta { name: &'a str, value: &'a [u8] },
}

impl Record<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; RECORD_HEAD]);
        match self {
            Record::Append { index, entry } => {
                out.push(APPEND);
                out.extend_from_slice(&index.to_le_bytes());
                out.extend_from_slice(entry);
            }
            Record::Truncate { since } => {
                out.push(TRUNCATE);
                out.extend_from_slice(&since.to_le_bytes());
            }
            Record::Purge { upto, id } => {
                out.push(PURGE);
                out.extend_from_slice(&upto.to_le_bytes());
                out.extend_from_slice(id);
            }
            Record::Meta { name, value } => {
                out.push(META);
                out.push(name.len() as u8);
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(value);
            }
        }
        let body = &out[start + RECORD_HEAD..];
        let len = body.len() as u32;
        let crc = crc32fast::hash(body);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(body: &[u8]) -> Option<Record<'_>> {
        let (&kind, rest) = body.split_first()?;
        let u64_at = |b: &[u8]| {
            b.get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
        };
        match kind {
            APPEND => Some(Record::Append {
                index: u64_at(rest)?,
                entry: &rest[8..],
            }),
            TRUNCATE if rest.len() == 8 => Some(Record::Truncate {
                since: u64_at(rest)?,
            }),
            PURGE => Some(Record::Purge {
                upto: u64_at(rest)?,
                id: &rest[8..],
            }),
            META => {
                let (&n, rest) = rest.split_first()?;
                let name = std::str::from_utf8(rest.get(..n as usize)?).ok()?;
                Some(Record::Meta {
                    name,
                    value: &rest[n as usize..],
                })
            }
            _ => None,
        }
    }
}

/// What the log holds, from replaying it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Encoded entries by index, those at or below the purge point left out.
    pub entries: BTreeMap<u64, Vec<u8>>,
    /// The latest value of each meta name.
    pub meta: BTreeMap<String, Vec<u8>>,
    /// The latest purge: up to which index, and the encoded purged log id.
    pub purged: Option<(u64, Vec<u8>)>,
}

impl Replayed {
    fn apply(&mut self, r: Record<'_>) {
        match r {
            Record::Append { index, entry } => {
                self.entries.insert(index, entry.to_vec());
            }
            Record::Truncate { since } => {
                self.entries.split_off(&since);
            }
            Record::Purge { upto, id } => {
                if self.purged.as_ref().is_none_or(|(p, _)| *p <= upto) {
                    self.entries = self.entries.split_off(&(upto + 1));
                    self.purged = Some((upto, id.to_vec()));
                }
            }
            Record::Meta { name, value } => {
                self.meta.insert(name.to_string(), value.to_vec());
            }
        }
    }
}

struct Segment {
    seq: u64,
    path: PathBuf,
    /// The highest index appended in it (it can go once that is purged).
    max_index: Option<u64>,
}

/// The open log: segments in order, the last one written to.
pub struct Wal {
    dir: PathBuf,
    segments: Vec<Segment>,
    file: File,
    /// Where the next record goes in the current segment.
    end: u64,
    /// The current segment's length: zeros from `end` to here.
    zeroed: u64,
    /// Latest meta values and purge point, restated at each new segment.
    meta: BTreeMap<String, Vec<u8>>,
    purged: Option<(u64, Vec<u8>)>,
    /// Purge point made durable by the last fsync.
    durable_purge: Option<u64>,
    sync_failed: bool,
    buf: Vec<u8>,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.wal")
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_at(dir))
}

/// The segments in `dir`, by sequence number.
fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, WalError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_at(dir))? {
        let e = e.map_err(io_at(dir))?;
        let name = e.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".wal"))
            .filter(|s| s.len() == 16)
            .and_then(|s| u64::from_str_radix(s, 16).ok())
        else {
            continue;
        };
        out.push((seq, e.path()));
    }
    out.sort();
    Ok(out)
}

fn header(seq: u64) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&h[..16]);
    h[16..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// How a segment's replay ended.
enum End {
    /// At the end of the file.
    Clean,
    /// A record cut short or failing its checksum at this offset.
    Torn(u64, String),
}

/// Replay one segment's records into `into`; `None` when its header is
/// missing or wrong (a segment whose creation a crash interrupted).
fn replay_segment(
    path: &Path,
    seq: u64,
    into: &mut Replayed,
) -> Result<Option<(End, Option<u64>, u64)>, WalError> {
    let data = std::fs::read(path).map_err(io_at(path))?;
    if data.len() < HEADER as usize || data[..HEADER as usize] != header(seq) {
        return Ok(None);
    }
    let mut at = HEADER as usize;
    let mut max_index = None;
    let end = loop {
        if at == data.len() {
            break End::Clean;
        }
        let Some(head) = data.get(at..at + RECORD_HEAD) else {
            break End::Torn(at as u64, "record header cut short".into());
        };
        let len = u32::from_le_bytes(head[..4].try_into().unwrap());
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap());
        if len == 0 && data[at..].iter().all(|b| *b == 0) {
            // The zero-filled space ahead of the last record.
            break End::Clean;
        }
        if len == 0 || len > MAX_RECORD {
            break End::Torn(at as u64, format!("record length {len}"));
        }
        let Some(body) = data.get(at + RECORD_HEAD..at + RECORD_HEAD + len as usize) else {
            break End::Torn(at as u64, "record cut short".into());
        };
        if crc32fast::hash(body) != crc {
            break End::Torn(at as u64, "checksum mismatch".into());
        }
        let Some(r) = Record::decode(body) else {
            return Err(WalError::Corrupt {
                path: path.to_path_buf(),
                offset: at as u64,
                what: "unknown record".into(),
            });
        };
        if let Record::Append { index, .. } = r {
            max_index = max_index.max(Some(index));
        }
        into.apply(r);
        at += RECORD_HEAD + len as usize;
    };
    let valid = match &end {
        End::Clean => at as u64,
        End::Torn(at, _) => *at,
    };
    Ok(Some((end, max_index, valid)))
}

impl Wal {
    /// Open the log in `dir` (created if missing) and replay it.
    pub fn open(dir: &Path) -> Result<(Self, Replayed), WalError> {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let found = list(dir)?;
        let mut replayed = Replayed::default();
        let mut segments = Vec::new();
        let mut tail_end = None;
        let count = found.len();
        for (i, (seq, path)) in found.into_iter().enumerate() {
            let last = i + 1 == count;
            match replay_segment(&path, seq, &mut replayed)? {
                None if last => {
                    // Its creation was cut short: nothing in it was durable.
                    tracing::warn!(path = %path.display(), "raft log: removing a segment without a valid header (interrupted creation)");
                    std::fs::remove_file(&path).map_err(io_at(&path))?;
                    sync_dir(dir)?;
                }
                None => {
                    return Err(WalError::Corrupt {
                        path,
                        offset: 0,
                        what: "segment header".into(),
                    })
                }
                Some((End::Torn(offset, what), _, _)) if !last => {
                    return Err(WalError::Corrupt { path, offset, what })
                }
                Some((end, max_index, valid)) => {
                    if let End::Torn(offset, what) = end {
                        tracing::warn!(path = %path.display(), offset, cause = %what, "raft log: cutting an unacknowledged write a crash left incomplete");
                    }
                    if last {
                        tail_end = Some(valid);
                    }
                    segments.push(Segment {
                        seq,
                        path,
                        max_index,
                    });
                }
            }
        }
        let meta = replayed.meta.clone();
        let purged = replayed.purged.clone();
        let durable_purge = purged.as_ref().map(|(p, _)| *p);
        let (file, end) = match (segments.last(), tail_end) {
            (Some(s), Some(valid)) => {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&s.path)
                    .map_err(io_at(&s.path))?;
                let len = f.metadata().map_err(io_at(&s.path))?.len();
                if len != valid {
                    f.set_len(valid).map_err(io_at(&s.path))?;
                    f.sync_all().map_err(io_at(&s.path))?;
                }
                (f, valid)
            }
            _ => {
                let seq = segments.last().map(|s| s.seq + 1).unwrap_or(1);
                let (f, s) = create_segment(dir, seq, &[])?;
                segments.push(s);
                (f, HEADER)
            }
        };
        let wal = Wal {
            dir: dir.to_path_buf(),
            segments,
            file,
            end,
            zeroed: end,
            meta,
            purged,
            durable_purge,
            sync_failed: false,
            buf: Vec::new(),
        };
        Ok((wal, replayed))
    }

    /// An fsync failed: nothing more may be acknowledged (see `disk`).
    pub fn sync_failed(&self) -> bool {
        self.sync_failed
    }

    fn current_path(&self) -> &Path {
        &self.segments.last().expect("a current segment").path
    }

    /// Append `records` in one write; fsync when `durable`. On an error
    /// nothing of the batch counts: the segment is cut back to where it
    /// began, and the same batch may be written again.
    pub fn write(&mut self, records: &[Record<'_>], durable: bool) -> Result<(), WalError> {
        if self.sync_failed {
            return Err(WalError::SyncFailed(self.current_path().to_path_buf()));
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        for r in records {
            r.encode(&mut buf);
        }
        let res = self.write_encoded(&buf, records, durable);
        buf.clear();
        if buf.capacity() <= 1 << 20 {
            self.buf = buf;
        }
        res
    }

    fn write_encoded(
        &mut self,
        buf: &[u8],
        records: &[Record<'_>],
        durable: bool,
    ) -> Result<(), WalError> {
        if self.end > HEADER && self.end + buf.len() as u64 > SEGMENT_BYTES {
            self.rotate()?;
        }
        let new_end = self.end + buf.len() as u64;
        let mut written = self.file.write_all_at(buf, self.end);
        if written.is_ok() && new_end > self.zeroed {
            written = self.file.write_all_at(&ZEROS, new_end);
        }
        if let Err(e) = written {
            // Whatever part of it landed must not be replayed after a later
            // success wrote less.
            let _ = self.file.set_len(self.end);
            self.zeroed = self.end;
            return Err(io_at(self.current_path())(e));
        }
        self.zeroed = self.zeroed.max(new_end + ZERO_AHEAD);
        if durable {
            self.sync()?;
        }
        self.end += buf.len() as u64;
        let seg = self.segments.last_mut().expect("a current segment");
        for r in records {
            match r {
                Record::Append { index, .. } => seg.max_index = seg.max_index.max(Some(*index)),
                Record::Meta { name, value } => {
                    self.meta.insert(name.to_string(), value.to_vec());
                }
                Record::Purge { upto, id } => self.purged = Some((*upto, id.to_vec())),
                Record::Truncate { .. } => {}
            }
        }
        if durable {
            self.durable_purge = self.purged.as_ref().map(|(p, _)| *p);
            self.drop_purged_segments();
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), WalError> {
        if self.file.sync_data().is_err() {
            self.sync_failed = true;
            return Err(WalError::SyncFailed(self.current_path().to_path_buf()));
        }
        Ok(())
    }

    /// Close the current segment and start the next with the meta values.
    fn rotate(&mut self) -> Result<(), WalError> {
        // A closed segment ends at its last record.
        self.file.set_len(self.end).map_err(io_at(
            &self.segments.last().expect("a current segment").path,
        ))?;
        self.zeroed = self.end;
        self.sync()?;
        let seq = self.segments.last().map(|s| s.seq + 1).unwrap_or(1);
        let mut buf = Vec::new();
        for (name, value) in &self.meta {
            Record::Meta { name, value }.encode(&mut buf);
        }
        if let Some((upto, id)) = &self.purged {
            Record::Purge { upto: *upto, id }.encode(&mut buf);
        }
        let (file, seg) = create_segment(&self.dir, seq, &buf)?;
        tracing::debug!(segment = %seg.path.display(), "raft log: new segment");
        self.file = file;
        self.end = HEADER + buf.len() as u64;
        self.zeroed = self.end;
        self.segments.push(seg);
        Ok(())
    }

    /// Delete closed segments whose entries are all purged durably.
    fn drop_purged_segments(&mut self) {
        let Some(purged) = self.durable_purge else {
            return;
        };
        let keep_from = self.segments[..self.segments.len() - 1]
            .iter()
            .position(|s| s.max_index.is_some_and(|m| m > purged))
            .unwrap_or(self.segments.len() - 1);
        for s in self.segments.drain(..keep_from) {
            if let Err(e) = std::fs::remove_file(&s.path) {
                // Harmless: its entries are purged and ignored on load.
                tracing::warn!(path = %s.path.display(), error = %e, "raft log: cannot delete a purged segment");
            }
        }
    }

    /// The segment files (for tests and diagnostics).
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }
}

/// Create segment `seq` holding its header and `records`, fsynced, and the
/// directory entry. A failed creation leaves no file behind (a retry makes
/// it again).
fn create_segment(dir: &Path, seq: u64, records: &[u8]) -> Result<(File, Segment), WalError> {
    let path = dir.join(segment_name(seq));
    let made: io::Result<File> = (|| {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut head = header(seq).to_vec();
        head.extend_from_slice(records);
        f.write_all_at(&head, 0)?;
        f.sync_all()?;
        Ok(f)
    })();
    let f = match made {
        Ok(f) => f,
        Err(e) => {
            if e.kind() != io::ErrorKind::AlreadyExists {
                let _ = std::fs::remove_file(&path);
            }
            return Err(io_at(&path)(e));
        }
    };
    sync_dir(dir)?;
    Ok((
        f,
        Segment {
            seq,
            path,
            max_index: None,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(index: u64, e: &[u8]) -> Record<'_> {
        Record::Append { index, entry: e }
    }

    #[test]
    fn replays_appends_truncates_purges_and_meta_in_order() {
        let d = tempfile::tempdir().unwrap();
        {
            let (mut w, r) = Wal::open(d.path()).unwrap();
            assert_eq!(r, Replayed::default());
            w.write(&[append(1, b"a"), append(2, b"b"), append(3, b"c")], true)
                .unwrap();
            w.write(&[Record::Truncate { since: 2 }, append(2, b"B")], true)
                .unwrap();
            w.write(
                &[Record::Meta {
                    name: "vote",
                    value: b"v1",
                }],
                false,
            )
            .unwrap();
            w.write(&[Record::Purge { upto: 1, id: b"p1" }], true)
                .unwrap();
            w.write(
                &[Record::Meta {
                    name: "vote",
                    value: b"v2",
                }],
                true,
            )
            .unwrap();
        }
        let (_, r) = Wal::open(d.path()).unwrap();
        assert_eq!(r.entries, BTreeMap::from([(2, b"B".to_vec())]));
        assert_eq!(r.meta.get("vote").map(Vec::as_slice), Some(&b"v2"[..]));
        assert_eq!(r.purged, Some((1, b"p1".to_vec())));
    }

    /// Cut the log at every byte of its last batch, as a crash could: each
    /// replay holds the batches before it whole, and writing goes on.
    #[test]
    fn a_torn_tail_is_cut_and_writing_goes_on() {
        let d = tempfile::tempdir().unwrap();
        let (path, full, before) = {
            let (mut w, _) = Wal::open(d.path()).unwrap();
            w.write(&[append(1, b"one")], true).unwrap();
            let before = w.end;
            w.write(&[append(2, b"two"), append(3, b"three")], true)
                .unwrap();
            let mut full = std::fs::read(w.current_path()).unwrap();
            assert!(
                full.len() as u64 > w.end + ZERO_AHEAD / 2,
                "zero-filled ahead"
            );
            assert!(full[w.end as usize..].iter().all(|b| *b == 0));
            full.truncate(w.end as usize);
            (w.current_path().to_path_buf(), full, before)
        };
        for cut in before..full.len() as u64 {
            std::fs::write(&path, &full[..cut as usize]).unwrap();
            let (mut w, r) = Wal::open(d.path()).unwrap();
            let got: Vec<u64> = r.entries.keys().copied().collect();
            // The second record of the batch may be whole when the cut is
            // at its very end; anything cut short is dropped.
            assert!(got == [1] || got == [1, 2], "cut at {cut}: {got:?}");
            w.write(&[append(9, b"nine")], true).unwrap();
            drop(w);
            let (_, r) = Wal::open(d.path()).unwrap();
            assert_eq!(r.entries.keys().last(), Some(&9), "cut at {cut}");
        }
    }

    /// Zeros after the last record are the space kept ahead; anything
    /// else after a zero length is a torn write, cut.
    #[test]
    fn a_zero_tail_ends_the_log_and_garbage_after_it_is_cut() {
        let d = tempfile::tempdir().unwrap();
        let (path, end) = {
            let (mut w, _) = Wal::open(d.path()).unwrap();
            w.write(&[append(1, b"one")], true).unwrap();
            (w.current_path().to_path_buf(), w.end)
        };
        let (_, r) = Wal::open(d.path()).unwrap();
        assert_eq!(r.entries.len(), 1);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end);
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(&[0; 100]);
        data.push(9);
        std::fs::write(&path, data).unwrap();
        let (mut w, r) = Wal::open(d.path()).unwrap();
        assert_eq!(r.entries.len(), 1);
        w.write(&[append(2, b"two")], true).unwrap();
        drop(w);
        let (_, r) = Wal::open(d.path()).unwrap();
        assert_eq!(r.entries.keys().copied().collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn garbage_in_a_closed_segment_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let big = vec![7u8; 1 << 20];
        let first = {
            let (mut w, _) = Wal::open(d.path()).unwrap();
            for i in 0..70 {
                w.write(&[append(i + 1, &big)], true).unwrap();
            }
            assert!(w.segment_paths().len() >= 2);
            w.segment_paths()[0].clone()
        };
        let mut data = std::fs::read(&first).unwrap();
        let n = data.len();
        data[n - 10] ^= 0xff;
        std::fs::write(&first, data).unwrap();
        match Wal::open(d.path()) {
            Err(WalError::Corrupt { path, .. }) => assert_eq!(path, first),
            other => panic!("expected corruption, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn segments_rotate_restate_meta_and_go_once_purged() {
        let d = tempfile::tempdir().unwrap();
        let big = vec![1u8; 1 << 20];
        let (mut w, _) = Wal::open(d.path()).unwrap();
        w.write(
            &[Record::Meta {
                name: "vote",
                value: b"v",
            }],
            true,
        )
        .unwrap();
        for i in 1..=130 {
            w.write(&[append(i, &big)], true).unwrap();
        }
        let before = w.segment_paths();
        assert!(before.len() >= 3, "{before:?}");
        w.write(
            &[Record::Purge {
                upto: 100,
                id: b"p",
            }],
            true,
        )
        .unwrap();
        let after = w.segment_paths();
        assert!(after.len() < before.len(), "{before:?} -> {after:?}");
        assert!(!after.contains(&before[0]));
        drop(w);
        let (_, r) = Wal::open(d.path()).unwrap();
        assert_eq!(r.meta.get("vote").map(Vec::as_slice), Some(&b"v"[..]));
        assert_eq!(r.entries.keys().next(), Some(&101));
        assert_eq!(r.entries.len(), 30);
    }

    #[test]
    fn an_interrupted_segment_creation_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        {
            let (mut w, _) = Wal::open(d.path()).unwrap();
            w.write(&[append(1, b"x")], true).unwrap();
        }
        std::fs::write(d.path().join(segment_name(2)), b"TRIB").unwrap();
        let (mut w, r) = Wal::open(d.path()).unwrap();
        assert_eq!(r.entries.len(), 1);
        w.write(&[append(2, b"y")], true).unwrap();
        drop(w);
        let (_, r) = Wal::open(d.path()).unwrap();
        assert_eq!(r.entries.len(), 2);
    }
}
