//! Log levels: Consul's names for them, their order, and which events a
//! reader at a level sees (see [`super`]'s comment on other crates).

use tracing::Level;

/// `trace`, `debug`, `info`, `warn`, `err` (any case; also `warning`,
/// `error`), as Consul's `-log-level` and `/v1/agent/monitor?loglevel=`.
pub fn parse_level(s: &str) -> Option<Level> {
    gocompat::log::level_name(s).and_then(|n| n.parse().ok())
}

/// Levels as numbers, most verbose highest (for an atomic maximum).
pub(crate) fn rank(l: Level) -> usize {
    match l {
        Level::ERROR => 0,
        Level::WARN => 1,
        Level::INFO => 2,
        Level::DEBUG => 3,
        Level::TRACE => 4,
    }
}

pub(crate) fn level_of(rank: usize) -> Level {
    [
        Level::ERROR,
        Level::WARN,
        Level::INFO,
        Level::DEBUG,
        Level::TRACE,
    ][rank.min(4)]
}

/// Whether a reader asking for `want` sees an event of `level` from
/// `target`: tribune's own at `want`, other crates' only a step or two
/// above (see the `logging` module comment).
pub fn admits(want: Level, target: &str, level: Level) -> bool {
    let ours = target.starts_with("tribune") || target.starts_with("agent");
    let cap = if ours {
        want
    } else {
        match want {
            Level::TRACE => Level::TRACE,
            Level::DEBUG => Level::WARN,
            _ => Level::ERROR,
        }
    };
    level <= cap
}
