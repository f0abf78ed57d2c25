//! A minimal `--name value` flag parser (the bench avoids a CLI dependency).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::{anyhow, bail, Context, Result};

pub struct Args {
    flags: HashMap<String, String>,
}

impl Args {
    /// Parse `--name value` pairs; anything else is an error.
    pub fn parse(argv: impl Iterator<Item = String>) -> Result<Self> {
        let mut flags = HashMap::new();
        let mut argv = argv.peekable();
        while let Some(arg) = argv.next() {
            let Some(name) = arg.strip_prefix("--") else {
                bail!("unexpected argument {arg:?} (flags are --name value)");
            };
            let value = argv
                .next()
                .ok_or_else(|| anyhow!("flag --{name} needs a value"))?;
            if flags.insert(name.to_string(), value).is_some() {
                bail!("flag --{name} given twice");
            }
        }
        Ok(Self { flags })
    }

    /// Take an optional flag, with a default.
    pub fn get<T>(&mut self, name: &str, default: T) -> Result<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.flags.remove(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| anyhow!("--{name} {v:?}: {e}")),
        }
    }

    /// Take a mandatory flag.
    pub fn required<T>(&mut self, name: &str) -> Result<T>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        let v = self
            .flags
            .remove(name)
            .ok_or_else(|| anyhow!("missing --{name}"))?;
        v.parse().map_err(|e| anyhow!("--{name} {v:?}: {e}"))
    }

    /// The server address; refuses anything but loopback.
    pub fn addr(&mut self) -> Result<SocketAddr> {
        let addr: SocketAddr = self.required("addr").context("--addr 127.0.0.1:PORT")?;
        if !addr.ip().is_loopback() {
            bail!("--addr {addr}: only loopback targets are allowed");
        }
        Ok(addr)
    }

    /// Fail on flags nobody asked for (typos).
    pub fn finish(self) -> Result<()> {
        if let Some(name) = self.flags.keys().next() {
            bail!("unknown flag --{name}");
        }
        Ok(())
    }
}
