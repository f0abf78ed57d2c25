//! Log conventions of Consul and consul-template: the `-log-level` names
//! they accept, and colour only on a terminal.

use std::io::IsTerminal;

/// The canonical name (`trace`, `debug`, `info`, `warn`, `error`) of a
/// Go tool's `-log-level`: any case, and also `warning` and `err`.
pub fn level_name(s: &str) -> Option<&'static str> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Some("trace"),
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warn" | "warning" => Some("warn"),
        "err" | "error" => Some("error"),
        _ => None,
    }
}

/// Whether stderr is a terminal (log colours are for people, not files).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_names() {
        assert_eq!(level_name("INFO"), Some("info"));
        assert_eq!(level_name(" warning "), Some("warn"));
        assert_eq!(level_name("err"), Some("error"));
        assert_eq!(level_name("Trace"), Some("trace"));
        assert_eq!(level_name("verbose"), None);
        assert_eq!(level_name(""), None);
    }
}
