//! Seeing files change as it happens, without polling: inotify on a file's directory
//! (the runner replaces files by rename), and lines written to a FIFO (what a reload
//! command run by `sh -c` can report with shell builtins alone). Linux only.
//!
//! Each source is read by one plain thread that timestamps what it sees with
//! [`Instant`] (the clock of the rest of the bench) and hands it to async code over a
//! channel. A thread ends when its receiver is dropped (checked at each event) or
//! when its time limit has passed; one blocked in `read` ends with the process.

use std::ffi::CString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use tokio::sync::mpsc;

const IN_CLOSE_WRITE: u32 = 0x0000_0008;
const IN_MOVED_TO: u32 = 0x0000_0080;
const IN_CREATE: u32 = 0x0000_0100;
const IN_CLOEXEC: i32 = 0o2_000_000;

extern "C" {
    fn inotify_init1(flags: i32) -> i32;
    fn inotify_add_watch(fd: i32, path: *const std::ffi::c_char, mask: u32) -> i32;
    fn mkfifo(path: *const std::ffi::c_char, mode: u32) -> i32;
}

fn cpath(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_bytes()).with_context(|| format!("{} holds a NUL", p.display()))
}

/// One version of a watched file: its contents and when the bench saw it appear.
pub struct Snapshot {
    pub at: Instant,
    pub contents: String,
}

/// Every new version of one file (read after each create/rename/close-for-write in
/// its directory that names it).
pub struct FileWatch {
    path: PathBuf,
    rx: mpsc::UnboundedReceiver<Snapshot>,
}

impl FileWatch {
    /// Watch `path` (its directory must exist) for `limit` at most. The current
    /// contents, if any, arrive first.
    pub fn start(path: &Path, limit: Duration) -> Result<Self> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .ok_or_else(|| anyhow!("{}: no directory", path.display()))?;
        let name = path
            .file_name()
            .ok_or_else(|| anyhow!("{}: no file name", path.display()))?
            .as_bytes()
            .to_vec();
        let cdir = cpath(dir)?;
        // SAFETY: plain syscalls on a NUL-terminated path; the fd is owned by `File`.
        let fd = unsafe { inotify_init1(IN_CLOEXEC) };
        if fd < 0 {
            bail!("inotify_init1: {}", std::io::Error::last_os_error());
        }
        let mut events = unsafe { File::from_raw_fd(fd) };
        if unsafe { inotify_add_watch(fd, cdir.as_ptr(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE) }
            < 0
        {
            bail!(
                "inotify_add_watch {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let file = path.to_path_buf();
        let deadline = Instant::now() + limit;
        std::thread::Builder::new()
            .name("filewatch".into())
            .spawn(move || {
                let mut last: Option<String> = None;
                let send = |at: Instant, last: &mut Option<String>| -> bool {
                    let Ok(contents) = std::fs::read_to_string(&file) else {
                        return true; // gone or replaced meanwhile: the next event tells
                    };
                    if last.as_deref() == Some(contents.as_str()) {
                        return true;
                    }
                    *last = Some(contents.clone());
                    tx.send(Snapshot { at, contents }).is_ok()
                };
                if !send(Instant::now(), &mut last) {
                    return;
                }
                let mut buf = vec![0u8; 64 * 1024];
                while Instant::now() < deadline {
                    let n = match events.read(&mut buf) {
                        Ok(n) if n > 0 => n,
                        _ => return,
                    };
                    let at = Instant::now();
                    // struct inotify_event { int wd; u32 mask, cookie, len; char name[len]; }
                    let mut off = 0;
                    let mut ours = false;
                    while off + 16 <= n {
                        let len = u32::from_ne_bytes(buf[off + 12..off + 16].try_into().unwrap())
                            as usize;
                        let end = (off + 16 + len).min(n);
                        let ev_name = &buf[off + 16..end];
                        let ev_name = &ev_name[..ev_name
                            .iter()
                            .position(|&b| b == 0)
                            .unwrap_or(ev_name.len())];
                        ours |= ev_name == name.as_slice();
                        off = end;
                    }
                    if ours && !send(at, &mut last) {
                        return;
                    }
                }
            })
            .context("spawning the inotify thread")?;
        Ok(Self {
            path: path.to_path_buf(),
            rx,
        })
    }

    /// The first version for which `want` holds, within `timeout`; versions seen on
    /// the way are counted in the second value.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        want: impl Fn(&str) -> bool,
    ) -> Result<(Snapshot, usize)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut skipped = 0;
        loop {
            let s = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .map_err(|_| {
                    anyhow!(
                        "{}: not as expected within {timeout:?} ({skipped} other versions seen)",
                        self.path.display()
                    )
                })?
                .ok_or_else(|| anyhow!("{}: watch thread ended", self.path.display()))?;
            if want(&s.contents) {
                return Ok((s, skipped));
            }
            skipped += 1;
        }
    }
}

/// Lines written to a FIFO, each with the moment the bench read it.
pub struct FifoLines {
    path: PathBuf,
    rx: mpsc::UnboundedReceiver<(Instant, String)>,
}

impl FifoLines {
    /// Create the FIFO `path` (mode 0600) and read it for `limit` at most. The bench
    /// holds it open for writing too, so writers never block and reads never see EOF.
    pub fn create(path: &Path, limit: Duration) -> Result<Self> {
        let c = cpath(path)?;
        // SAFETY: NUL-terminated path.
        if unsafe { mkfifo(c.as_ptr(), 0o600) } != 0 {
            bail!(
                "mkfifo {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
        let fifo = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let deadline = Instant::now() + limit;
        std::thread::Builder::new()
            .name("fifo".into())
            .spawn(move || {
                let mut lines = BufReader::new(fifo);
                let mut line = String::new();
                while Instant::now() < deadline {
                    line.clear();
                    match lines.read_line(&mut line) {
                        Ok(n) if n > 0 => {}
                        _ => return,
                    }
                    if tx
                        .send((Instant::now(), line.trim_end().to_string()))
                        .is_err()
                    {
                        return;
                    }
                }
            })
            .context("spawning the FIFO reader")?;
        Ok(Self {
            path: path.to_path_buf(),
            rx,
        })
    }

    /// The next line, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Result<(Instant, String)> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .map_err(|_| anyhow!("{}: nothing within {timeout:?}", self.path.display()))?
            .ok_or_else(|| anyhow!("{}: reader thread ended", self.path.display()))
    }

    /// Lines that arrived but were not read yet (dropped).
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while self.rx.try_recv().is_ok() {
            n += 1;
        }
        n
    }
}
