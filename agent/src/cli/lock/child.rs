//! Supervising the child: started in a process group of its own with
//! `CONSUL_LOCK_HELD=true`; stopped with SIGTERM to the group, SIGKILL
//! after a grace period, when the lock is lost or we are told to stop.

use std::time::Duration;

use gocompat::process::{signal_group, Signal};

/// Between SIGTERM and SIGKILL of a child whose lock was lost.
const KILL_GRACE: Duration = Duration::from_secs(5);

pub(super) fn start(argv: &[String], pass_stdin: bool) -> std::io::Result<tokio::process::Child> {
    use std::process::Stdio;
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty command"))?;
    tokio::process::Command::new(prog)
        .args(args)
        .env("CONSUL_LOCK_HELD", "true")
        .stdin(if pass_stdin {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .process_group(0)
        .spawn()
}

/// SIGTERM the child's group, SIGKILL after the grace period.
pub(super) async fn kill(child: &mut tokio::process::Child, verbose: bool) {
    let Some(pid) = child.id() else {
        return;
    };
    if verbose {
        println!("Terminating child pid {pid}");
    }
    // The child leads its own process group, so its children get it too.
    signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(KILL_GRACE, child.wait()).await.is_ok() {
        if verbose {
            println!("Child terminated");
        }
        return;
    }
    if verbose {
        println!(
            "Child did not exit after grace period of {KILL_GRACE:?}; killing child pid {pid}"
        );
    }
    signal_group(pid, Signal::SIGKILL);
    let _ = child.wait().await;
}
