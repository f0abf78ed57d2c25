//! Data functions: JSON/YAML/TOML in and out, parsing, base64, lists and
//! maps (`map reverse sortByLength sortKVByLength seq loop in contains*
//! explode explodeMap byKey`), and math in confd's order (`add sub mul div
//! mod`) and consul-template's piped order (`add subtract multiply divide
//! modulo minimum maximum`: `{{ 5 | subtract 2 }}` is 3).

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::{json, Map, Value};

use super::goenc;
use super::text::within;
use super::{arg, both, float, int, list, num, s_arg, text, Helper, R};
use crate::render::Ctx;

pub const HELPERS: &[Helper] = &[
    both("json", json_object),
    both("jsonArray", json_array),
    both("parseJSON", parse_json),
    both("parseYAML", parse_yaml),
    both("toJSON", to_json),
    both("toJSONPretty", to_json_pretty),
    both("toYAML", to_yaml),
    both("toTOML", to_toml),
    both("parseBool", parse_bool),
    both("parseInt", parse_int),
    both("atoi", parse_int),
    both("parseUint", parse_uint),
    both("parseFloat", parse_float),
    both("base64Encode", base64_encode),
    both("base64Decode", base64_decode),
    both("base64URLEncode", base64_url_encode),
    both("base64URLDecode", base64_url_decode),
    both("map", map),
    both("reverse", reverse),
    both("sortByLength", sort_by_length),
    both("sortKVByLength", sort_kv_by_length),
    both("seq", seq),
    both("loop", loop_),
    both("in", in_),
    both("containsAll", contains_all),
    both("containsAny", contains_any),
    both("containsNone", contains_none),
    both("containsNotAll", contains_not_all),
    both("explode", explode),
    both("explodeMap", explode_map),
    both("byKey", by_key),
    both("add", add),
    both("sub", sub),
    both("mul", mul),
    both("div", div),
    both("mod", modulo_confd),
    both("subtract", subtract),
    both("multiply", mul),
    both("divide", divide),
    both("modulo", modulo),
    both("minimum", minimum),
    both("maximum", maximum),
];

/// Longest list `seq`/`loop` build.
const MAX_SEQ: i64 = 100_000;

fn parse_any(what: &str, s: &str) -> Result<Value, String> {
    serde_json::from_str(s).map_err(|e| format!("invalid {what}: {e}"))
}

fn json_object(_: &Ctx, args: &[Value]) -> R {
    match parse_any("JSON", &s_arg(args, 0, "JSON text")?)? {
        v @ Value::Object(_) => Ok(v),
        _ => Err("expected a JSON object".into()),
    }
}

fn json_array(_: &Ctx, args: &[Value]) -> R {
    match parse_any("JSON", &s_arg(args, 0, "JSON text")?)? {
        v @ Value::Array(_) => Ok(v),
        _ => Err("expected a JSON array".into()),
    }
}

/// consul-template `parseJSON`: any JSON; "" is an empty map.
fn parse_json(_: &Ctx, args: &[Value]) -> R {
    let s = s_arg(args, 0, "JSON text")?;
    if s.is_empty() {
        return Ok(json!({}));
    }
    parse_any("JSON", &s)
}

fn parse_yaml(_: &Ctx, args: &[Value]) -> R {
    let s = s_arg(args, 0, "YAML text")?;
    if s.is_empty() {
        return Ok(json!({}));
    }
    serde_yaml::from_str(&s).map_err(|e| format!("invalid YAML: {e}"))
}

/// Go's encoding/json escapes `<`, `>`, `&`, U+2028 and U+2029 in strings;
/// outside strings JSON has none of them.
pub(super) fn go_json_escape(s: String) -> String {
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

fn to_json(_: &Ctx, args: &[Value]) -> R {
    Ok(json!(goenc::to_json(arg(args, 0, "value")?, false)))
}

fn to_json_pretty(_: &Ctx, args: &[Value]) -> R {
    Ok(json!(goenc::to_json(arg(args, 0, "value")?, true)))
}

fn to_yaml(_: &Ctx, args: &[Value]) -> R {
    Ok(json!(goenc::to_yaml(arg(args, 0, "value")?)?))
}

fn to_toml(_: &Ctx, args: &[Value]) -> R {
    Ok(json!(goenc::to_toml(arg(args, 0, "value")?)?))
}

/// Go's strconv.ParseBool; "" is false (consul-template).
fn parse_bool(_: &Ctx, args: &[Value]) -> R {
    match s_arg(args, 0, "string")?.as_str() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(json!(true)),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(json!(false)),
        other => Err(format!("{other:?} is not a boolean")),
    }
}

fn parse_int(_: &Ctx, args: &[Value]) -> R {
    let v = arg(args, 0, "string")?;
    if text(v).is_empty() {
        return Ok(json!(0));
    }
    Ok(json!(int(v)?))
}

fn parse_uint(_: &Ctx, args: &[Value]) -> R {
    let s = s_arg(args, 0, "string")?;
    if s.is_empty() {
        return Ok(json!(0));
    }
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an unsigned integer"))?;
    Ok(json!(n))
}

fn parse_float(_: &Ctx, args: &[Value]) -> R {
    let v = arg(args, 0, "string")?;
    if text(v).is_empty() {
        return Ok(json!(0.0));
    }
    Ok(json!(float(v)?))
}

fn b64_decode(engine: &impl Engine, s: &str) -> R {
    let d = engine
        .decode(s.trim())
        .map_err(|e| format!("invalid base64: {e}"))?;
    Ok(json!(String::from_utf8_lossy(&d)))
}

fn base64_encode(_: &Ctx, args: &[Value]) -> R {
    let s = s_arg(args, 0, "string")?;
    Ok(json!(base64::engine::general_purpose::STANDARD.encode(s)))
}

fn base64_decode(_: &Ctx, args: &[Value]) -> R {
    b64_decode(
        &base64::engine::general_purpose::STANDARD,
        &s_arg(args, 0, "string")?,
    )
}

fn base64_url_encode(_: &Ctx, args: &[Value]) -> R {
    let s = s_arg(args, 0, "string")?;
    Ok(json!(base64::engine::general_purpose::URL_SAFE.encode(s)))
}

fn base64_url_decode(_: &Ctx, args: &[Value]) -> R {
    b64_decode(
        &base64::engine::general_purpose::URL_SAFE,
        &s_arg(args, 0, "string")?,
    )
}

/// confd `map k1 v1 k2 v2 ...`.
fn map(_: &Ctx, args: &[Value]) -> R {
    if !args.len().is_multiple_of(2) {
        return Err("map needs key/value pairs".into());
    }
    let m: Map<String, Value> = args
        .chunks(2)
        .map(|kv| (text(&kv[0]), kv[1].clone()))
        .collect();
    Ok(Value::Object(m))
}

fn reverse(_: &Ctx, args: &[Value]) -> R {
    match arg(args, 0, "list or string")? {
        Value::String(s) => Ok(json!(s.chars().rev().collect::<String>())),
        v => Ok(Value::Array(list(v).into_iter().rev().collect())),
    }
}

/// Stable sort by length in bytes (Go's len), as confd does.
fn sort_by_length(_: &Ctx, args: &[Value]) -> R {
    let mut l = list(arg(args, 0, "list")?);
    l.sort_by_key(|v| text(v).len());
    Ok(Value::Array(l))
}

fn sort_kv_by_length(_: &Ctx, args: &[Value]) -> R {
    let mut l = list(arg(args, 0, "pairs")?);
    l.sort_by_key(|v| text(&v["Key"]).len());
    Ok(Value::Array(l))
}

fn range_list(a: i64, b_exclusive: i64) -> R {
    if b_exclusive.saturating_sub(a) > MAX_SEQ {
        return Err(format!("sequence longer than {MAX_SEQ}"));
    }
    Ok(json!((a..b_exclusive).collect::<Vec<_>>()))
}

/// confd `seq first last` (inclusive); `seq n` is 1..n.
fn seq(_: &Ctx, args: &[Value]) -> R {
    let (a, b) = match args.len() {
        1 => (1, int(&args[0])?),
        _ => (int(arg(args, 0, "start")?)?, int(arg(args, 1, "end")?)?),
    };
    range_list(a, b.saturating_add(1))
}

/// consul-template `loop n` (0..n) or `loop a b` (a..b, b excluded).
fn loop_(_: &Ctx, args: &[Value]) -> R {
    match args.len() {
        1 => range_list(0, int(&args[0])?),
        2 => range_list(int(&args[0])?, int(&args[1])?),
        n => Err(format!(
            "wrong number of arguments, expected 1 or 2, but got {n}"
        )),
    }
}

/// consul-template `in list value`.
fn in_(_: &Ctx, args: &[Value]) -> R {
    Ok(json!(within(arg(args, 0, "list")?, arg(args, 1, "value")?)))
}

/// `containsX values list`: (values, list) with list usually piped.
fn contains_some(args: &[Value], all: bool, invert: bool) -> R {
    let values = list(arg(args, 0, "values")?);
    let l = arg(args, 1, "list")?;
    for v in &values {
        if within(l, v) != invert {
            return Ok(json!(!all));
        }
    }
    Ok(json!(all))
}

fn contains_all(_: &Ctx, args: &[Value]) -> R {
    contains_some(args, true, true)
}

fn contains_any(_: &Ctx, args: &[Value]) -> R {
    contains_some(args, false, false)
}

fn contains_none(_: &Ctx, args: &[Value]) -> R {
    contains_some(args, true, false)
}

fn contains_not_all(_: &Ctx, args: &[Value]) -> R {
    contains_some(args, false, true)
}

/// Insert `v` at the `/`-separated path `k` of a nested map.
fn explode_into(m: &mut Map<String, Value>, k: &str, v: Value, path: &str) -> Result<(), String> {
    match k.split_once('/') {
        Some((top, rest)) => {
            let nest = m
                .entry(top.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match nest {
                Value::Object(n) => explode_into(n, rest, v, path),
                other => Err(format!(
                    "not a map: {path:?}: {top:?} already has value {:?}",
                    text(other)
                )),
            }
        }
        None if !k.is_empty() => {
            m.insert(k.to_string(), v);
            Ok(())
        }
        None => Ok(()),
    }
}

/// consul-template `explode pairs`: `tree` pairs as a nested map.
fn explode(_: &Ctx, args: &[Value]) -> R {
    let mut m = Map::new();
    for p in list(arg(args, 0, "pairs")?) {
        let k = text(&p["Key"]);
        explode_into(&mut m, &k, p["Value"].clone(), &k)?;
    }
    Ok(Value::Object(m))
}

fn explode_map(_: &Ctx, args: &[Value]) -> R {
    let Value::Object(src) = arg(args, 0, "map")? else {
        return Err("explodeMap needs a map".into());
    };
    let mut m = Map::new();
    for (k, v) in src {
        explode_into(&mut m, k, v.clone(), k)?;
    }
    Ok(Value::Object(m))
}

/// consul-template `byKey pairs`: top-level key -> {rest of key -> pair}.
fn by_key(_: &Ctx, args: &[Value]) -> R {
    let mut out: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    for p in list(arg(args, 0, "pairs")?) {
        let k = text(&p["Key"]);
        let Some((top, rest)) = k.split_once('/') else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let mut np = p.clone();
        np["Key"] = json!(rest);
        out.entry(top.to_string())
            .or_default()
            .insert(rest.to_string(), np);
    }
    Ok(json!(out))
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Min,
    Max,
}

fn is_int(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::String(s) => s.trim().parse::<i64>().is_ok(),
        Value::Bool(_) => true,
        _ => false,
    }
}

/// `x op y`, in integers when both are integers (Go's int arithmetic).
fn arith(op: Op, x: &Value, y: &Value) -> R {
    if is_int(x) && is_int(y) {
        let (a, b) = (int(x)?, int(y)?);
        let r = match op {
            Op::Add => a.checked_add(b),
            Op::Sub => a.checked_sub(b),
            Op::Mul => a.checked_mul(b),
            Op::Div => a.checked_div(b),
            Op::Mod => a.checked_rem(b),
            Op::Min => Some(a.min(b)),
            Op::Max => Some(a.max(b)),
        };
        return r
            .map(|v| json!(v))
            .ok_or_else(|| "integer overflow or division by zero".to_string());
    }
    let (a, b) = (float(x)?, float(y)?);
    let r = match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        Op::Div if b != 0.0 => a / b,
        Op::Mod => return Err("modulo needs integers".into()),
        Op::Min => a.min(b),
        Op::Max => a.max(b),
        Op::Div => return Err("division by zero".into()),
    };
    Ok(num(r))
}

/// confd order: `add a b` is a + b.
fn two(args: &[Value]) -> Result<(&Value, &Value), String> {
    Ok((arg(args, 0, "number")?, arg(args, 1, "number")?))
}

fn add(_: &Ctx, args: &[Value]) -> R {
    let (a, b) = two(args)?;
    arith(Op::Add, a, b)
}

fn sub(_: &Ctx, args: &[Value]) -> R {
    let (a, b) = two(args)?;
    arith(Op::Sub, a, b)
}

fn mul(_: &Ctx, args: &[Value]) -> R {
    let (a, b) = two(args)?;
    arith(Op::Mul, a, b)
}

fn div(_: &Ctx, args: &[Value]) -> R {
    let (a, b) = two(args)?;
    arith(Op::Div, a, b)
}

fn modulo_confd(_: &Ctx, args: &[Value]) -> R {
    let (a, b) = two(args)?;
    arith(Op::Mod, a, b)
}

/// consul-template order: `subtract b a` is a - b.
fn subtract(_: &Ctx, args: &[Value]) -> R {
    let (b, a) = two(args)?;
    arith(Op::Sub, a, b)
}

fn divide(_: &Ctx, args: &[Value]) -> R {
    let (b, a) = two(args)?;
    arith(Op::Div, a, b)
}

fn modulo(_: &Ctx, args: &[Value]) -> R {
    let (b, a) = two(args)?;
    arith(Op::Mod, a, b)
}

fn minimum(_: &Ctx, args: &[Value]) -> R {
    let (b, a) = two(args)?;
    arith(Op::Min, a, b)
}

fn maximum(_: &Ctx, args: &[Value]) -> R {
    let (b, a) = two(args)?;
    arith(Op::Max, a, b)
}
