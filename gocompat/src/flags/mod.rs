//! Go `flag`-package style command lines for clap.
//!
//! Consul, confd and consul-template take `-flag`, `--flag`, `-flag=value`
//! and `-flag value`, and stop parsing flags at the first positional
//! argument. [`go_style`] rewrites such arguments into clap's GNU style,
//! using the clap command definition to know which flags take values.
//!
//! [`parse`] goes further, for a command tree shaped like Consul's CLI
//! (mitchellh/cli plus one Go `FlagSet` per command): it answers `-h` with
//! Consul's help text, reports flag errors as Go does
//! (`flag provided but not defined: -wan` and the usage, exit 1), and
//! leaves only well-formed arguments to clap.

mod help;
mod parse;

pub use help::{command_help, go_defaults, top_help, COMMAND_OPTIONS};
pub use parse::{parse, Exit, Parsed};

use std::ffi::OsString;

/// Rewrite Go-style arguments into clap's GNU style.
pub fn go_style(cmd: &clap::Command, args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len() + 1);
    let mut it = args.into_iter();
    if let Some(bin) = it.next() {
        out.push(bin);
    }
    let mut cur = cmd.clone();
    let mut rest: Vec<OsString> = it.collect();
    rest.reverse();
    while let Some(arg) = rest.pop() {
        let Some(s) = arg.to_str().map(str::to_string) else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            out.push(arg);
            out.extend(rest.into_iter().rev());
            return out;
        }
        let is_flag =
            s.len() > 1 && s.starts_with('-') && !s[1..].starts_with(|c: char| c.is_ascii_digit());
        if is_flag {
            let body = s.trim_start_matches('-');
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            if name.len() == 1 && s.starts_with("--") {
                // `--x` is not a Go flag either; let clap report it.
                out.push(arg);
                continue;
            }
            let def = cur
                .get_arguments()
                .find(|a| a.get_long() == Some(name.as_str()));
            let takes_value = def.map(|a| a.get_action().takes_values()).unwrap_or(false);
            match (takes_value, inline) {
                (true, Some(v)) => out.push(format!("--{name}={v}").into()),
                (true, None) => match rest.pop() {
                    Some(v) => {
                        let mut f = OsString::from(format!("--{name}="));
                        f.push(v);
                        out.push(f);
                    }
                    None => out.push(format!("--{name}").into()),
                },
                // Go accepts -flag=true / -flag=false for booleans.
                (false, Some(v)) if def.is_some() => match v.as_str() {
                    "true" | "1" | "t" | "T" | "TRUE" | "True" => {
                        out.push(format!("--{name}").into())
                    }
                    "false" | "0" | "f" | "F" | "FALSE" | "False" => {
                        // A flag that defaults to true is turned off through
                        // its `no-<name>` twin, when the command defines one.
                        let neg = format!("no-{name}");
                        if cur
                            .get_arguments()
                            .any(|a| a.get_long() == Some(neg.as_str()))
                        {
                            out.push(format!("--{neg}").into());
                        }
                    }
                    _ => out.push(format!("--{name}={v}").into()),
                },
                (false, inline) => {
                    let f = match (name.len(), inline) {
                        (1, None) => format!("-{name}"),
                        (_, None) => format!("--{name}"),
                        (_, Some(v)) => format!("--{name}={v}"),
                    };
                    out.push(f.into());
                }
            }
            continue;
        }
        if let Some(sub) = cur.find_subcommand(&s) {
            cur = sub.clone();
            out.push(arg);
            continue;
        }
        // First positional: Go stops parsing flags here.
        out.push("--".into());
        out.push(arg);
        out.extend(rest.into_iter().rev());
        return out;
    }
    out
}
