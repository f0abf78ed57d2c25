//! Process groups, as Go programs use them for the commands they run
//! (Consul's `lock` child, `exec` jobs, consul-template's commands): the
//! child leads a group of its own (`Command::process_group(0)`), so a signal
//! to the group reaches whatever it started too (`sh -c` and its children).

use nix::sys::signal::killpg;
pub use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Send `sig` to the process group led by `pid`. A group that is gone
/// already, or a pid that is no group leader, is not an error worth
/// reporting to the caller: the processes it meant to stop are gone.
pub fn signal_group(pid: u32, sig: Signal) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    // pid 0 or 1 would mean "our own group" or init's: never meant here.
    if pid <= 1 {
        return;
    }
    let _ = killpg(Pid::from_raw(pid), sig);
}

/// SIGKILL the process group led by `pid`.
pub fn kill_group(pid: u32) {
    signal_group(pid, Signal::SIGKILL);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    #[test]
    fn kills_the_whole_group() {
        // The shell's own child (sleep) is in the group too.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        kill_group(child.id());
        let status = child.wait().expect("wait");
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    }

    #[test]
    fn ignores_pids_that_are_not_ours_to_signal() {
        signal_group(0, Signal::SIGTERM);
        signal_group(1, Signal::SIGTERM);
        signal_group(u32::MAX, Signal::SIGTERM);
    }
}
