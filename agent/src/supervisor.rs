//! What the agent tells whoever supervises it: systemd's notification
//! socket (`Type=notify` units: `READY=1` once the listeners serve,
//! `STOPPING=1` when shutdown starts) and the pid file of `-pid-file`.

use std::path::{Path, PathBuf};

use sd_notify::NotifyState;

fn notify(state: NotifyState, what: &str) {
    // Without NOTIFY_SOCKET (not under systemd) this does nothing.
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %e, "could not tell systemd the agent is {what}");
    }
}

/// The agent serves: its HTTP API (and DNS) answer.
pub fn ready() {
    notify(NotifyState::Ready, "ready");
}

/// Shutdown has started.
pub fn stopping() {
    notify(NotifyState::Stopping, "stopping");
}

/// `-pid-file`: written (atomically) at start, removed when dropped if it
/// still names this process.
pub struct PidFile {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("writing pid file {path}: {source}")]
pub struct PidFileError {
    path: String,
    source: std::io::Error,
}

impl PidFile {
    pub fn create(path: &Path) -> Result<Self, PidFileError> {
        let pid = std::process::id();
        crate::fsutil::write_atomic(path, pid.to_string().as_bytes()).map_err(|source| {
            PidFileError {
                path: path.display().to_string(),
                source,
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = std::fs::read_to_string(&self.path)
            .is_ok_and(|s| s.trim() == std::process::id().to_string());
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_is_written_and_removed() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tribune.pid");
        let f = PidFile::create(&p).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            std::process::id().to_string()
        );
        drop(f);
        assert!(!p.exists());
        // Another process's file is left alone.
        let f = PidFile::create(&p).unwrap();
        std::fs::write(&p, "1").unwrap();
        drop(f);
        assert!(p.exists());
        assert!(PidFile::create(&d.path().join("no/such/dir/x.pid")).is_err());
    }
}
