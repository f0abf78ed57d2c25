//! What the bench reads about other processes: resident memory and CPU time.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// `VmRSS` of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS line in {path}"))
}

/// RSS once it stops moving: two readings 250 ms apart within 64 KiB, at most 5 s.
pub async fn settled_rss(pid: u32) -> Result<u64> {
    let mut last = rss_kib(pid)?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = rss_kib(pid)?;
        if now.abs_diff(last) <= 64 {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// Clock ticks per second of `/proc/PID/stat` (`USER_HZ`, 100 on Linux).
pub const TICKS_PER_S: u64 = 100;

/// `utime + stime` of `pid` from `/proc/PID/stat`, in clock ticks (all threads,
/// including those that exited; not its children).
pub fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("{path}: no ')'"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| -> Result<u64> {
        f.get(n - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("{path}: field {n} missing or not a number"))
    };
    Ok(field(14)? + field(15)?)
}

#[repr(C)]
struct Timespec {
    tv_sec: i64,
    tv_nsec: i64,
}

extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
}

/// CPU time of the whole process `pid` (all threads, including exited ones), in
/// nanoseconds: its process CPU-time clock (`clock_getcpuclockid`), which Linux lets
/// any process read. Precise where `/proc/PID/stat` counts 10 ms ticks.
#[cfg(all(target_os = "linux", target_pointer_width = "64"))]
pub fn cpu_ns(pid: u32) -> Result<u64> {
    // MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED) from the kernel's posix-timers.h.
    let pid = i32::try_from(pid).context("pid out of range")?;
    let clock = ((!pid) << 3) | 2;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (64-bit layout on this target).
    if unsafe { clock_gettime(clock, &mut ts) } != 0 {
        bail!(
            "CPU clock of pid {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

/// CPU usage of one process: both counters at once.
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    pub ticks: u64,
    pub ns: u64,
}

impl Cpu {
    pub fn read(pid: u32) -> Result<Self> {
        Ok(Self {
            ns: cpu_ns(pid)?,
            ticks: cpu_ticks(pid)?,
        })
    }

    /// (ticks as µs, ns as µs) spent since `earlier`.
    pub fn since(&self, earlier: &Cpu) -> (u64, u64) {
        (
            self.ticks.saturating_sub(earlier.ticks) * 1_000_000 / TICKS_PER_S,
            self.ns.saturating_sub(earlier.ns) / 1000,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu() {
        let me = std::process::id();
        let a = Cpu::read(me).unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let b = Cpu::read(me).unwrap();
        assert!(b.ns > a.ns);
        assert!(b.ticks >= a.ticks);
        assert!(rss_kib(me).unwrap() > 0);
    }
}
