//! Help texts in the two shapes a Go CLI prints them:
//! - [`command_help`]: Consul's `-h` text (`command/flags/usage.go`):
//!   `Usage:` line, description, then the flags grouped under their headings
//!   as `-name=<value>` with the description wrapped below;
//! - [`go_defaults`]: what Go's `flag` package prints after a flag error
//!   (`FlagSet.PrintDefaults`): `Usage:` and one `-name type` entry per flag.

use std::any::TypeId;
use std::fmt::Write as _;

use clap::{Arg, Command};

/// Width of Consul's help text (its `maxLineLength`).
const WIDTH: usize = 72;
/// Heading of flags that declare none.
pub const COMMAND_OPTIONS: &str = "Command Options";

/// The flags a command shows in its help: named, not hidden.
pub(crate) fn flags(cmd: &Command) -> Vec<&Arg> {
    cmd.get_arguments()
        .filter(|a| a.get_long().is_some() && !a.is_hide_set())
        .collect()
}

/// The flag `-name` of a command, hidden or not.
pub(crate) fn find_flag<'a>(cmd: &'a Command, name: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|a| a.get_long() == Some(name))
}

pub(crate) fn takes_value(a: &Arg) -> bool {
    a.get_action().takes_values()
}

/// The word naming a flag's value: a lowercase `value_name` as given (Go's
/// back-quoted word in the usage text), else the Go type name of its parser.
fn value_word(a: &Arg) -> Option<String> {
    if !takes_value(a) {
        return None;
    }
    if let Some(n) = a.get_value_names().and_then(|v| v.first()) {
        let n = n.as_str();
        if !n.chars().any(|c| c.is_ascii_uppercase()) {
            return Some(n.to_string());
        }
    }
    let t = a.get_value_parser().type_id();
    let is = |id: TypeId| t == id;
    let word = if [
        TypeId::of::<i64>(),
        TypeId::of::<i32>(),
        TypeId::of::<i16>(),
    ]
    .into_iter()
    .any(is)
    {
        "int"
    } else if [
        TypeId::of::<u64>(),
        TypeId::of::<u32>(),
        TypeId::of::<u16>(),
        TypeId::of::<usize>(),
    ]
    .into_iter()
    .any(is)
    {
        "uint"
    } else if is(TypeId::of::<f64>()) {
        "float"
    } else {
        "string"
    };
    Some(word.to_string())
}

/// A flag's description, a sentence as Go's usage strings are (clap drops
/// the final period of one-line doc comments).
fn help_text(a: &Arg) -> String {
    let mut t = a
        .get_long_help()
        .or_else(|| a.get_help())
        .map(|s| s.to_string())
        .unwrap_or_default();
    if t.ends_with(|c: char| c.is_alphanumeric() || c == ')' || c == '`') {
        t.push('.');
    }
    t
}

/// A command's description without its first line (the synopsis, shown
/// in the command list).
fn description(cmd: &Command) -> String {
    let about = cmd.get_about().map(|s| s.to_string()).unwrap_or_default();
    match cmd.get_long_about().map(|s| s.to_string()) {
        Some(long) => {
            let body = long.strip_prefix(about.as_str()).unwrap_or(&long).trim();
            if body.is_empty() {
                about
            } else {
                body.to_string()
            }
        }
        None => about,
    }
}

/// Greedy word wrap at `width` columns; blank lines separate paragraphs,
/// which stay apart.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    if text.trim().is_empty() {
        return lines;
    }
    for para in text.split("\n\n") {
        if !lines.is_empty() {
            lines.push(String::new());
        }
        let mut line = String::new();
        for word in para.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > width {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
}

/// `Usage: tribune kv put [options] KEY [DATA]`, from the command's
/// `override_usage` when it has one.
fn usage_line(cmd: &Command, path: &[String]) -> String {
    if let Some(u) = cmd.get_overridden_usage() {
        return format!("Usage: {u}");
    }
    let mut s = format!("Usage: {}", path.join(" "));
    if cmd.has_subcommands() {
        s.push_str(" <subcommand> [options] [args]");
        return s;
    }
    if !flags(cmd).is_empty() {
        s.push_str(" [options]");
    }
    for p in cmd.get_positionals().filter(|a| !a.is_hide_set()) {
        let name = p
            .get_value_names()
            .and_then(|v| v.first())
            .map(|n| n.to_uppercase())
            .unwrap_or_else(|| p.get_id().as_str().to_uppercase());
        let many = p.get_num_args().is_some_and(|n| n.max_values() > 1);
        let name = if many { format!("{name}...") } else { name };
        if p.is_required_set() {
            let _ = write!(s, " {name}");
        } else {
            let _ = write!(s, " [{name}]");
        }
    }
    s
}

/// Consul's help text for `cmd`, whose words from the binary on are `path`.
pub fn command_help(cmd: &Command, path: &[String]) -> String {
    let mut out = usage_line(cmd, path);
    out.push_str("\n\n");
    for line in wrap(&description(cmd), WIDTH - 2) {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "  {line}");
        }
    }
    if cmd.has_subcommands() {
        out.push_str("\nSubcommands:\n");
        let mut subs: Vec<&Command> = cmd.get_subcommands().filter(|c| !c.is_hide_set()).collect();
        subs.sort_by_key(|c| c.get_name());
        let w = subs.iter().map(|c| c.get_name().len()).max().unwrap_or(0);
        for c in subs {
            let about = c.get_about().map(|s| s.to_string()).unwrap_or_default();
            let _ = writeln!(out, "    {:<w$}    {}", c.get_name(), about.trim());
        }
        return out.trim_end().to_string();
    }
    let mut headings: Vec<&str> = Vec::new();
    for a in flags(cmd) {
        let h = a.get_help_heading().unwrap_or(COMMAND_OPTIONS);
        if !headings.contains(&h) {
            headings.push(h);
        }
    }
    // Consul lists the shared HTTP API flags before the command's own.
    headings.sort_by_key(|h| *h == COMMAND_OPTIONS);
    for h in headings {
        out.truncate(out.trim_end().len());
        let _ = write!(out, "\n\n{h}\n\n");
        let mut list: Vec<&Arg> = flags(cmd)
            .into_iter()
            .filter(|a| a.get_help_heading().unwrap_or(COMMAND_OPTIONS) == h)
            .collect();
        list.sort_by_key(|a| a.get_long());
        for a in list {
            let name = a.get_long().unwrap_or_default();
            match value_word(a) {
                Some(v) => {
                    let _ = writeln!(out, "  -{name}=<{v}>");
                }
                None => {
                    let _ = writeln!(out, "  -{name}");
                }
            }
            for line in wrap(&help_text(a), WIDTH - 5) {
                let _ = writeln!(out, "     {line}");
            }
            out.push('\n');
        }
    }
    out.trim_end().to_string()
}

/// Go's `FlagSet.PrintDefaults` after its `Usage:` line (flags by name;
/// ` (default ...)` for non-zero defaults, strings quoted).
pub fn go_defaults(cmd: &Command) -> String {
    let mut out = String::from("Usage:\n");
    let mut list = flags(cmd);
    list.sort_by_key(|a| a.get_long());
    for a in list {
        let name = a.get_long().unwrap_or_default();
        let mut entry = format!("  -{name}");
        if let Some(v) = value_word(a) {
            let _ = write!(entry, " {v}");
        }
        // One-letter boolean flags keep their text on the same line.
        if entry.len() <= 4 {
            entry.push('\t');
        } else {
            entry.push_str("\n    \t");
        }
        // Go takes the back-quoted word as the value's name and unquotes it.
        entry.push_str(&help_text(a).replace('`', "").replace('\n', "\n    \t"));
        if let Some(d) = a.get_default_values().first() {
            let d = d.to_string_lossy();
            let zero = d.is_empty() || d == "0" || d == "false";
            if !zero {
                if value_word(a).as_deref() == Some("string") {
                    let _ = write!(entry, " (default {d:?})");
                } else {
                    let _ = write!(entry, " (default {d})");
                }
            }
        }
        out.push_str(&entry);
        out.push('\n');
    }
    out
}

/// The top-level help (mitchellh/cli's): usage and the command list.
pub fn top_help(cmd: &Command) -> String {
    let bin = cmd.get_name();
    let mut out = format!("Usage: {bin} [--version] [--help] <command> [<args>]\n\n");
    out.push_str("Available commands are:\n");
    let subs: Vec<&Command> = cmd.get_subcommands().filter(|c| !c.is_hide_set()).collect();
    let w = subs.iter().map(|c| c.get_name().len()).max().unwrap_or(0);
    let mut names: Vec<&Command> = subs;
    names.sort_by_key(|c| c.get_name());
    for c in names {
        let about = c.get_about().map(|s| s.to_string()).unwrap_or_default();
        let _ = writeln!(out, "    {:<w$}    {}", c.get_name(), about.trim());
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_width() {
        assert_eq!(wrap("aa bb cc", 5), ["aa bb", "cc"]);
        assert_eq!(wrap("", 5), Vec::<String>::new());
        assert_eq!(wrap("one\ntwo", 40), ["one two"]);
        assert_eq!(wrap("one\n\ntwo", 40), ["one", "", "two"]);
    }
}
