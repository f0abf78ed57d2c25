//! `-log-file`: the agent's log also written to a file, rotated as
//! Consul rotates it.
//!
//! The active file keeps its name (`-log-file`'s last part, `consul.log`
//! when it names a directory); on rotation it is renamed to
//! `<stem>-<unix ns><ext>` beside it and a new one is opened. Rotation
//! happens before a write once the file holds `-log-rotate-bytes` (0: no
//! limit) or is older than `-log-rotate-duration` (default 24h). Then
//! `-log-rotate-max-files` archives are kept (0: all, -1: none), the oldest
//! removed first. The file is opened in append mode, mode 0640.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Consul's default rotation period.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The active file's name when `-log-file` names a directory.
const DEFAULT_NAME: &str = "consul.log";

#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("Failed to setup logging: open {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("log file {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
}

/// Rotation settings (`log_rotate_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub duration: Duration,
    pub max_files: i64,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            max_bytes: 0,
            duration: DEFAULT_DURATION,
            max_files: 0,
        }
    }
}

pub struct LogFile {
    dir: PathBuf,
    name: String,
    rotation: Rotation,
    file: File,
    opened: Instant,
    written: u64,
}

impl LogFile {
    /// Open (create or append to) the active file named by `path`.
    pub fn open(path: &Path, rotation: Rotation) -> Result<Self, LogFileError> {
        let as_dir = path.as_os_str().to_string_lossy().ends_with('/') || path.is_dir();
        let (dir, name) = if as_dir {
            (path.to_path_buf(), DEFAULT_NAME.to_string())
        } else {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| DEFAULT_NAME.into());
            (dir, name)
        };
        let full = dir.join(&name);
        let file = open_append(&full).map_err(|source| LogFileError::Open {
            path: full.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            name,
            rotation,
            file,
            opened: Instant::now(),
            written: 0,
        })
    }

    /// The active file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// `<stem>-` and `<ext>` of the archive names (`.log` when the active
    /// name has no extension).
    fn pattern(&self) -> (String, String) {
        match self.name.rfind('.').filter(|i| *i > 0) {
            Some(i) => (format!("{}-", &self.name[..i]), self.name[i..].to_string()),
            None => (format!("{}-", self.name), ".log".into()),
        }
    }

    /// Append one line, rotating first when due.
    pub fn write_line(&mut self, line: &[u8]) -> Result<(), LogFileError> {
        let by_size = self.rotation.max_bytes > 0 && self.written >= self.rotation.max_bytes;
        if by_size || self.opened.elapsed() >= self.rotation.duration {
            self.rotate()?;
        }
        self.file
            .write_all(line)
            .map_err(|source| LogFileError::Io {
                path: self.path(),
                what: "write",
                source,
            })?;
        self.written += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogFileError> {
        let io = |what: &'static str, path: PathBuf| {
            move |source| LogFileError::Io { path, what, source }
        };
        let (stem, ext) = self.pattern();
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let archive = self.dir.join(format!("{stem}{ns}{ext}"));
        std::fs::rename(self.path(), &archive).map_err(io("rename", self.path()))?;
        self.prune()?;
        self.file = open_append(&self.path()).map_err(io("open", self.path()))?;
        self.opened = Instant::now();
        self.written = 0;
        Ok(())
    }

    /// Keep `max_files` archives (all with 0, none with a negative count).
    fn prune(&self) -> Result<(), LogFileError> {
        if self.rotation.max_files == 0 {
            return Ok(());
        }
        let (stem, ext) = self.pattern();
        let entries = std::fs::read_dir(&self.dir).map_err(|source| LogFileError::Io {
            path: self.dir.clone(),
            what: "list",
            source,
        })?;
        let mut archives: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.len() > stem.len() + ext.len() && n.starts_with(&stem) && n.ends_with(&ext)
            })
            .map(|e| e.path())
            .collect();
        // The timestamps have the same number of digits for centuries, so
        // name order is age order, as Consul sorts them.
        archives.sort();
        let keep = usize::try_from(self.rotation.max_files.max(0)).unwrap_or(usize::MAX);
        let stale = archives.len().saturating_sub(keep);
        for old in &archives[..stale] {
            std::fs::remove_file(old).map_err(|source| LogFileError::Io {
                path: old.clone(),
                what: "remove",
                source,
            })?;
        }
        Ok(())
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let d = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_bytes: 10,
            max_files: 2,
            ..Rotation::default()
        };
        let mut f = LogFile::open(&d.path().join("agent.log"), rotation).unwrap();
        for i in 0..5 {
            f.write_line(format!("line {i:04}\n").as_bytes()).unwrap();
        }
        let n = names(d.path());
        assert_eq!(n.len(), 3, "{n:?}");
        assert_eq!(n[2], "agent.log");
        assert!(
            n[0].starts_with("agent-") && n[0].ends_with(".log"),
            "{n:?}"
        );
        let active = std::fs::read_to_string(d.path().join("agent.log")).unwrap();
        assert_eq!(active, "line 0004\n");
        let newest = std::fs::read_to_string(d.path().join(&n[1])).unwrap();
        assert_eq!(newest, "line 0003\n");
    }

    #[test]
    fn a_directory_gets_consuls_name_and_no_archives_with_minus_one() {
        let d = tempfile::tempdir().unwrap();
        let dir = format!("{}/", d.path().display());
        let rotation = Rotation {
            max_bytes: 1,
            max_files: -1,
            ..Rotation::default()
        };
        let mut f = LogFile::open(Path::new(&dir), rotation).unwrap();
        f.write_line(b"a\n").unwrap();
        f.write_line(b"b\n").unwrap();
        assert_eq!(names(d.path()), vec!["consul.log".to_string()]);
    }

    #[test]
    fn rotates_by_age() {
        let d = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            duration: Duration::from_millis(50),
            ..Rotation::default()
        };
        let mut f = LogFile::open(&d.path().join("x"), rotation).unwrap();
        f.write_line(b"a\n").unwrap();
        std::thread::sleep(Duration::from_millis(80));
        f.write_line(b"b\n").unwrap();
        let n = names(d.path());
        assert_eq!(n.len(), 2, "{n:?}");
        assert!(
            n[0] == "x" && n[1].starts_with("x-") && n[1].ends_with(".log"),
            "{n:?}"
        );
    }
}
