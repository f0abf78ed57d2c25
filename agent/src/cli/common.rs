//! What the commands share: the HTTP options (defined beside the client),
//! failing with a message (and the usage), output tables, and the runtime
//! of the long-running ones.

use std::process::ExitCode;
use std::sync::OnceLock;

use clap::Args;
use reqwest::Method;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::client::Api;
pub use super::client::HttpOpts;

#[derive(Args, Debug)]
pub struct SimpleArgs {
    #[command(flatten)]
    pub http: HttpOpts,
}

/// Print `msg` on stderr; exit 1.
pub(crate) fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("{msg}");
    ExitCode::from(1)
}

/// The whole command tree, for usage texts; set by [`super::main`] (the
/// commands are defined above this module, which every command uses).
static ROOT: OnceLock<fn() -> clap::Command> = OnceLock::new();

pub(crate) fn set_root_command(f: fn() -> clap::Command) {
    let _ = ROOT.set(f);
}

pub(crate) fn root_command() -> clap::Command {
    ROOT.get()
        .map_or_else(|| clap::Command::new("tribune"), |f| f())
}

/// The help text of the command at `path` (`["exec"]`), as Go prints it.
pub(crate) fn command_help(path: &[&str]) -> String {
    let mut cmd = root_command();
    for p in path {
        cmd = cmd.find_subcommand(p).cloned().unwrap_or(cmd);
    }
    let words: Vec<String> = std::iter::once("tribune")
        .chain(path.iter().copied())
        .map(String::from)
        .collect();
    gocompat::flags::command_help(&cmd, &words)
}

/// A usage error: the message, a blank line and the command's help.
pub(crate) fn usage_error(msg: &str, path: &[&str]) -> ExitCode {
    fail(format!("{msg}\n\n{}", command_help(path)))
}

pub(crate) fn get_json(api: &Api, path: &str) -> Result<Value, String> {
    match api.call(Method::GET, path, &[], None) {
        Ok(Some(b)) => serde_json::from_slice(&b).map_err(|e| e.to_string()),
        Ok(None) => Err("not found".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Print rows as space-padded columns.
pub(crate) fn table(rows: Vec<Vec<String>>) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(String::len)
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// Log lines of the watch loop (retries) go to stderr.
fn init_cli_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}

/// The long-running CLI commands (watch, lock): their logging, and a
/// single-threaded runtime for their blocking-query loops.
pub(crate) fn cli_runtime() -> Result<tokio::runtime::Runtime, String> {
    init_cli_tracing();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("Error starting runtime: {e}"))
}

/// Cancelled on SIGINT or SIGTERM.
pub(crate) fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        t.cancel();
    });
    token
}
