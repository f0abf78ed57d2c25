//! The agent's log: every `tracing` event becomes one line in the shape a
//! Consul user knows (see [`format`](mod@format); JSON with `-log-json`), written to
//! stderr and to `-log-file` ([`file`](mod@file), rotated) at the agent's
//! `-log-level`, which `tribune reload` can change, and fanned out to
//! every `/v1/agent/monitor` watcher at the watcher's own level
//! ([`monitor`]).
//!
//! Libraries log at their own discretion: openraft's warnings are routine
//! (a vote that crossed a newer one, a peer not yet up), so other crates'
//! events show only as errors at info level, from warn at debug, and in
//! full at trace. The events that matter — leader elected, members joining
//! or failing — are logged by tribune itself in Consul's words.
//!
//! Filtering is decided per call site and cached by `tracing`; attaching
//! or detaching a watcher re-evaluates the cache, so an agent with no
//! monitor pays nothing for its debug lines.

pub mod file;
pub mod format;
pub mod level;
pub mod monitor;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

pub use file::{LogFile, LogFileError, Rotation};
pub use level::{admits, parse_level};
use level::{level_of, rank};
pub use monitor::{MonitorBody, Monitors};

/// openraft errors that only say a peer did not answer this time.
const ROUTINE_OPENRAFT: [&str; 5] = [
    "RPCError",
    "while requesting vote",
    "timeout",
    "error replication to target",
    "A message will be ignored",
];

fn routine(target: &str, message: &str) -> bool {
    target.starts_with("openraft") && ROUTINE_OPENRAFT.iter().any(|p| message.starts_with(p))
}

/// The layer writing the log.
struct ConsulLog {
    monitors: Arc<Monitors>,
    /// The agent's level on stderr and in the file, as a rank.
    base: Arc<AtomicUsize>,
    json: bool,
    file: Option<Mutex<FileSink>>,
    /// Most verbose level anyone reads (stderr or a watcher), as a rank.
    widest: Arc<AtomicUsize>,
    server: Arc<AtomicBool>,
}

impl ConsulLog {
    fn wanted(&self, meta: &Metadata<'_>) -> bool {
        let widest = level_of(self.widest.load(Ordering::Relaxed));
        admits(widest, meta.target(), *meta.level())
    }
}

impl<S: Subscriber> Layer<S> for ConsulLog {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.wanted(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        self.wanted(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::from_level(level_of(
            self.widest.load(Ordering::Relaxed),
        )))
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let meta = event.metadata();
        let (level, target) = (*meta.level(), meta.target());
        let base = level_of(self.base.load(Ordering::Relaxed));
        let mut to_stderr = admits(base, target, level);
        if !to_stderr && !self.monitors.wants(target, level) {
            return;
        }
        let record = format::Record::of(event);
        // openraft's per-attempt errors about unreachable peers are for
        // debugging; the network logs one line when a peer stops answering.
        let floor = if routine(target, &record.message) {
            Level::DEBUG
        } else {
            Level::ERROR
        };
        to_stderr &= base >= floor;
        let module = format::module(target, self.server.load(Ordering::Relaxed));
        let line = format::text_line(&level, &module, &record);
        let mut json = None;
        if to_stderr {
            let out = if self.json {
                json.get_or_insert_with(|| format::json_line(&level, &module, &record))
            } else {
                &line
            };
            let _ = std::io::stderr().lock().write_all(out.as_bytes());
            if let Some(f) = &self.file {
                f.lock().write(out.as_bytes());
            }
        }
        self.monitors.publish(target, level, floor, &line, || {
            json.take()
                .unwrap_or_else(|| format::json_line(&level, &module, &record))
        });
    }
}

/// The log file and whether its last write failed (reported once per run
/// of failures on stderr, then again when writes work again).
struct FileSink {
    file: LogFile,
    failing: bool,
}

impl FileSink {
    fn write(&mut self, line: &[u8]) {
        match self.file.write_line(line) {
            Ok(()) if self.failing => {
                self.failing = false;
                let _ = writeln!(std::io::stderr(), "[INFO]  agent: log file writable again");
            }
            Ok(()) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                let _ = writeln!(std::io::stderr(), "[ERROR] agent: {e}");
            }
            Err(_) => {}
        }
    }
}

/// Where and how the agent logs besides stderr.
#[derive(Default)]
pub struct Outputs {
    /// JSON lines (`-log-json`) on stderr and in the file.
    pub json: bool,
    pub file: Option<LogFile>,
}

struct Installed {
    monitors: Arc<Monitors>,
    base: Arc<AtomicUsize>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();
static SERVER: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// The log could not be installed (a second time in one process).
#[derive(Debug, thiserror::Error)]
#[error("installing the log: {0}")]
pub struct LogInitError(String);

/// Install the agent's log at `level`. Once per process.
pub fn init(level: Level, out: Outputs) -> Result<(), LogInitError> {
    let base = Arc::new(AtomicUsize::new(rank(level)));
    let widest = Arc::new(AtomicUsize::new(rank(level)));
    let monitors = Monitors::new(base.clone(), widest.clone());
    let server = SERVER.get_or_init(Arc::default).clone();
    let layer = ConsulLog {
        monitors: monitors.clone(),
        base: base.clone(),
        json: out.json,
        file: out.file.map(|file| {
            Mutex::new(FileSink {
                file,
                failing: false,
            })
        }),
        widest,
        server,
    };
    tracing_subscriber::registry()
        .with(layer)
        .try_init()
        .map_err(|e| LogInitError(e.to_string()))?;
    let _ = INSTALLED.set(Installed { monitors, base });
    Ok(())
}

/// The agent's level now.
pub fn level() -> Option<Level> {
    INSTALLED
        .get()
        .map(|i| level_of(i.base.load(Ordering::Relaxed)))
}

/// Change the agent's level (`log_level` on `tribune reload`).
pub fn set_level(level: Level) {
    if let Some(i) = INSTALLED.get() {
        if i.base.swap(rank(level), Ordering::Relaxed) != rank(level) {
            i.monitors.refresh();
            // Call sites cached as off at the old level are asked again.
            tracing::callsite::rebuild_interest_cache();
        }
    }
}

/// Name the agent's modules as a server's (`agent.server.*`) or a
/// client's (`agent.client.*`).
pub fn set_server(server: bool) {
    SERVER
        .get_or_init(Arc::default)
        .store(server, Ordering::Relaxed);
}

/// The log's watchers, when [`init`] installed the log.
pub fn monitors() -> Option<Arc<Monitors>> {
    INSTALLED.get().map(|i| i.monitors.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_as_consuls() {
        assert_eq!(parse_level("INFO"), Some(Level::INFO));
        assert_eq!(parse_level("err"), Some(Level::ERROR));
        assert_eq!(parse_level("Warning"), Some(Level::WARN));
        assert_eq!(parse_level("loud"), None);
        for l in [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ] {
            assert_eq!(level_of(rank(l)), l);
        }
    }

    /// Libraries' routine lines stay out at info; tribune's pass.
    #[test]
    fn libraries_are_quieter() {
        assert!(admits(Level::INFO, "tribune::agent", Level::INFO));
        assert!(!admits(Level::INFO, "tribune::agent", Level::DEBUG));
        assert!(!admits(Level::INFO, "openraft::core", Level::WARN));
        assert!(admits(Level::INFO, "openraft::core", Level::ERROR));
        assert!(admits(Level::DEBUG, "openraft::core", Level::WARN));
        assert!(!admits(Level::DEBUG, "openraft::core", Level::INFO));
        assert!(admits(Level::TRACE, "openraft::core", Level::TRACE));
    }
}
