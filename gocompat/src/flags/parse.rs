//! [`parse`]: Go `flag` semantics over a clap command tree, with the
//! messages and exit codes of Consul's CLI (mitchellh/cli around one Go
//! `FlagSet` per command, `flag.ContinueOnError`, commands returning 1).

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgMatches, Command};

use super::help::{command_help, find_flag, go_defaults, takes_value, top_help};

/// What to do after looking at the command line.
#[derive(Debug)]
pub enum Parsed {
    /// Well-formed: run the command.
    Matches(ArgMatches),
    /// `-v`, `-version` or `--version` before any command: print the version.
    Version,
    /// Help was asked for, or the line is wrong: print and exit.
    Exit(Exit),
}

/// Text to print and the process exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub text: String,
    pub stderr: bool,
    pub code: u8,
}

impl Exit {
    /// Print the text (a closed pipe is not an error worth a panic).
    pub fn print(&self) {
        use std::io::Write;
        let text = self.text.trim_end_matches('\n');
        let _ = if self.stderr {
            writeln!(std::io::stderr(), "{text}")
        } else {
            writeln!(std::io::stdout(), "{text}")
        };
    }

    fn help(text: String, code: u8) -> Self {
        Self {
            text,
            stderr: false,
            code,
        }
    }

    /// A flag error: the message, then Go's usage, on stderr; exit 1.
    fn flag(msg: String, cmd: &Command) -> Self {
        Self {
            text: format!("{msg}\n{}", go_defaults(cmd)),
            stderr: true,
            code: 1,
        }
    }
}

/// Go has no built-in help command; these three print the command's help.
fn is_help(s: &str) -> bool {
    matches!(s, "-h" | "-help" | "--help")
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// clap's own help and version flags give way to Go's; a flag given twice
/// keeps its last value, as in Go.
fn prepare(cmd: Command) -> Command {
    cmd.disable_help_flag(true)
        .disable_version_flag(true)
        .disable_help_subcommand(true)
        .args_override_self(true)
        .mut_subcommands(prepare)
}

/// Parse `args` (the binary's name first) against `cmd`.
pub fn parse(cmd: &Command, args: Vec<OsString>) -> Parsed {
    let root = prepare(cmd.clone());
    let (argv, path) = match rewrite(&root, args) {
        Ok(x) => x,
        Err(p) => return p,
    };
    match root.clone().try_get_matches_from(argv) {
        Ok(m) => Parsed::Matches(m),
        Err(e) => {
            let mut cur = &root;
            for name in &path[1..] {
                cur = cur.find_subcommand(name).unwrap_or(cur);
            }
            Parsed::Exit(from_clap(cur, e))
        }
    }
}

/// The help of a command (the top-level list for the root).
fn help_of(cur: &Command, path: &[String]) -> String {
    if path.len() == 1 {
        top_help(cur)
    } else {
        command_help(cur, path)
    }
}

type Rewritten = (Vec<OsString>, Vec<String>);

/// Walk down to the command named and rewrite its flags for clap; the
/// arguments for clap and the words naming the command.
fn rewrite(root: &Command, args: Vec<OsString>) -> Result<Rewritten, Parsed> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut rest: Vec<OsString> = args;
    rest.reverse();
    if let Some(bin) = rest.pop() {
        out.push(bin);
    }
    let mut cur = root;
    let mut path = vec![root.get_name().to_string()];
    while let Some(arg) = rest.pop() {
        let s = arg.to_string_lossy().into_owned();
        if cur.has_subcommands() {
            if path.len() == 1 && matches!(s.as_str(), "-v" | "-version" | "--version") {
                return Err(Parsed::Version);
            }
            if is_help(&s) {
                return Err(Parsed::Exit(Exit::help(help_of(cur, &path), 0)));
            }
            if let Some(sub) = cur.find_subcommand(&s) {
                cur = sub;
                path.push(sub.get_name().to_string());
                out.push(arg);
                continue;
            }
            // An unknown command: mitchellh/cli shows the help (127 at
            // the top, where no command matched at all).
            let code = if path.len() == 1 { 127 } else { 1 };
            return Err(Parsed::Exit(Exit::help(help_of(cur, &path), code)));
        }
        if s == "--" {
            out.push(arg);
            break;
        }
        if s == "-" || !s.starts_with('-') {
            // The first positional: Go stops parsing flags here.
            out.push("--".into());
            out.push(arg);
            break;
        }
        if is_help(&s) {
            return Err(Parsed::Exit(Exit::help(command_help(cur, &path), 0)));
        }
        flag(cur, &s, &mut rest, &mut out).map_err(Parsed::Exit)?;
    }
    if cur.has_subcommands() {
        let code = if path.len() == 1 { 127 } else { 1 };
        return Err(Parsed::Exit(Exit::help(help_of(cur, &path), code)));
    }
    out.extend(rest.into_iter().rev());
    Ok((out, path))
}

/// One Go flag (`-name`, `--name`, `-name=value`, `-name value`) as clap's
/// `--name=value`, or Go's error for it.
fn flag(
    cur: &Command,
    s: &str,
    rest: &mut Vec<OsString>,
    out: &mut Vec<OsString>,
) -> Result<(), Exit> {
    let body = s.strip_prefix("--").unwrap_or(&s[1..]);
    if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
        return Err(Exit::flag(format!("bad flag syntax: {s}"), cur));
    }
    let (name, inline) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    };
    let Some(def) = find_flag(cur, name) else {
        return Err(Exit::flag(
            format!("flag provided but not defined: -{name}"),
            cur,
        ));
    };
    if takes_value(def) {
        let mut v = OsString::from(format!("--{name}="));
        match inline {
            Some(i) => v.push(i),
            None => match rest.pop() {
                Some(next) => v.push(next),
                None => return Err(Exit::flag(format!("flag needs an argument: -{name}"), cur)),
            },
        }
        out.push(v);
        return Ok(());
    }
    let on = match inline {
        None => true,
        Some(v) => parse_bool(v).ok_or_else(|| {
            Exit::flag(
                format!("invalid boolean value {v:?} for -{name}: parse error"),
                cur,
            )
        })?,
    };
    if on {
        out.push(format!("--{name}").into());
    } else {
        // A flag that defaults to true is turned off through its
        // `no-<name>` twin, when the command defines one.
        let neg = format!("no-{name}");
        if find_flag(cur, &neg).is_some() {
            out.push(format!("--{neg}").into());
        }
    }
    Ok(())
}

fn context_string(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        ContextValue::StyledStr(s) => Some(s.to_string()),
        ContextValue::StyledStrs(v) => v.first().map(|s| s.to_string()),
        _ => None,
    }
}

/// The flag name inside clap's `--name <NAME>` / `--name=<NAME>` rendering.
fn flag_name(rendered: &str) -> String {
    rendered
        .trim_start_matches('-')
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A clap error on arguments that passed [`rewrite`], in Go's words.
fn from_clap(cur: &Command, e: clap::Error) -> Exit {
    match e.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = context_string(&e, ContextKind::InvalidArg).unwrap_or_default();
            let value = context_string(&e, ContextKind::InvalidValue).unwrap_or_default();
            if arg.starts_with('-') {
                return Exit::flag(
                    format!(
                        "invalid value {value:?} for flag -{}: parse error",
                        flag_name(&arg)
                    ),
                    cur,
                );
            }
            Exit::flag(format!("invalid argument {value:?}"), cur)
        }
        _ => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            let msg = first.strip_prefix("error: ").unwrap_or(first);
            Exit::flag(msg.replace("--", "-"), cur)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn cli() -> Command {
        let leaf = Command::new("members")
            .about("Lists members")
            .arg(
                Arg::new("detailed")
                    .long("detailed")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("status").long("status").default_value(".*"))
            .arg(
                Arg::new("n")
                    .long("n")
                    .value_parser(clap::value_parser!(i64)),
            )
            .arg(Arg::new("shell").long("shell").action(ArgAction::SetTrue))
            .arg(
                Arg::new("no-shell")
                    .long("no-shell")
                    .hide(true)
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("rest").num_args(0..));
        Command::new("tool").subcommand(leaf).subcommand(
            Command::new("kv")
                .about("KV")
                .subcommand(Command::new("get").arg(Arg::new("key"))),
        )
    }

    fn run(args: &[&str]) -> Parsed {
        parse(&cli(), args.iter().map(OsString::from).collect())
    }

    fn exit(args: &[&str]) -> Exit {
        match run(args) {
            Parsed::Exit(e) => e,
            other => panic!("{args:?}: expected an exit, got {other:?}"),
        }
    }

    #[test]
    fn go_forms_parse() {
        let Parsed::Matches(m) = run(&[
            "tool",
            "members",
            "-detailed",
            "--status=al",
            "-n",
            "-2",
            "-shell=false",
            "a",
            "-b",
        ]) else {
            panic!("no matches")
        };
        let (_, m) = m.subcommand().unwrap();
        assert!(m.get_flag("detailed"));
        assert!(m.get_flag("no-shell") && !m.get_flag("shell"));
        assert_eq!(m.get_one::<String>("status").unwrap(), "al");
        assert_eq!(*m.get_one::<i64>("n").unwrap(), -2);
        let rest: Vec<&String> = m.get_many::<String>("rest").unwrap().collect();
        assert_eq!(rest, ["a", "-b"], "flags stop at the first argument");
        // A flag given twice keeps the last value, as in Go.
        let Parsed::Matches(m) = run(&["tool", "members", "-status", "x", "-status=y"]) else {
            panic!()
        };
        let (_, m) = m.subcommand().unwrap();
        assert_eq!(m.get_one::<String>("status").unwrap(), "y");
    }

    #[test]
    fn errors_and_help_are_gos() {
        let e = exit(&["tool", "members", "-wan"]);
        assert!(e.stderr && e.code == 1);
        assert!(e
            .text
            .starts_with("flag provided but not defined: -wan\nUsage:\n  -detailed\n"));
        assert!(e.text.contains("  -status string\n    \t"), "{}", e.text);
        assert!(e.text.contains(" (default \".*\")"), "{}", e.text);
        let e = exit(&["tool", "members", "-n"]);
        assert!(e.text.starts_with("flag needs an argument: -n\n"));
        let e = exit(&["tool", "members", "-n", "x"]);
        assert!(
            e.text
                .starts_with("invalid value \"x\" for flag -n: parse error\n"),
            "{}",
            e.text
        );
        let e = exit(&["tool", "members", "-detailed=2"]);
        assert!(e
            .text
            .starts_with("invalid boolean value \"2\" for -detailed: parse error\n"));
        let e = exit(&["tool", "members", "-h"]);
        assert!(!e.stderr && e.code == 0);
        assert!(e
            .text
            .starts_with("Usage: tool members [options] [REST...]\n\n  Lists members\n"));
        assert!(e.text.contains("\n  -n=<int>\n\n  -shell\n"), "{}", e.text);
        assert!(!e.text.contains("no-shell"), "hidden flags stay hidden");
        let e = exit(&["tool"]);
        assert_eq!(e.code, 127);
        assert!(e.text.contains("\n    kv         KV\n"), "{}", e.text);
        assert_eq!(exit(&["tool", "nope"]).code, 127);
        let e = exit(&["tool", "kv"]);
        assert!(
            e.code == 1 && e.text.contains("Subcommands:\n    get"),
            "{}",
            e.text
        );
        assert!(matches!(run(&["tool", "--version"]), Parsed::Version));
        assert!(matches!(run(&["tool", "-v"]), Parsed::Version));
    }
}
