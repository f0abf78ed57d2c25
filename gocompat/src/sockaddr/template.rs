//! go-sockaddr's template language: Go `text/template` actions over this
//! host's interface addresses, e.g. `{{ GetPrivateIP }}` or
//! `{{ GetAllInterfaces | include "name" "^eth" | attr "address" }}`.
//!
//! The subset Consul users write: text and `{{ }}` actions (with `{{-`/`-}}`
//! trimming and `/* */` comments), pipelines of function calls with string
//! (`"..."`, `` `...` ``) and integer arguments, parentheses, and `.` (all
//! interfaces). Functions: GetAllInterfaces GetDefaultInterfaces
//! GetPrivateInterfaces GetPublicInterfaces GetPrivateIP(s) GetPublicIP(s)
//! GetInterfaceIP(s) include exclude sort limit offset unique attr join.

use std::cmp::Ordering;

use regex::Regex;

use super::ifaddr::{self, IfAddr};

/// What a template runs against.
pub struct Env {
    pub addrs: Vec<IfAddr>,
    /// The interface with the default route, if any.
    pub default_if: Option<String>,
}

#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Int(i64),
    Addrs(Vec<IfAddr>),
}

#[derive(Clone, Debug)]
enum Operand {
    Dot,
    Str(String),
    Int(i64),
    Ident(String),
    Paren(Vec<Vec<Operand>>),
}

/// A pipeline: commands, each a list of operands.
type Pipeline = Vec<Vec<Operand>>;

enum Part {
    Text(String),
    Action(Pipeline),
}

const FUNCTIONS: [&str; 18] = [
    "GetAllInterfaces",
    "GetDefaultInterfaces",
    "GetPrivateInterfaces",
    "GetPublicInterfaces",
    "GetPrivateIP",
    "GetPrivateIPs",
    "GetPublicIP",
    "GetPublicIPs",
    "GetInterfaceIP",
    "GetInterfaceIPs",
    "include",
    "exclude",
    "sort",
    "limit",
    "offset",
    "unique",
    "attr",
    "join",
];

/// Why a template did not expand: Consul's texts.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("unable to parse template {input:?}: template: sockaddr.Parse:1: {msg}")]
    Parse { input: String, msg: String },
    #[error("unable to execute sockaddr input {input:?}: template: sockaddr.Parse:1: {msg}")]
    Execute { input: String, msg: String },
    #[error(
        "unable to execute sockaddr input {input:?}: the result is a list \
         of interfaces: pick an attribute with attr or join"
    )]
    List { input: String },
}

/// Expand `input` against `env`: Consul's `template.Parse`, with its
/// error texts.
pub fn render(input: &str, env: &Env) -> Result<String, RenderError> {
    let parts = parse(input).map_err(|msg| RenderError::Parse {
        input: input.into(),
        msg,
    })?;
    let mut out = String::new();
    for p in parts {
        match p {
            Part::Text(t) => out.push_str(&t),
            Part::Action(pipe) => {
                let v = eval_pipeline(&pipe, env).map_err(|msg| RenderError::Execute {
                    input: input.into(),
                    msg,
                })?;
                match v {
                    Val::Str(s) => out.push_str(&s),
                    Val::Int(n) => out.push_str(&n.to_string()),
                    Val::Addrs(_) => {
                        return Err(RenderError::List {
                            input: input.into(),
                        })
                    }
                }
            }
        }
    }
    Ok(out)
}

fn parse(input: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = input;
    while let Some(open) = rest.find("{{") {
        let mut text = rest[..open].to_string();
        let mut inner = &rest[open + 2..];
        if let Some(t) = inner
            .strip_prefix("- ")
            .or_else(|| inner.strip_prefix("-\t"))
        {
            text.truncate(text.trim_end().len());
            inner = t;
        }
        let close = inner.find("}}").ok_or("unclosed action")?;
        let mut body = &inner[..close];
        rest = &inner[close + 2..];
        if let Some(b) = body.strip_suffix(" -").or_else(|| body.strip_suffix("\t-")) {
            body = b;
            rest = rest.trim_start();
        }
        parts.push(Part::Text(text));
        let trimmed = body.trim();
        if trimmed.starts_with("/*") && trimmed.ends_with("*/") {
            continue;
        }
        let tokens = tokenize(body)?;
        let mut pos = 0;
        let pipe = pipeline(&tokens, &mut pos)?;
        if pos != tokens.len() {
            return Err(format!("unexpected {:?} in operand", tokens[pos]));
        }
        if pipe.is_empty() || pipe.iter().any(|c| c.is_empty()) {
            return Err("missing value for command".into());
        }
        parts.push(Part::Action(pipe));
    }
    parts.push(Part::Text(rest.to_string()));
    Ok(parts)
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Pipe,
    Open,
    Close,
    Dot,
    Str(String),
    Int(i64),
    Ident(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                chars.next();
            }
            '|' | '(' | ')' | '.' => {
                chars.next();
                out.push(match c {
                    '|' => Tok::Pipe,
                    '(' => Tok::Open,
                    ')' => Tok::Close,
                    _ => Tok::Dot,
                });
            }
            '"' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next().ok_or("unterminated quoted string")? {
                        '"' => break,
                        '\\' => match chars.next().ok_or("unterminated quoted string")? {
                            'n' => v.push('\n'),
                            't' => v.push('\t'),
                            other => v.push(other),
                        },
                        other => v.push(other),
                    }
                }
                out.push(Tok::Str(v));
            }
            '`' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next().ok_or("unterminated raw quoted string")? {
                        '`' => break,
                        other => v.push(other),
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' => {
                let mut v = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_ascii_digit() || (v.is_empty() && (d == '-' || d == '+')) {
                        v.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                let n = v.parse().map_err(|_| format!("bad number syntax: {v:?}"))?;
                out.push(Tok::Int(n));
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut v = String::new();
                while let Some(&d) = chars.peek() {
                    if d.is_alphanumeric() || d == '_' {
                        v.push(d);
                        chars.next();
                    } else {
                        break;
                    }
                }
                out.push(Tok::Ident(v));
            }
            other => return Err(format!("unexpected {other:?} in command")),
        }
    }
    Ok(out)
}

fn pipeline(toks: &[Tok], pos: &mut usize) -> Result<Pipeline, String> {
    let mut cmds = vec![Vec::new()];
    while let Some(t) = toks.get(*pos) {
        let op = match t {
            Tok::Close => break,
            Tok::Pipe => {
                *pos += 1;
                cmds.push(Vec::new());
                continue;
            }
            Tok::Open => {
                *pos += 1;
                let inner = pipeline(toks, pos)?;
                if toks.get(*pos) != Some(&Tok::Close) {
                    return Err("unclosed left paren".into());
                }
                Operand::Paren(inner)
            }
            Tok::Dot => Operand::Dot,
            Tok::Str(s) => Operand::Str(s.clone()),
            Tok::Int(n) => Operand::Int(*n),
            Tok::Ident(name) => {
                if !FUNCTIONS.contains(&name.as_str()) {
                    return Err(format!("function {name:?} not defined"));
                }
                Operand::Ident(name.clone())
            }
        };
        *pos += 1;
        if let Some(last) = cmds.last_mut() {
            last.push(op);
        }
    }
    Ok(cmds)
}

fn eval_pipeline(pipe: &Pipeline, env: &Env) -> Result<Val, String> {
    let mut piped: Option<Val> = None;
    for cmd in pipe {
        piped = Some(eval_command(cmd, piped.take(), env)?);
    }
    piped.ok_or_else(|| "empty pipeline".to_string())
}

fn eval_command(cmd: &[Operand], piped: Option<Val>, env: &Env) -> Result<Val, String> {
    let value = |op: &Operand| -> Result<Val, String> {
        Ok(match op {
            Operand::Dot => Val::Addrs(env.addrs.clone()),
            Operand::Str(s) => Val::Str(s.clone()),
            Operand::Int(n) => Val::Int(*n),
            Operand::Paren(p) => eval_pipeline(p, env)?,
            Operand::Ident(f) => call(f, Vec::new(), env)?,
        })
    };
    match cmd {
        [Operand::Ident(f), args @ ..] => {
            let mut vals = args.iter().map(value).collect::<Result<Vec<_>, _>>()?;
            vals.extend(piped);
            call(f, vals, env)
        }
        [one] if piped.is_none() => value(one),
        _ => Err("can't give argument to non-function".into()),
    }
}

fn str_arg(args: &[Val], i: usize, f: &str) -> Result<String, String> {
    match args.get(i) {
        Some(Val::Str(s)) => Ok(s.clone()),
        Some(Val::Int(n)) => Ok(n.to_string()),
        _ => Err(format!(
            "error calling {f}: argument {} must be a string",
            i + 1
        )),
    }
}

fn int_arg(args: &[Val], i: usize, f: &str) -> Result<i64, String> {
    match args.get(i) {
        Some(Val::Int(n)) => Ok(*n),
        Some(Val::Str(s)) => s
            .parse()
            .map_err(|_| format!("error calling {f}: {s:?} is not a number")),
        _ => Err(format!(
            "error calling {f}: argument {} must be a number",
            i + 1
        )),
    }
}

fn addrs_arg(args: &[Val], i: usize, f: &str) -> Result<Vec<IfAddr>, String> {
    match args.get(i) {
        Some(Val::Addrs(a)) => Ok(a.clone()),
        _ => Err(format!(
            "error calling {f}: expected a list of interfaces as argument {}",
            i + 1
        )),
    }
}

fn want_args(args: &[Val], n: usize, f: &str) -> Result<(), String> {
    if args.len() == n {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args for {f}: want {n} got {}",
            args.len()
        ))
    }
}

fn regex(re: &str) -> Result<Regex, String> {
    Regex::new(re).map_err(|e| format!("unable to compile regexp {re:?}: {e}"))
}

fn addresses(v: &[IfAddr]) -> String {
    v.iter()
        .map(|a| a.ip.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn first_address(v: &[IfAddr]) -> Val {
    Val::Str(v.first().map(|a| a.ip.to_string()).unwrap_or_default())
}

fn up_forwardable(v: &[IfAddr]) -> Vec<IfAddr> {
    v.iter()
        .filter(|a| a.has_flag("up") && ifaddr::forwardable(&a.ip))
        .cloned()
        .collect()
}

/// Private or public interfaces: up, forwardable, default-route
/// interface first, IPv4 first, larger networks first.
fn classed(env: &Env, private: bool) -> Result<Vec<IfAddr>, String> {
    let v = sort_by(&up_forwardable(&env.addrs), "default,type,size", env)?;
    Ok(v.into_iter()
        .filter(|a| ifaddr::is_rfc6890(&a.ip) == private)
        .collect())
}

fn call(f: &str, args: Vec<Val>, env: &Env) -> Result<Val, String> {
    match f {
        "GetAllInterfaces"
        | "GetDefaultInterfaces"
        | "GetPrivateInterfaces"
        | "GetPublicInterfaces"
        | "GetPrivateIP"
        | "GetPublicIP"
        | "GetPrivateIPs"
        | "GetPublicIPs" => {
            want_args(&args, 0, f)?;
            sources(f, env)
        }
        "GetInterfaceIP" | "GetInterfaceIPs" => {
            want_args(&args, 1, f)?;
            let re = regex(&str_arg(&args, 0, f)?)?;
            let named: Vec<IfAddr> = env
                .addrs
                .iter()
                .filter(|a| re.is_match(&a.name))
                .cloned()
                .collect();
            if f == "GetInterfaceIP" {
                let fwd: Vec<IfAddr> = named
                    .into_iter()
                    .filter(|a| ifaddr::forwardable(&a.ip))
                    .collect();
                Ok(first_address(&sort_by(&fwd, "+type,+size", env)?))
            } else {
                Ok(Val::Str(addresses(&sort_by(&named, "+type,+size", env)?)))
            }
        }
        "include" | "exclude" => {
            want_args(&args, 3, f)?;
            let (sel, param) = (str_arg(&args, 0, f)?, str_arg(&args, 1, f)?);
            let mut out = Vec::new();
            for a in addrs_arg(&args, 2, f)? {
                if selects(&a, &sel, &param, f)? == (f == "include") {
                    out.push(a);
                }
            }
            Ok(Val::Addrs(out))
        }
        "sort" => {
            want_args(&args, 2, f)?;
            let keys = str_arg(&args, 0, f)?;
            Ok(Val::Addrs(sort_by(&addrs_arg(&args, 1, f)?, &keys, env)?))
        }
        _ => helpers(f, args),
    }
}

fn sources(f: &str, env: &Env) -> Result<Val, String> {
    Ok(match f {
        "GetAllInterfaces" => Val::Addrs(env.addrs.clone()),
        "GetDefaultInterfaces" => {
            let d = env
                .default_if
                .as_deref()
                .ok_or("error calling GetDefaultInterfaces: no default interface found")?;
            Val::Addrs(env.addrs.iter().filter(|a| a.name == d).cloned().collect())
        }
        "GetPrivateInterfaces" => Val::Addrs(classed(env, true)?),
        "GetPublicInterfaces" => Val::Addrs(classed(env, false)?),
        "GetPrivateIP" => first_address(&classed(env, true)?),
        "GetPublicIP" => first_address(&classed(env, false)?),
        _ => {
            let private = f == "GetPrivateIPs";
            let v = sort_by(&env.addrs, "type,size", env)?;
            let v: Vec<IfAddr> = v
                .into_iter()
                .filter(|a| {
                    ifaddr::is_rfc6890(&a.ip) == private && (!private || ifaddr::forwardable(&a.ip))
                })
                .collect();
            Val::Str(addresses(&v))
        }
    })
}

fn helpers(f: &str, args: Vec<Val>) -> Result<Val, String> {
    let attr_of = |a: &IfAddr, name: &str| {
        a.attr(name)
            .ok_or_else(|| format!("error calling {f}: unsupported attribute name {name:?}"))
    };
    match f {
        "attr" => {
            want_args(&args, 2, f)?;
            let name = str_arg(&args, 0, f)?;
            match addrs_arg(&args, 1, f)?.first() {
                Some(a) => Ok(Val::Str(attr_of(a, &name)?)),
                None => Ok(Val::Str(String::new())),
            }
        }
        "join" => {
            want_args(&args, 3, f)?;
            let (name, sep) = (str_arg(&args, 0, f)?, str_arg(&args, 1, f)?);
            let parts = addrs_arg(&args, 2, f)?
                .iter()
                .map(|a| attr_of(a, &name))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Val::Str(parts.join(&sep)))
        }
        "limit" => {
            want_args(&args, 2, f)?;
            let n = usize::try_from(int_arg(&args, 0, f)?).map_err(|_| "limit must be >= 0")?;
            Ok(Val::Addrs(
                addrs_arg(&args, 1, f)?.into_iter().take(n).collect(),
            ))
        }
        "offset" => {
            want_args(&args, 2, f)?;
            let off = int_arg(&args, 0, f)?;
            let v = addrs_arg(&args, 1, f)?;
            let n = off.unsigned_abs() as usize;
            if n > v.len() {
                return Err(format!(
                    "error calling offset: unable to seek past the end of the interface array: \
                     offset ({off}) exceeds the number of interfaces ({})",
                    v.len()
                ));
            }
            let start = if off < 0 { v.len() - n } else { n };
            Ok(Val::Addrs(v[start..].to_vec()))
        }
        "unique" => {
            want_args(&args, 2, f)?;
            let name = str_arg(&args, 0, f)?.to_ascii_lowercase();
            if name != "address" && name != "name" {
                return Err(format!(
                    "error calling unique: unsupported unique constraint {name:?}"
                ));
            }
            let mut out: Vec<IfAddr> = Vec::new();
            for a in addrs_arg(&args, 1, f)? {
                let key = |x: &IfAddr| x.attr(&name);
                if out.last().map(key) != Some(key(&a)) {
                    out.push(a);
                }
            }
            Ok(Val::Addrs(out))
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

/// Whether `a` matches `include`/`exclude`'s selector and parameter.
fn selects(a: &IfAddr, sel: &str, param: &str, f: &str) -> Result<bool, String> {
    let any = |check: &dyn Fn(&str) -> Result<bool, String>| -> Result<bool, String> {
        for p in param.split('|') {
            if check(p)? {
                return Ok(true);
            }
        }
        Ok(false)
    };
    match sel.to_ascii_lowercase().as_str() {
        "address" => Ok(regex(param)?.is_match(&a.sockaddr_string())),
        "name" => Ok(regex(param)?.is_match(&a.name)),
        "port" => Ok(regex(param)?.is_match("0")),
        "flag" | "flags" => flag_match(a, param),
        "network" => any(&|p| {
            let (net, bits) = match p.split_once('/') {
                Some((n, b)) => (n, b.parse::<u8>().map_err(|_| bad_net(p))?),
                None => (p, if p.contains(':') { 128 } else { 32 }),
            };
            let net: std::net::IpAddr = net.parse().map_err(|_| bad_net(p))?;
            let probe = IfAddr {
                prefix: bits,
                ..a.clone()
            };
            Ok(net.is_ipv4() == a.ip.is_ipv4() && probe.network() == net && a.prefix >= bits)
        }),
        "rfc" | "rfcs" => any(&|p| {
            let n: u32 = p
                .parse()
                .map_err(|_| format!("unable to parse RFC number {p:?}"))?;
            ifaddr::rfc_blocks(n).ok_or_else(|| format!("unsupported RFC {n}"))?;
            Ok(ifaddr::in_rfc(n, &a.ip))
        }),
        "size" => {
            let n: u8 = param
                .parse()
                .map_err(|_| format!("invalid {f} size argument ({param:?})"))?;
            Ok(a.prefix == n)
        }
        "type" => any(&|p| match p.to_ascii_lowercase().as_str() {
            "ip" => Ok(true),
            "ipv4" => Ok(a.ip.is_ipv4()),
            "ipv6" => Ok(a.ip.is_ipv6()),
            "unix" => Ok(false),
            _ => Err(format!("unsupported type {p:?} {param:?}")),
        }),
        other => Err(format!("invalid {f} selector {other:?}")),
    }
}

fn bad_net(p: &str) -> String {
    format!("unable to create an IP address from {p:?}")
}

/// go-sockaddr's `IfByFlag`: every named interface flag set, or any named
/// address property (forwardable, loopback, ...) true.
fn flag_match(a: &IfAddr, param: &str) -> Result<bool, String> {
    let mut want_flags: Vec<&str> = Vec::new();
    let mut by_attr = false;
    let mut check_flags = false;
    for f in param.to_ascii_lowercase().split('|') {
        let ip = &a.ip;
        match f {
            "up" | "broadcast" | "point-to-point" => {
                check_flags = true;
                want_flags.push(if f == "point-to-point" {
                    "pointtopoint"
                } else {
                    ifaddr::FLAG_NAMES
                        .iter()
                        .find(|x| **x == f)
                        .copied()
                        .unwrap_or("up")
                });
            }
            "down" => check_flags = true,
            "loopback" => {
                check_flags = true;
                want_flags.push("loopback");
                by_attr |= ip.is_loopback();
            }
            "multicast" => {
                check_flags = true;
                want_flags.push("multicast");
                by_attr |= ip.is_multicast();
            }
            "forwardable" => by_attr |= ifaddr::forwardable(ip),
            "global unicast" => {
                by_attr |= !ip.is_loopback()
                    && !ip.is_multicast()
                    && !ip.is_unspecified()
                    && !ifaddr::in_rfc(3927, ip)
                    && !matches!(ip, std::net::IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80)
            }
            "link-local unicast" => {
                by_attr |= ifaddr::in_rfc(3927, ip)
                    || matches!(ip, std::net::IpAddr::V6(v) if (v.segments()[0] & 0xffc0) == 0xfe80)
            }
            "unspecified" => by_attr |= ip.is_unspecified(),
            "interface-local multicast" | "link-local multicast" => {}
            other => return Err(format!("unknown interface flag: {other:?}")),
        }
    }
    let flags_ok = check_flags && want_flags.iter().all(|f| a.has_flag(f));
    Ok(flags_ok || by_attr)
}

fn sort_by(v: &[IfAddr], keys: &str, env: &Env) -> Result<Vec<IfAddr>, String> {
    type Cmp<'a> = Box<dyn Fn(&IfAddr, &IfAddr) -> Ordering + 'a>;
    let mut cmps: Vec<Cmp> = Vec::new();
    for clause in keys.split(',') {
        let c = clause.trim().to_ascii_lowercase();
        let (desc, key) = match c.strip_prefix('-') {
            Some(k) => (true, k.to_string()),
            None => (false, c.trim_start_matches('+').to_string()),
        };
        let same_family = |a: &IfAddr, b: &IfAddr| a.ip.is_ipv4() == b.ip.is_ipv4();
        let asc: Cmp = match key.as_str() {
            "address" => Box::new(move |a, b| {
                if same_family(a, b) {
                    a.ip.cmp(&b.ip)
                } else {
                    Ordering::Equal
                }
            }),
            "default" => {
                let d = env.default_if.clone();
                Box::new(move |a, b| {
                    let is = |x: &IfAddr| Some(&x.name) == d.as_ref();
                    is(b).cmp(&is(a))
                })
            }
            "name" => Box::new(|a, b| a.name.cmp(&b.name)),
            "port" => Box::new(|_, _| Ordering::Equal),
            "private" => Box::new(|a, b| ifaddr::is_rfc6890(&b.ip).cmp(&ifaddr::is_rfc6890(&a.ip))),
            "size" => Box::new(move |a, b| {
                if same_family(a, b) {
                    a.prefix.cmp(&b.prefix)
                } else {
                    Ordering::Equal
                }
            }),
            "type" => Box::new(|a, b| a.ip.is_ipv6().cmp(&b.ip.is_ipv6())),
            _ => return Err(format!("error calling sort: unknown sort type: {clause:?}")),
        };
        cmps.push(if desc {
            Box::new(move |a, b| asc(a, b).reverse())
        } else {
            asc
        });
    }
    let mut out = v.to_vec();
    out.sort_by(|a, b| {
        cmps.iter()
            .map(|c| c(a, b))
            .find(|o| *o != Ordering::Equal)
            .unwrap_or(Ordering::Equal)
    });
    Ok(out)
}
