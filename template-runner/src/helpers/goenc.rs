//! `toJSON`, `toJSONPretty`, `toYAML` and `toTOML` byte for byte as
//! consul-template prints them: Go's encoding/json, gopkg.in/yaml.v2 and
//! BurntSushi/toml. Where the Rust crates print the same data differently
//! (float forms, key order, quoting, TOML's table indentation) this module
//! decides, and says why.
//!
//! Go keeps two kinds of object apart that JSON values don't: maps (keys
//! sorted; yaml.v2 sorts digits as numbers) and structs (fields in
//! declaration order; yaml.v2 lowercases their names). An object whose keys
//! are exactly those of a consul-template struct (`KeyPair`,
//! `HealthService`, `Node`, ...) is written as that struct.

use serde_json::{Map, Value};

/// consul-template's structs the catalog and KV functions return, by field
/// order. `HealthService` carries our extra `Meta` (its `ServiceMeta`).
const STRUCTS: &[&[&str]] = &[
    // KeyPair
    &[
        "Path",
        "Key",
        "Value",
        "CreateIndex",
        "ModifyIndex",
        "LockIndex",
        "Flags",
        "Session",
    ],
    // HealthService
    &[
        "Node",
        "NodeID",
        "NodeAddress",
        "NodeDatacenter",
        "NodeTaggedAddresses",
        "NodeMeta",
        "ServiceMeta",
        "Address",
        "ServiceTaggedAddresses",
        "ID",
        "Name",
        "Kind",
        "Tags",
        "Checks",
        "Status",
        "Port",
        "Weights",
        "Namespace",
        "Meta",
    ],
    // Node
    &[
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "Meta",
    ],
    // CatalogNode
    &["Node", "Services"],
    // CatalogNodeService
    &[
        "ID",
        "Service",
        "Tags",
        "Meta",
        "Port",
        "Address",
        "EnableTagOverride",
    ],
    // CatalogSnippet
    &["Name", "Tags"],
    // AgentWeights
    &["Passing", "Warning"],
];

/// The object's entries in Go's order, and whether it is a struct.
fn entries(m: &Map<String, Value>) -> (Vec<(&str, &Value)>, bool) {
    let shape = STRUCTS
        .iter()
        .find(|f| f.len() == m.len() && f.iter().all(|k| m.contains_key(*k)));
    match shape {
        Some(fields) => (fields.iter().map(|k| (*k, &m[*k])).collect(), true),
        // serde_json's map is sorted by key, as Go sorts map keys.
        None => (m.iter().map(|(k, v)| (k.as_str(), v)).collect(), false),
    }
}

/// `strconv.FormatFloat(f, fmt, -1, 64)` for `'e'` (exponent at least two
/// digits, with its sign) built from Rust's shortest digits.
fn go_e(f: f64) -> String {
    let s = format!("{f:e}");
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mant}e{sign}{:02}", exp.abs())
}

/// A JSON number as Go's encoding/json writes a float64 (integers as they
/// are): 'f' form between 1e-6 and 1e21, else 'e' with `e-07` cut to `e-7`.
fn json_number(n: &serde_json::Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    let f = n.as_f64().unwrap_or(0.0);
    let a = f.abs();
    if a == 0.0 || (1e-6..1e21).contains(&a) {
        return format!("{f}");
    }
    let e = go_e(f);
    match e.rsplit_once("e-0") {
        Some((m, d)) if d.len() == 1 => format!("{m}e-{d}"),
        _ => e,
    }
}

/// yaml.v2's float: `strconv.FormatFloat(f, 'g', -1, 64)`, whose shortest
/// form switches to an exponent below 1e-4 and from 1e6 (`1e+06`).
fn yaml_float(f: f64) -> String {
    if f.is_nan() {
        return ".nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { ".inf" } else { "-.inf" }.into();
    }
    // The decimal exponent of the shortest digits, as `{:e}` prints it.
    let e = format!("{f:e}");
    let exp: i32 = e
        .rsplit('e')
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0);
    if !(-4..6).contains(&exp) {
        go_e(f)
    } else {
        format!("{f}")
    }
}

/// A string as Go's encoding/json writes it (HTML characters escaped).
fn json_string(s: &str) -> String {
    let q = serde_json::to_string(s).unwrap_or_default();
    super::data::go_json_escape(q)
}

fn json_write(v: &Value, indent: Option<&str>, depth: usize, out: &mut String) {
    let nl = |out: &mut String, d: usize| {
        if let Some(i) = indent {
            out.push('\n');
            out.push_str(&i.repeat(d));
        }
    };
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&json_number(n)),
        Value::String(s) => out.push_str(&json_string(s)),
        Value::Array(a) if a.is_empty() => out.push_str("[]"),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                json_write(x, indent, depth + 1, out);
            }
            nl(out, depth);
            out.push(']');
        }
        Value::Object(m) if m.is_empty() => out.push_str("{}"),
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in entries(m).0.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, depth + 1);
                out.push_str(&json_string(k));
                out.push_str(if indent.is_some() { ": " } else { ":" });
                json_write(x, indent, depth + 1, out);
            }
            nl(out, depth);
            out.push('}');
        }
    }
}

/// `toJSON` / `toJSONPretty` (two-space indent), as encoding/json prints.
pub fn to_json(v: &Value, pretty: bool) -> String {
    let mut out = String::new();
    json_write(v, pretty.then_some("  "), 0, &mut out);
    out
}

/// yaml.v2's map key order: runs of digits compare as numbers, a letter
/// sorts after a non-letter (its `keyList.Less`).
fn yaml_key_less(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ar, br): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        if ar[i] == br[i] {
            i += 1;
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i].cmp(&br[i]);
        }
        if al || bl {
            return if bl {
                Ordering::Less
            } else {
                Ordering::Greater
            };
        }
        let mut an: i64 = 0;
        let mut bn: i64 = 0;
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an
                .saturating_mul(10)
                .saturating_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn
                .saturating_mul(10)
                .saturating_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an.cmp(&bn);
        }
        if ai != bi {
            return ai.cmp(&bi);
        }
        return ar[i].cmp(&br[i]);
    }
    ar.len().cmp(&br.len())
}

/// Whether yaml.v2 must quote `s` because a plain `s` would read back as
/// something else (null, bool, number, timestamp, merge key, or a YAML 1.1
/// base-60 float); it double-quotes those where serde_yaml single-quotes.
fn yaml_v2_quotes(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    static NUM: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = NUM.get_or_init(|| {
        regex::Regex::new(concat!(
            r"^(?:[-+]?(?:0b[01_]+|0x[0-9a-fA-F_]+|0o?[0-7_]+|[0-9][0-9_]*)",
            r"|[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?",
            r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?",
            r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt ].*)?)$"
        ))
        .unwrap_or_else(|_| regex::Regex::new("$^").expect("empty regex"))
    });
    WORDS.contains(&s) || re.is_match(s)
}

/// Builds the serde_yaml tree; scalars whose text serde_yaml would choose
/// differently become placeholder words, swapped for yaml.v2's text after.
struct YamlBuild {
    nonce: String,
    raw: Vec<String>,
}

impl YamlBuild {
    fn raw(&mut self, text: String) -> serde_yaml::Value {
        self.raw.push(text);
        serde_yaml::Value::String(format!("{}{}x", self.nonce, self.raw.len() - 1))
    }

    fn build(&mut self, v: &Value) -> serde_yaml::Value {
        use serde_yaml::Value as Y;
        match v {
            Value::Null => Y::Null,
            Value::Bool(b) => Y::Bool(*b),
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                Y::Number(serde_yaml::from_str(&n.to_string()).unwrap_or(0.into()))
            }
            Value::Number(n) => self.raw(yaml_float(n.as_f64().unwrap_or(0.0))),
            Value::String(s) if !s.contains('\n') && yaml_v2_quotes(s) => {
                self.raw(serde_json::to_string(s).unwrap_or_default())
            }
            Value::String(s) => Y::String(s.clone()),
            Value::Array(a) => Y::Sequence(a.iter().map(|x| self.build(x)).collect()),
            Value::Object(m) => {
                let (mut es, is_struct) = entries(m);
                if !is_struct {
                    es.sort_by(|(a, _), (b, _)| yaml_key_less(a, b));
                }
                let mut out = serde_yaml::Mapping::new();
                for (k, x) in es {
                    let key = if is_struct {
                        Y::String(k.to_lowercase())
                    } else if yaml_v2_quotes(k) {
                        self.raw(serde_json::to_string(k).unwrap_or_default())
                    } else {
                        Y::String(k.to_string())
                    };
                    out.insert(key, self.build(x));
                }
                Y::Mapping(out)
            }
        }
    }
}

/// `toYAML`: gopkg.in/yaml.v2's output, trimmed.
pub fn to_yaml(v: &Value) -> Result<String, String> {
    let text = serde_json::to_string(v).unwrap_or_default();
    // A word the data cannot contain marks the swapped scalars.
    let mut nonce = String::from("zqyamlv2z");
    while text.contains(&nonce) {
        nonce.push('q');
    }
    let mut b = YamlBuild {
        nonce,
        raw: Vec::new(),
    };
    let tree = b.build(v);
    let mut out = serde_yaml::to_string(&tree).map_err(|e| format!("toYAML: {e}"))?;
    for (i, r) in b.raw.iter().enumerate().rev() {
        out = out.replace(&format!("{}{i}x", b.nonce), r);
    }
    Ok(out.trim().to_string())
}

/// BurntSushi's bare keys; others are quoted.
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        toml_string(k)
    }
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A table (map or struct) goes under its own header, as does a non-empty
/// array whose elements are all tables (`[[key]]`).
fn toml_is_table(v: &Value) -> Result<bool, String> {
    match v {
        Value::Object(_) => Ok(true),
        Value::Array(a) if !a.is_empty() => {
            if a.iter().any(Value::is_null) {
                return Err("toml: cannot encode array with nil element".into());
            }
            Ok(a.iter().all(Value::is_object))
        }
        _ => Ok(false),
    }
}

struct Toml {
    out: String,
}

impl Toml {
    fn newline(&mut self) {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
    }

    fn element(&mut self, v: &Value) -> Result<(), String> {
        match v {
            Value::Null => return Err("toml: cannot encode a nil value here".into()),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) if n.is_i64() || n.is_u64() => self.out.push_str(&n.to_string()),
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(0.0);
                let s = format!("{f}");
                self.out.push_str(&s);
                if !s.contains('.') {
                    self.out.push_str(".0");
                }
            }
            Value::String(s) => self.out.push_str(&toml_string(s)),
            Value::Array(a) => {
                toml_is_table(v)?;
                self.out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.element(x)?;
                }
                self.out.push(']');
            }
            Value::Object(m) => {
                self.out.push('{');
                let es: Vec<_> = entries(m)
                    .0
                    .into_iter()
                    .filter(|(_, x)| !x.is_null())
                    .collect();
                for (i, (k, x)) in es.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.out.push_str(&toml_key(k));
                    self.out.push_str(" = ");
                    self.element(x)?;
                }
                self.out.push('}');
            }
        }
        Ok(())
    }

    /// The entries of a table: plain values first, then sub-tables, each
    /// group in Go's order (BurntSushi's eMap / eStruct).
    fn table(&mut self, path: &[String], m: &Map<String, Value>) -> Result<(), String> {
        let (es, _) = entries(m);
        let mut direct = Vec::new();
        let mut sub = Vec::new();
        for (k, v) in es {
            if v.is_null() {
                continue;
            }
            if toml_is_table(v)? {
                sub.push((k, v));
            } else {
                direct.push((k, v));
            }
        }
        let indent = "  ".repeat(path.len());
        for (k, v) in direct {
            self.out.push_str(&indent);
            self.out.push_str(&toml_key(k));
            self.out.push_str(" = ");
            self.element(v)?;
            self.newline();
        }
        for (k, v) in sub {
            let mut p = path.to_vec();
            p.push(k.to_string());
            let header = p.iter().map(|s| toml_key(s)).collect::<Vec<_>>().join(".");
            match v {
                Value::Object(sm) => {
                    if p.len() == 1 {
                        self.newline();
                    }
                    self.out.push_str(&format!("{indent}[{header}]"));
                    self.newline();
                    self.table(&p, sm)?;
                }
                Value::Array(a) => {
                    for x in a {
                        if let Value::Object(sm) = x {
                            self.newline();
                            self.out.push_str(&format!("{indent}[[{header}]]"));
                            self.newline();
                            self.table(&p, sm)?;
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `toTOML`: BurntSushi/toml's output (two-space indent per table level),
/// trimmed. Only a map can be a document, as in Go.
pub fn to_toml(v: &Value) -> Result<String, String> {
    let Value::Object(m) = v else {
        return Err("toml: top-level values must be Go maps or structs".into());
    };
    let mut t = Toml { out: String::new() };
    t.table(&[], m)?;
    Ok(t.out.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Expected bytes are what consul-template v0.40 (Go 1.24,
    /// encoding/json, yaml.v2 v2.4.0, BurntSushi/toml v1.3.2) prints for
    /// the same data, as their encoders define it.
    #[test]
    fn json_like_go() {
        let v = json!({"b": [1, 2.5, 1e21, 1e-7, 0.000001], "a": "<x&y>", "c": {}, "d": []});
        assert_eq!(
            to_json(&v, false),
            r#"{"a":"\u003cx\u0026y\u003e","b":[1,2.5,1e+21,1e-7,0.000001],"c":{},"d":[]}"#
        );
        assert_eq!(
            to_json(&json!({"a": [1, {"b": null}], "e": {}}), true),
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"e\": {}\n}"
        );
        // A KeyPair keeps its struct's field order.
        let kp = json!({"Key": "a", "Value": "1", "Path": "x/a", "CreateIndex": 5,
            "ModifyIndex": 6, "LockIndex": 0, "Flags": 42, "Session": ""});
        assert_eq!(
            to_json(&kp, false),
            r#"{"Path":"x/a","Key":"a","Value":"1","CreateIndex":5,"ModifyIndex":6,"LockIndex":0,"Flags":42,"Session":""}"#
        );
    }

    #[test]
    fn yaml_like_yaml_v2() {
        let v = json!({"a10": 1, "a9": "yes", "b": ["1", "x", 1.5, 2.0, 1234567.5, true, null],
            "c": {"d": "", "e": "two\nlines"}, "f": {}, "g": [], "h": "a: b"});
        assert_eq!(
            to_yaml(&v).unwrap(),
            "a9: \"yes\"\na10: 1\nb:\n- \"1\"\n- x\n- 1.5\n- 2\n- 1.2345675e+06\n- true\n- null\nc:\n  d: \"\"\n  e: |-\n    two\n    lines\nf: {}\ng: []\nh: 'a: b'"
        );
        // A struct: field order, names lowercased.
        let kp = json!({"Key": "a", "Value": "1", "Path": "x/a", "CreateIndex": 5,
            "ModifyIndex": 6, "LockIndex": 0, "Flags": 42, "Session": ""});
        assert_eq!(
            to_yaml(&json!([kp])).unwrap(),
            "- path: x/a\n  key: a\n  value: \"1\"\n  createindex: 5\n  modifyindex: 6\n  lockindex: 0\n  flags: 42\n  session: \"\""
        );
    }

    #[test]
    fn toml_like_burntsushi() {
        let v = json!({"z": "q\"uote", "a": 1, "f": 2.0, "l": [1, 2], "e": [],
            "t": {"x": true, "n": {"deep": "y"}}, "s": [{"k": "v1"}, {"k": "v2"}],
            "m": [{"k": 1}, 2], "sp ace": "k", "nil": null});
        assert_eq!(
            to_toml(&v).unwrap(),
            "a = 1\ne = []\nf = 2.0\nl = [1, 2]\nm = [{k = 1}, 2]\n\"sp ace\" = \"k\"\nz = \"q\\\"uote\"\n\n[[s]]\n  k = \"v1\"\n\n[[s]]\n  k = \"v2\"\n\n[t]\n  x = true\n  [t.n]\n    deep = \"y\""
        );
        assert!(to_toml(&json!([1])).is_err());
        assert!(to_toml(&json!({"a": [1, null]})).is_err());
    }
}
