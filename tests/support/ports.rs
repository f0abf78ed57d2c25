//! Free ports for agents whose ports other processes must know up front.
//!
//! A port from `bind(":0")` lies in the kernel's ephemeral range, which the
//! outgoing connections of every running agent also draw from: between the
//! test freeing it and the agent binding it, a connection can take it (CI saw
//! "Address already in use" on a server RPC port this way). Ports handed out
//! here come from below that range, are checked free for TCP and UDP, and are
//! never handed out twice by one test process.

use std::collections::HashSet;
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Below Linux's default ephemeral range (32768-60999).
const LOW: u32 = 20_000;
const HIGH: u32 = 32_700;

static NEXT: AtomicU32 = AtomicU32::new(0);
static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Record `ports` as handed out; false if one already was.
fn take(ports: &[u16]) -> bool {
    let mut g = GIVEN.lock().unwrap();
    let set = g.get_or_insert_with(HashSet::new);
    if ports.iter().any(|p| set.contains(p)) {
        return false;
    }
    set.extend(ports);
    true
}

fn free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok() && UdpSocket::bind(("127.0.0.1", port)).is_ok()
}

/// Next candidate: a walk over [LOW, HIGH) starting at a per-process offset,
/// so test binaries run one after another do not start on the same port.
fn candidate() -> u16 {
    let span = HIGH - LOW;
    let start = (std::process::id().wrapping_mul(7919)) % span;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    (LOW + (start + n) % span) as u16
}

/// One free port (TCP and UDP on 127.0.0.1).
pub fn free_port() -> u16 {
    for _ in 0..(HIGH - LOW) {
        let p = candidate();
        if free(p) && take(&[p]) {
            return p;
        }
    }
    panic!("no free port in {LOW}..{HIGH}");
}

/// `n` distinct free ports.
pub fn free_ports(n: usize) -> Vec<u16> {
    (0..n).map(|_| free_port()).collect()
}

/// A port `p` with `p + 1` free too (for a listener and its fallback).
pub fn free_pair() -> u16 {
    for _ in 0..(HIGH - LOW) {
        let p = candidate();
        if p + 1 < HIGH as u16 && free(p) && free(p + 1) && take(&[p, p + 1]) {
            return p;
        }
    }
    panic!("no free port pair in {LOW}..{HIGH}");
}
