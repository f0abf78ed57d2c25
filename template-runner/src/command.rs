//! Running check and reload commands: `sh -c`, bounded by a timeout, output
//! captured for the log. A command that times out is killed with its whole
//! process group.
//!
//! Both pipes are read to the end, concurrently, however much the command
//! prints: only the first [`MAX_OUTPUT`] bytes of each are kept, the rest is
//! read and dropped. A pipe that is no longer read fills up (64 KiB on
//! Linux) and blocks the command, which then looks like a timeout
//! (`nginx -T` prints more than that).

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Output kept per stream (stdout, stderr).
pub const MAX_OUTPUT: usize = 16 * 1024;
/// How long the pipes may stay open after the command exited (a background
/// process it started still holds them) before we stop reading; as Go's
/// `exec.Cmd.WaitDelay`.
const PIPE_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct CmdResult {
    /// Exit code; None when killed by a signal or timed out.
    pub code: Option<i32>,
    /// stdout then stderr, each cut at [`MAX_OUTPUT`] bytes with a note
    /// saying how much was dropped.
    pub output: String,
    /// Bytes the command printed in all (both streams), kept or not.
    pub output_bytes: u64,
    /// Whether some of the output was dropped.
    pub truncated: bool,
    pub duration: Duration,
    pub timed_out: bool,
}

impl CmdResult {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    pub fn describe(&self) -> String {
        match (self.timed_out, self.code) {
            (true, _) => format!("timed out after {:?}", self.duration),
            (false, Some(c)) => format!("exit {c}"),
            (false, None) => "killed by a signal".into(),
        }
    }
}

/// One stream's output: the kept head and the total length.
#[derive(Default)]
struct Captured {
    kept: Vec<u8>,
    total: u64,
}

/// Read `r` to the end, keeping the first [`MAX_OUTPUT`] bytes.
async fn drain(mut r: impl AsyncRead + Unpin, into: Arc<Mutex<Captured>>) {
    let mut buf = vec![0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut c = into.lock();
                c.total += n as u64;
                let room = MAX_OUTPUT.saturating_sub(c.kept.len());
                let keep = room.min(n);
                c.kept.extend_from_slice(&buf[..keep]);
            }
        }
    }
}

/// The text of one stream, with a note when it was cut.
fn text(name: &str, c: &Captured) -> String {
    let mut s = String::from_utf8_lossy(&c.kept).trim_end().to_string();
    if c.total > c.kept.len() as u64 {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(&format!(
            "[{name} truncated: {} bytes, the first {} shown]",
            c.total,
            c.kept.len()
        ));
    }
    s
}

pub async fn run(cmd: &str, timeout: Duration) -> std::io::Result<CmdResult> {
    let start = Instant::now();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id();
    let out = Arc::new(Mutex::new(Captured::default()));
    let err = Arc::new(Mutex::new(Captured::default()));
    let mut readers = Vec::new();
    if let Some(s) = child.stdout.take() {
        readers.push(tokio::spawn(drain(s, out.clone())));
    }
    if let Some(s) = child.stderr.take() {
        readers.push(tokio::spawn(drain(s, err.clone())));
    }
    let (code, timed_out) = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => (status?.code(), false),
        Err(_) => {
            if let Some(pid) = pid {
                // The whole group: `sh -c` may have spawned children.
                gocompat::process::kill_group(pid);
            }
            let _ = child.wait().await;
            (None, true)
        }
    };
    let duration = start.elapsed();
    // The pipes close when the last process holding them exits; one that
    // outlives the command (started in the background) is not waited for.
    let grace = tokio::time::Instant::now() + PIPE_GRACE;
    for r in readers {
        let abort = r.abort_handle();
        if tokio::time::timeout_at(grace, r).await.is_err() {
            abort.abort();
        }
    }
    let (out, err) = (out.lock(), err.lock());
    let output = [text("stdout", &out), text("stderr", &err)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    Ok(CmdResult {
        code,
        output,
        output_bytes: out.total + err.total,
        truncated: out.total > out.kept.len() as u64 || err.total > err.kept.len() as u64,
        duration,
        timed_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exit_codes_output_timeout() {
        let r = run("echo hi; echo err >&2; exit 3", Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.code, Some(3));
        assert!(r.output.contains("hi") && r.output.contains("err"));
        assert!(!r.truncated);
        let r = run("echo before; sleep 5", Duration::from_millis(200))
            .await
            .unwrap();
        assert!(r.timed_out && !r.success());
        assert!(r.duration < Duration::from_secs(2));
        // what it printed before the timeout is kept for the log
        assert_eq!(r.output, "before");
    }

    /// Far more output than a pipe holds, on both streams: the command
    /// still finishes at once, the kept part is bounded and says it was cut.
    #[tokio::test]
    async fn large_output_is_drained_and_capped() {
        let r = run(
            "head -c 300000 /dev/zero | tr '\\0' o; head -c 200000 /dev/zero | tr '\\0' e >&2; exit 0",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        assert!(r.success(), "{}", r.describe());
        assert!(r.duration < Duration::from_secs(5), "{:?}", r.duration);
        assert!(r.truncated);
        assert_eq!(r.output_bytes, 500_000);
        assert!(r.output.len() < 2 * MAX_OUTPUT + 200, "{}", r.output.len());
        assert!(r
            .output
            .contains("[stdout truncated: 300000 bytes, the first 16384 shown]"));
        assert!(r
            .output
            .contains("[stderr truncated: 200000 bytes, the first 16384 shown]"));
    }

    /// A background process that keeps the pipe open does not hold the
    /// command past its exit by more than the grace period.
    #[tokio::test]
    async fn background_child_does_not_hold_the_command() {
        let r = run("sleep 3 & echo started", Duration::from_secs(20))
            .await
            .unwrap();
        assert!(r.success());
        assert!(r.duration < Duration::from_secs(1), "{:?}", r.duration);
        assert_eq!(r.output, "started");
    }
}
