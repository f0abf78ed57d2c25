//! Go compatibility: what Consul, confd and consul-template users expect
//! because those tools are written in Go, in one place for both binaries.
//!
//! # Layout
//! - [`flags`]: Go `flag`-package command lines for clap (`-flag value`,
//!   Go's usage and error texts).
//! - [`duration`]: Go's `time.ParseDuration` and `Duration.String`.

pub mod duration;
pub mod flags;
