//! Go compatibility: what Consul, confd and consul-template users expect
//! because those tools are written in Go, in one place for both binaries.
//!
//! # Layout
//! - [`flags`]: Go `flag`-package command lines for clap (`-flag value`,
//!   Go's usage and error texts).
//! - [`duration`]: Go's `time.ParseDuration` and `Duration.String`.
//! - [`log`]: the `-log-level` names Go tools accept; colour on terminals.
//! - [`process`]: signalling the process group of a command we started.
//! - [`sockaddr`]: go-sockaddr — this host's interface addresses and its
//!   template language (the agent's `-bind`/`-client`/`-advertise`,
//!   tribune-template's `sockaddr` function).

pub mod duration;
pub mod flags;
pub mod log;
pub mod process;
pub mod sockaddr;
