//! Atomic file replacement: stage next to the destination (a rename never
//! crosses filesystems), fsync, set mode and owner (keeping the existing
//! file's when none is configured), run the check command on the staged
//! file, keep a backup if asked, rename over the destination, fsync the
//! directory. Nothing is touched when bytes, mode and owner are unchanged.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command;
use crate::resource::Owner;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The write itself failed (full or read-only filesystem, permissions):
    /// worth retrying, the content is fine.
    #[error("{op} {path}: {source}")]
    Io {
        op: Op,
        path: String,
        source: std::io::Error,
    },
    /// check_cmd rejected the staged file: the content is bad, and retrying
    /// it is pointless until the data changes.
    // The output quoted: one log line, however many lines it printed.
    #[error("check_cmd {cmd:?} failed ({status}): {output:?}")]
    CheckFailed {
        cmd: String,
        status: String,
        output: String,
    },
}

/// Which step of a write failed, for the log and to tell one cause from
/// another (the stage file's name is random; the step and errno are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    CreateDir,
    CreateStage,
    WriteStage,
    ChmodStage,
    ChownStage,
    SyncStage,
    StartCheck,
    Backup,
    Rename,
    SyncDir,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Op::CreateDir => "creating directory",
            Op::CreateStage => "creating stage file",
            Op::WriteStage => "writing stage file",
            Op::ChmodStage => "setting the mode of stage file",
            Op::ChownStage => "setting the owner of stage file",
            Op::SyncStage => "fsyncing stage file",
            Op::StartCheck => "starting check_cmd on",
            Op::Backup => "writing backup",
            Op::Rename => "renaming the stage file over",
            Op::SyncDir => "fsyncing directory",
        })
    }
}

impl WriteError {
    /// A failure of the write itself (not of the content): retry it.
    pub fn retryable(&self) -> bool {
        matches!(self, WriteError::Io { .. })
    }

    /// The new file is in place already: only the directory fsync failed.
    pub fn replaced(&self) -> bool {
        matches!(
            self,
            WriteError::Io {
                op: Op::SyncDir,
                ..
            }
        )
    }

    /// What makes two failures the same: the step and the OS error, not the
    /// (random) stage file name.
    pub fn cause(&self) -> String {
        match self {
            WriteError::Io { op, source, .. } => match source.raw_os_error() {
                Some(n) => format!("{op:?}/{n}"),
                None => format!("{op:?}/{:?}", source.kind()),
            },
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Unchanged,
    /// Replaced; `check` is the check_cmd's exit code and duration, if run.
    Changed {
        check: Option<(i32, Duration)>,
    },
}

pub struct Target<'a> {
    pub dest: &'a Path,
    pub mode: Option<u32>,
    pub owner: Owner,
    pub check_cmd: Option<&'a str>,
    pub backup: bool,
    pub keep_stage: bool,
    pub command_timeout: Duration,
    /// Create missing parent directories (else a missing one is an error).
    pub create_dirs: bool,
}

fn io(op: Op, path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

/// What would be written: mode and owner after applying defaults.
pub fn desired(t: &Target) -> (u32, Option<u32>, Option<u32>) {
    let meta = std::fs::metadata(t.dest).ok();
    let mode = t
        .mode
        .or_else(|| meta.as_ref().map(|m| m.permissions().mode() & 0o7777))
        .unwrap_or(0o644);
    let uid = t.owner.uid.or_else(|| meta.as_ref().map(|m| m.uid()));
    let gid = t.owner.gid.or_else(|| meta.as_ref().map(|m| m.gid()));
    (mode, uid, gid)
}

/// True when dest already has exactly these bytes, mode and owner.
pub fn unchanged(t: &Target, contents: &[u8]) -> bool {
    let Ok(meta) = std::fs::metadata(t.dest) else {
        return false;
    };
    let (mode, uid, gid) = desired(t);
    meta.permissions().mode() & 0o7777 == mode
        && uid.map(|u| u == meta.uid()).unwrap_or(true)
        && gid.map(|g| g == meta.gid()).unwrap_or(true)
        && meta.len() == contents.len() as u64
        && std::fs::read(t.dest)
            .map(|b| b == contents)
            .unwrap_or(false)
}

fn stage_path(dest: &Path) -> PathBuf {
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!(
        ".{name}.tribune-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Keep a copy of `dest` as `dest.bak`, replaced atomically as well: a
/// failure half way (a full disk) leaves the previous backup intact.
fn backup(dest: &Path) -> Result<(), WriteError> {
    let mut bak = dest.as_os_str().to_owned();
    bak.push(".bak");
    let bak = PathBuf::from(bak);
    let stage = stage_path(&bak);
    let result = std::fs::copy(dest, &stage)
        .and_then(|_| std::fs::File::open(&stage)?.sync_all())
        .and_then(|_| std::fs::rename(&stage, &bak));
    if result.is_err() {
        let _ = std::fs::remove_file(&stage);
    }
    result.map_err(io(Op::Backup, &bak))
}

/// Write `contents` to `t.dest` atomically (see the module docs).
pub async fn write(t: &Target<'_>, contents: &[u8]) -> Result<Written, WriteError> {
    if unchanged(t, contents) {
        return Ok(Written::Unchanged);
    }
    let (mode, uid, gid) = desired(t);
    let dir = t
        .dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    if t.create_dirs {
        std::fs::create_dir_all(&dir).map_err(io(Op::CreateDir, &dir))?;
    }
    let stage = stage_path(t.dest);
    let result = async {
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&stage)
                .map_err(io(Op::CreateStage, &stage))?;
            f.write_all(contents).map_err(io(Op::WriteStage, &stage))?;
            // Explicit chmod: the umask must not change the configured mode.
            f.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(io(Op::ChmodStage, &stage))?;
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::fchown(&f, uid, gid).map_err(io(Op::ChownStage, &stage))?;
            }
            f.sync_all().map_err(io(Op::SyncStage, &stage))?;
        }
        let mut check = None;
        if let Some(cmd) = t.check_cmd {
            let cmd = cmd.replace("{{.src}}", &stage.display().to_string());
            let r = command::run(&cmd, t.command_timeout)
                .await
                .map_err(io(Op::StartCheck, &stage))?;
            if !r.success() {
                return Err(WriteError::CheckFailed {
                    cmd,
                    status: r.describe(),
                    output: r.output,
                });
            }
            check = Some((0, r.duration));
        }
        if t.backup && t.dest.exists() {
            backup(t.dest)?;
        }
        std::fs::rename(&stage, t.dest).map_err(io(Op::Rename, t.dest))?;
        sync_dir(&dir).map_err(io(Op::SyncDir, &dir))?;
        Ok(Written::Changed { check })
    }
    .await;
    if result.is_err() && !t.keep_stage {
        let _ = std::fs::remove_file(&stage);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(dest: &'a Path, check: Option<&'a str>) -> Target<'a> {
        Target {
            dest,
            mode: None,
            owner: Owner {
                uid: None,
                gid: None,
            },
            check_cmd: check,
            backup: false,
            keep_stage: false,
            command_timeout: Duration::from_secs(5),
            create_dirs: true,
        }
    }

    /// Creates parents, keeps an existing mode, skips identical content,
    /// and a failing check leaves the old file untouched with no stage left.
    #[tokio::test]
    async fn atomic_write_rules() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a/b/out.conf");
        assert_eq!(
            write(&target(&dest, None), b"one").await.unwrap(),
            Written::Changed { check: None }
        );
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mtime = std::fs::metadata(&dest).unwrap().modified().unwrap();
        assert_eq!(
            write(&target(&dest, None), b"one").await.unwrap(),
            Written::Unchanged
        );
        assert_eq!(std::fs::metadata(&dest).unwrap().modified().unwrap(), mtime);
        assert_eq!(
            write(&target(&dest, None), b"two").await.unwrap(),
            Written::Changed { check: None }
        );
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = write(&target(&dest, Some("grep -q good {{.src}}")), b"bad")
            .await
            .unwrap_err();
        assert!(matches!(e, WriteError::CheckFailed { .. }), "{e}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
            1,
            "stage file left behind"
        );
        assert!(matches!(
            write(&target(&dest, Some("grep -q good {{.src}}")), b"good")
                .await
                .unwrap(),
            Written::Changed {
                check: Some((0, _))
            }
        ));
        let mut t = target(&dest, None);
        t.backup = true;
        t.mode = Some(0o640);
        write(&t, b"three").await.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("a/b/out.conf.bak")).unwrap(),
            b"good"
        );
        assert_eq!(
            std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}
