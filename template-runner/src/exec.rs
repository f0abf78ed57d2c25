//! Sidecar mode: supervise one child process. It starts after the first
//! complete render; on change it gets the reload signal (or is restarted
//! when none is set); on shutdown it gets the kill signal, then SIGKILL
//! after the timeout; tribune-template exits with the child's exit code.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;

#[derive(Clone, Debug)]
pub struct ExecSpec {
    pub command: String,
    pub reload_signal: Option<Signal>,
    pub kill_signal: Signal,
    pub kill_timeout: Duration,
    /// Wait a random time up to this before signalling or restarting the
    /// child after a change (consul-template's `splay`).
    pub splay: Duration,
    pub env: ExecEnv,
}

/// The child's environment (consul-template's `exec { env { ... } }`):
/// ours (or none when `pristine`), filtered by `allow`/`deny` globs, plus
/// `custom` pairs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ExecEnv {
    pub pristine: bool,
    pub custom: Vec<(String, String)>,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

impl ExecEnv {
    /// The variables the child gets.
    pub fn vars(&self) -> Vec<(String, String)> {
        let pats = |v: &[String]| -> Vec<glob::Pattern> {
            v.iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect()
        };
        let (allow, deny) = (pats(&self.allow), pats(&self.deny));
        let mut out: Vec<(String, String)> = if self.pristine {
            vec![]
        } else {
            std::env::vars()
                .filter(|(k, _)| allow.is_empty() || allow.iter().any(|p| p.matches(k)))
                .filter(|(k, _)| !deny.iter().any(|p| p.matches(k)))
                .collect()
        };
        for (k, v) in &self.custom {
            out.retain(|(x, _)| x != k);
            out.push((k.clone(), v.clone()));
        }
        out
    }

    fn is_default(&self) -> bool {
        *self == ExecEnv::default()
    }
}

/// Parse a signal name (`SIGHUP`, `HUP`, `hup`) or number.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let up = s.trim().to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().ok()
}

pub struct Child {
    child: tokio::process::Child,
    pub spec: ExecSpec,
}

/// Words of a command when it is one simple command (so signals reach it
/// directly instead of an intermediate shell).
fn simple_argv(cmd: &str) -> Option<Vec<String>> {
    // Any shell operator outside quotes makes it a shell program.
    let (mut single, mut double, mut escaped) = (false, false, false);
    for c in cmd.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if !single => escaped = true,
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            ';' | '&' | '|' | '<' | '>' | '`' | '$' | '(' | ')' | '*' | '?' | '\n'
                if !single && !double =>
            {
                return None
            }
            '$' | '`' if double => return None,
            _ => {}
        }
    }
    let words = shell_words::split(cmd).ok()?;
    (!words.is_empty()).then_some(words)
}

impl Child {
    pub fn start(spec: ExecSpec) -> std::io::Result<Child> {
        let mut cmd = match simple_argv(&spec.command) {
            Some(argv) => {
                let mut c = tokio::process::Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            None => {
                let mut c = tokio::process::Command::new("sh");
                c.arg("-c").arg(format!("exec {}", spec.command));
                c
            }
        };
        if !spec.env.is_default() {
            cmd.env_clear().envs(spec.env.vars());
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        tracing::info!(command = %spec.command, pid = child.id().unwrap_or(0), "child started");
        Ok(Child { child, spec })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn signal(&self, sig: Signal) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        }
    }

    /// Wait for the child to exit; its exit code (128+signal when killed).
    pub async fn wait(&mut self) -> i32 {
        match self.child.wait().await {
            Ok(st) => st.code().unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                128 + st.signal().unwrap_or(0)
            }),
            Err(_) => 1,
        }
    }

    /// Kill signal, wait up to the timeout, then SIGKILL.
    pub async fn stop(&mut self) -> i32 {
        self.signal(self.spec.kill_signal);
        match tokio::time::timeout(self.spec.kill_timeout, self.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(
                    "child did not exit within {:?}; sending SIGKILL",
                    self.spec.kill_timeout
                );
                let _ = self.child.start_kill();
            }
        }
        self.wait().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_and_argv() {
        assert_eq!(parse_signal("SIGHUP"), Some(Signal::SIGHUP));
        assert_eq!(parse_signal("hup"), Some(Signal::SIGHUP));
        assert_eq!(parse_signal("15"), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("nope"), None);
        assert_eq!(
            simple_argv("nginx -g 'daemon off;' -c /x"),
            Some(vec![
                "nginx".into(),
                "-g".into(),
                "daemon off;".into(),
                "-c".into(),
                "/x".into()
            ])
        );
        assert_eq!(simple_argv("a; b"), None);
        assert_eq!(simple_argv("echo $HOME"), None);
    }
}
