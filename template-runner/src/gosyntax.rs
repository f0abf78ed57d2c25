//! Which engine reads a template file: Go text/template (confd's and
//! consul-template's files) or Handlebars.
//!
//! The rule (also in the README): an explicit `engine` wins; else
//! `.hbs`/`.handlebars` are Handlebars and `.ctmpl` is Go; any other file
//! (`.tmpl`, `.tpl`, ...) is Go when it uses Go-only syntax (`range`, `end`,
//! `.Field`, `$var`, pipelines, `{{- -}}`, ...) and Handlebars otherwise
//! (blocks `{{#...}}`, or neither: such a file renders the same in both).
//! A file with both kinds is refused with the lines that disagree.

use std::path::Path;
use std::sync::OnceLock;

use regex::Regex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    Go,
    Handlebars,
}

impl Engine {
    /// `engine = "go" | "handlebars"` (also `hbs`, `gotemplate`).
    pub fn parse(s: &str) -> Option<Engine> {
        match s.trim().to_ascii_lowercase().as_str() {
            "go" | "gotemplate" | "go-template" | "text/template" => Some(Engine::Go),
            "handlebars" | "hbs" => Some(Engine::Handlebars),
            _ => None,
        }
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Engine::Go => "go",
            Engine::Handlebars => "handlebars",
        })
    }
}

/// A construct found on a line.
pub struct GoSyntax {
    pub line: usize,
    pub message: String,
}

fn rules() -> &'static [(Regex, &'static str, &'static str)] {
    static R: OnceLock<Vec<(Regex, &'static str, &'static str)>> = OnceLock::new();
    R.get_or_init(|| {
        let r = |p: &str| Regex::new(p).expect("valid regex");
        vec![
            (
                r(r"\{\{-?\s*range\b"),
                "{{range ...}}",
                "{{#each (getvs \"/dir/*\")}}...{{this}}...{{/each}}",
            ),
            (
                r(r"\{\{-?\s*end\s*-?\}\}"),
                "{{end}}",
                "{{/each}}, {{/if}} or {{/with}} closing the block",
            ),
            (
                r(r"\{\{-?\s*\.[A-Za-z_]"),
                "{{.Field}}",
                "{{Field}} (or {{this.Field}})",
            ),
            (r(r"\{\{-?\s*\.\s*-?\}\}"), "{{.}}", "{{this}}"),
            (r(r"\{\{-?\s*if\s"), "{{if ...}}", "{{#if ...}}...{{/if}}"),
            (
                r(r"\{\{-?\s*with\s"),
                "{{with ...}}",
                "{{#with ...}}...{{/with}}",
            ),
            (
                r(r"\{\{-?\s*(define|template|block)\s"),
                "{{define}}/{{template}}",
                "Handlebars partials {{> name}}",
            ),
            (
                r(r"\{\{-?[^}]*\$[A-Za-z_]"),
                "$variables",
                "block params: {{#each list as |item|}}{{item}}{{/each}}",
            ),
            (
                r(r"\{\{-?\s*/\*"),
                "{{/* comments */}}",
                "{{!-- comments --}}",
            ),
            (
                r(r"\{\{-\s|\s-\}\}"),
                "{{- ... -}} trim markers",
                "{{~ ... ~}}",
            ),
        ]
    })
}

/// Whether a `{{...}}` on this line holds a Go pipeline (`x | f`). Only a
/// `|` inside an open mustache and outside string literals counts: a shell
/// pipe or `||` in the template's *output* is fine, and so are block params
/// (`as |item|`).
fn has_pipeline(line: &str) -> bool {
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        let body = &rest[start + 2..];
        let mut in_str = false;
        let mut end = body.len();
        let mut pipe_at = None;
        let b = body.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'"' => in_str = !in_str,
                b'\\' if in_str => i += 1,
                b'}' if !in_str && b.get(i + 1) == Some(&b'}') => {
                    end = i;
                    break;
                }
                b'|' if !in_str && pipe_at.is_none() => {
                    let doubled = b.get(i + 1) == Some(&b'|') || (i > 0 && b[i - 1] == b'|');
                    if !doubled {
                        pipe_at = Some(i);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let inner = &body[..end];
        if let Some(p) = pipe_at.filter(|p| *p < end) {
            let after = inner[p + 1..].trim_start();
            let block_params = inner.contains(" as |");
            if !block_params && after.starts_with(|c: char| c.is_ascii_alphabetic()) {
                return true;
            }
        }
        rest = &body[end..];
    }
    false
}

/// The first Go-template construct in `text`, if any, with the Handlebars
/// form of it.
pub fn check(text: &str) -> Option<GoSyntax> {
    for (i, line) in text.lines().enumerate() {
        // Handlebars comments may mention anything.
        if line.trim_start().starts_with("{{!") {
            continue;
        }
        if has_pipeline(line) {
            return Some(GoSyntax {
                line: i + 1,
                message: "Go template syntax pipelines (x | f); in Handlebars: nested calls {{f (getv \"/x\")}}".into(),
            });
        }
        for (re, what, instead) in rules() {
            if re.is_match(line) {
                return Some(GoSyntax {
                    line: i + 1,
                    message: format!("Go template syntax {what}; in Handlebars: {instead}"),
                });
            }
        }
    }
    None
}

/// The first Handlebars-only construct: a block, partial or comment
/// (`{{#` `{{/` `{{^` `{{>` `{{!` `{{~`), `this` or `@index`-style data.
pub fn check_handlebars(text: &str) -> Option<GoSyntax> {
    static R: OnceLock<Regex> = OnceLock::new();
    let re = R.get_or_init(|| {
        Regex::new(r"\{\{~|\{\{\s*(#|\^|>|!|/[^*])|\{\{[^}]*(\bthis\b|@index|@key|@first|@last)")
            .expect("valid regex")
    });
    text.lines().enumerate().find_map(|(i, line)| {
        re.find(line).map(|m| GoSyntax {
            line: i + 1,
            message: format!("Handlebars syntax {:?}", m.as_str()),
        })
    })
}

/// The engine for a file without an explicit `engine` (the module's rule).
pub fn select(path: &Path, text: &str) -> Result<Engine, String> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("hbs" | "handlebars") => return Ok(Engine::Handlebars),
        Some("ctmpl") => return Ok(Engine::Go),
        _ => {}
    }
    match (check(text), check_handlebars(text)) {
        (Some(_), None) => Ok(Engine::Go),
        (None, _) => Ok(Engine::Handlebars),
        (Some(g), Some(h)) => Err(format!(
            "mixes Go template syntax (line {}: {}) and Handlebars syntax (line {}: {}); \
             set engine = \"go\" or \"handlebars\", or name the file .ctmpl or .hbs",
            g.line, g.message, h.line, h.message
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_go_templates() {
        let cases = [
            ("{{range getvs \"/x/*\"}}", 1, "{{#each"),
            ("ok\n{{end}}", 2, "{{/each}}"),
            ("a {{.Key}} b", 1, "{{Field}}"),
            ("{{ if exists \"/a\" }}", 1, "{{#if"),
            ("{{$x := 1}}", 1, "block params"),
            ("{{- getv \"/a\" -}}", 1, "{{~"),
            ("{{getv \"/a\" | toUpper}}", 1, "nested calls"),
            ("x\n{{ (getv \"/a\") | toUpper }} | y", 2, "nested calls"),
            (
                "{{getv \"/a|b\"}} {{ key \"/k\"|base64Decode }}",
                1,
                "nested calls",
            ),
        ];
        for (t, line, needle) in cases {
            let e = check(t).unwrap_or_else(|| panic!("{t} not detected"));
            assert_eq!(e.line, line, "{t}");
            assert!(e.message.contains(needle), "{t}: {}", e.message);
        }
        for ok in [
            "{{getv \"/a\"}}",
            "{{#each (service \"web\") as |s|}}{{s.Address}}{{/each}}",
            "{{#if (exists \"/a\")}}x{{else}}y{{/if}}",
            "{{~getv \"/a\"~}}",
            "{{!-- {{range}} in a comment --}}",
            "{{toUpper (getv \"/x\")}}",
            // shell pipes and || in the output, not in a mustache
            "echo \"{{getv \"/x\"}}\" | base64 -d",
            "test -f {{getv \"/f\"}} || exit 1",
            "a=\"$(cat {{getv \"/p\"}} | wc -l)\"",
            // JSON output, and `|` inside a string argument
            "{\"a\": \"{{getv \"/x\"}}\", \"b\": [1, 2]} | jq .",
            "{{getv \"/a|b\" \"x | y\"}}",
            "{{#if (or (exists \"/a\") (exists \"/b\"))}}a || b{{/if}}",
        ] {
            assert!(check(ok).is_none(), "{ok} flagged");
        }
    }

    /// confd's and consul-template's files are Go; Handlebars files and
    /// plain ones stay Handlebars; the extension wins; a mix is refused.
    #[test]
    fn selects_engine() {
        let p = |s: &str| Path::new(s).to_path_buf();
        let go = [
            "{{range getvs \"/upstream/*\"}}server {{.}};{{end}}",
            "{{range service \"web\"}}server {{.Address}}:{{.Port}};{{end}}",
            "{{with $x := key \"a\"}}{{$x}}{{end}}",
            "{{/* comment */}}{{key \"a\" | toUpper}}",
        ];
        for t in go {
            assert_eq!(select(&p("a.tmpl"), t), Ok(Engine::Go), "{t}");
        }
        let hbs = [
            "{{#each (getvs \"/upstream/*\")}}server {{this}};{{/each}}",
            "port={{getv \"/app/port\" \"80\"}}",
            "{{~getv \"/a\"~}}",
        ];
        for t in hbs {
            assert_eq!(select(&p("a.tmpl"), t), Ok(Engine::Handlebars), "{t}");
        }
        assert_eq!(select(&p("a.ctmpl"), "x={{key \"a\"}}"), Ok(Engine::Go));
        assert_eq!(
            select(&p("a.hbs"), "{{range x}}{{end}}"),
            Ok(Engine::Handlebars)
        );
        let e = select(&p("a.tmpl"), "{{#each x}}\n{{range y}}{{end}}").unwrap_err();
        assert!(e.contains("line 2") && e.contains("line 1"), "{e}");
        assert_eq!(Engine::parse("Go"), Some(Engine::Go));
        assert_eq!(Engine::parse("hbs"), Some(Engine::Handlebars));
    }
}
