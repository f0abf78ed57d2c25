//! String functions: paths, case, splitting and joining, trimming,
//! replacing, regular expressions, hashes, indentation.

use serde_json::{json, Value};

use super::{arg, int, list, s_arg, text, Engines, Flavor, Helper, R};
use crate::helpers::both;
use crate::render::Ctx;

pub const HELPERS: &[Helper] = &[
    both("base", base),
    both("dir", dir),
    both("split", split),
    both("join", join),
    both("toUpper", to_upper),
    both("toLower", to_lower),
    both("toTitle", to_title),
    both("trimSpace", trim_space),
    both("trimSuffix", trim_suffix),
    both("trimPrefix", trim_prefix),
    both("contains", contains),
    both("replace", replace),
    both("replaceAll", replace_all),
    both("regexMatch", regex_match),
    both("regexReplaceAll", regex_replace_all),
    both("sha256Hex", sha256_hex),
    both("md5sum", md5sum),
    both("indent", indent),
    Helper {
        name: "printf",
        f: printf,
        engines: Engines::Handlebars,
    },
    Helper {
        name: "concat",
        f: concat,
        engines: Engines::Handlebars,
    },
];

/// Go's `path.Base`.
fn base(_: &Ctx, args: &[Value]) -> R {
    let p = s_arg(args, 0, "path")?;
    if p.is_empty() {
        return Ok(json!("."));
    }
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        return Ok(json!("/"));
    }
    Ok(json!(t.rsplit('/').next().unwrap_or("")))
}

/// Go's `path.Dir`: everything before the last `/`, cleaned (repeated
/// slashes folded, a trailing one dropped; "" is ".").
fn dir(_: &Ctx, args: &[Value]) -> R {
    let p = s_arg(args, 0, "path")?;
    let d = match p.rfind('/') {
        Some(i) => &p[..=i],
        None => "",
    };
    let abs = d.starts_with('/');
    let parts: Vec<&str> = d
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .collect();
    Ok(json!(match (abs, parts.is_empty()) {
        (true, _) => format!("/{}", parts.join("/")),
        (false, true) => ".".to_string(),
        (false, false) => parts.join("/"),
    }))
}

/// confd `split s sep` (Go's strings.Split); consul-template
/// `split sep s` (trimmed, "" gives no elements).
fn split(ctx: &Ctx, args: &[Value]) -> R {
    let (s, sep, ct) = if ctx.flavor() == Flavor::ConsulTemplate {
        (
            s_arg(args, 1, "string")?,
            s_arg(args, 0, "separator")?,
            true,
        )
    } else {
        (
            s_arg(args, 0, "string")?,
            s_arg(args, 1, "separator")?,
            false,
        )
    };
    let s = if ct { s.trim().to_string() } else { s };
    // Go's strings.Split("", sep) is [""]; consul-template's and our
    // Handlebars helper give no elements.
    if s.is_empty() && (ct || !ctx.is_go()) {
        return Ok(json!([]));
    }
    if sep.is_empty() {
        return Ok(json!(s.chars().map(String::from).collect::<Vec<_>>()));
    }
    Ok(json!(s.split(sep.as_str()).collect::<Vec<_>>()))
}

/// confd `join list sep`, consul-template `join sep list`.
fn join(ctx: &Ctx, args: &[Value]) -> R {
    let a = arg(args, 0, "list")?;
    let b = arg(args, 1, "separator")?;
    let (l, sep) = match (a, b) {
        (Value::Array(_), _) => (a, text(b)),
        (_, Value::Array(_)) => (b, text(a)),
        _ if ctx.flavor() == Flavor::ConsulTemplate => (b, text(a)),
        _ => (a, text(b)),
    };
    Ok(json!(list(l)
        .iter()
        .map(text)
        .collect::<Vec<_>>()
        .join(&sep)))
}

fn to_upper(_: &Ctx, args: &[Value]) -> R {
    Ok(json!(s_arg(args, 0, "string")?.to_uppercase()))
}

fn to_lower(_: &Ctx, args: &[Value]) -> R {
    Ok(json!(s_arg(args, 0, "string")?.to_lowercase()))
}

/// Upper-case the first letter of every word, leaving the rest as it is.
fn to_title(_: &Ctx, args: &[Value]) -> R {
    let s = s_arg(args, 0, "string")?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start && c.is_alphanumeric() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !(c.is_alphanumeric() || c == '\'');
    }
    Ok(json!(out))
}

fn trim_space(_: &Ctx, args: &[Value]) -> R {
    Ok(json!(s_arg(args, 0, "string")?.trim()))
}

/// (string, affix) in confd order, or consul-template's (affix, string).
fn affix_args(ctx: &Ctx, args: &[Value]) -> Result<(String, String), String> {
    if ctx.flavor() == Flavor::ConsulTemplate {
        Ok((s_arg(args, 1, "string")?, s_arg(args, 0, "affix")?))
    } else {
        Ok((s_arg(args, 0, "string")?, s_arg(args, 1, "affix")?))
    }
}

fn trim_suffix(ctx: &Ctx, args: &[Value]) -> R {
    let (s, x) = affix_args(ctx, args)?;
    Ok(json!(s.strip_suffix(x.as_str()).unwrap_or(&s)))
}

fn trim_prefix(ctx: &Ctx, args: &[Value]) -> R {
    let (s, x) = affix_args(ctx, args)?;
    Ok(json!(s.strip_prefix(x.as_str()).unwrap_or(&s)))
}

/// Membership of `needle` in a list, or substring of a string.
pub fn within(hay: &Value, needle: &Value) -> bool {
    match hay {
        Value::Array(a) => a.iter().any(|x| x == needle || text(x) == text(needle)),
        Value::Null => false,
        other => text(other).contains(&text(needle)),
    }
}

/// confd `contains s substr`; consul-template `contains value list`
/// (usually piped: `.Tags | contains "prod"`).
fn contains(ctx: &Ctx, args: &[Value]) -> R {
    let a = arg(args, 0, "string or list")?;
    let b = arg(args, 1, "value")?;
    Ok(Value::Bool(match (a, b) {
        (Value::Array(_), _) => within(a, b),
        (_, Value::Array(_)) => within(b, a),
        _ if ctx.flavor() == Flavor::ConsulTemplate => within(b, a),
        _ => within(a, b),
    }))
}

/// confd `replace s old new [n]` (Go's strings.Replace; n < 0 or absent: all).
fn replace(_: &Ctx, args: &[Value]) -> R {
    let s = s_arg(args, 0, "string")?;
    let old = s_arg(args, 1, "old")?;
    let new = s_arg(args, 2, "new")?;
    match args.get(3).map(int).transpose()? {
        Some(n) if n >= 0 => Ok(json!(s.replacen(old.as_str(), &new, n as usize))),
        _ => Ok(json!(s.replace(old.as_str(), &new))),
    }
}

/// consul-template `replaceAll old new s`.
fn replace_all(_: &Ctx, args: &[Value]) -> R {
    let old = s_arg(args, 0, "old")?;
    let new = s_arg(args, 1, "new")?;
    let s = s_arg(args, 2, "string")?;
    Ok(json!(s.replace(old.as_str(), &new)))
}

/// A compiled pattern; patterns are bounded so a template cannot build a
/// huge automaton.
fn regex(p: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

fn regex_match(_: &Ctx, args: &[Value]) -> R {
    let re = regex(&s_arg(args, 0, "pattern")?)?;
    Ok(json!(re.is_match(&s_arg(args, 1, "string")?)))
}

fn regex_replace_all(_: &Ctx, args: &[Value]) -> R {
    let re = regex(&s_arg(args, 0, "pattern")?)?;
    let rep = s_arg(args, 1, "replacement")?;
    Ok(json!(
        re.replace_all(&s_arg(args, 2, "string")?, rep.as_str())
    ))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(_: &Ctx, args: &[Value]) -> R {
    use sha2::Digest;
    Ok(json!(hex(&sha2::Sha256::digest(
        s_arg(args, 0, "string")?.as_bytes()
    ))))
}

fn md5sum(_: &Ctx, args: &[Value]) -> R {
    use md5::Digest;
    Ok(json!(hex(&md5::Md5::digest(
        s_arg(args, 0, "string")?.as_bytes()
    ))))
}

/// consul-template `indent n s`: prefix every non-empty line start.
fn indent(_: &Ctx, args: &[Value]) -> R {
    let n = int(arg(args, 0, "spaces")?)?;
    if !(0..=1024).contains(&n) {
        return Err("indent value must be a positive integer (at most 1024)".into());
    }
    let s = s_arg(args, 1, "string")?;
    let pad = " ".repeat(n as usize);
    let mut out = String::with_capacity(s.len() + pad.len());
    let mut at_start = true;
    for c in s.chars() {
        if at_start && c != '\n' {
            out.push_str(&pad);
        }
        out.push(c);
        at_start = c == '\n';
    }
    Ok(json!(out))
}

/// The Handlebars `printf` (Go templates use Go's own): `%s %v %d %f %q %%`.
fn printf(_: &Ctx, args: &[Value]) -> R {
    let fmt = s_arg(args, 0, "format")?;
    let mut out = String::new();
    let mut rest = args[1..].iter();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('s' | 'v' | 'd' | 'f') => out.push_str(&rest.next().map(text).unwrap_or_default()),
            Some('q') => out.push_str(&format!("{:?}", rest.next().map(text).unwrap_or_default())),
            Some(o) => return Err(format!("unsupported verb %{o} (use %s, %d, %v, %f, %q)")),
            None => out.push('%'),
        }
    }
    Ok(json!(out))
}

fn concat(_: &Ctx, args: &[Value]) -> R {
    Ok(json!(args.iter().map(text).collect::<String>()))
}
