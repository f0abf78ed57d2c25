//! Running check and reload commands: `sh -c`, bounded by a timeout, output
//! captured for the log. A command that times out is killed with its whole
//! process group.

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

/// Output kept per command.
const MAX_OUTPUT: u64 = 16 * 1024;

#[derive(Debug, Clone)]
pub struct CmdResult {
    /// Exit code; None when killed by a signal or timed out.
    pub code: Option<i32>,
    pub output: String,
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
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let collect = async {
        let mut o = Vec::new();
        let mut e = Vec::new();
        let a = async {
            if let Some(s) = out.as_mut() {
                let _ = s.take(MAX_OUTPUT).read_to_end(&mut o).await;
            }
        };
        let b = async {
            if let Some(s) = err.as_mut() {
                let _ = s.take(MAX_OUTPUT).read_to_end(&mut e).await;
            }
        };
        tokio::join!(a, b);
        let status = child.wait().await;
        o.extend_from_slice(&e);
        (status, o)
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok((status, output)) => {
            let status = status?;
            Ok(CmdResult {
                code: status.code(),
                output: String::from_utf8_lossy(&output).trim_end().to_string(),
                duration: start.elapsed(),
                timed_out: false,
            })
        }
        Err(_) => {
            if let Some(pid) = pid {
                // The whole group: `sh -c` may have spawned children.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
            Ok(CmdResult {
                code: None,
                output: String::new(),
                duration: start.elapsed(),
                timed_out: true,
            })
        }
    }
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
        let r = run("sleep 5", Duration::from_millis(200)).await.unwrap();
        assert!(r.timed_out && !r.success());
        assert!(r.duration < Duration::from_secs(2));
    }
}
