//! Refuse Go-template syntax (confd and consul-template templates) with the
//! line and the Handlebars form to write instead. See the porting table in
//! the README.

use std::sync::OnceLock;

use regex::Regex;

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

/// The first Go-template construct in `text`, if any.
pub fn check(text: &str) -> Option<GoSyntax> {
    for (i, line) in text.lines().enumerate() {
        // Handlebars comments may mention anything.
        if line.trim_start().starts_with("{{!") {
            continue;
        }
        if has_pipeline(line) {
            return Some(GoSyntax {
                line: i + 1,
                message: "Go template syntax pipelines (x | f) is not Handlebars; write nested calls: {{f (getv \"/x\")}} (see the porting table in the README)".into(),
            });
        }
        for (re, what, instead) in rules() {
            if re.is_match(line) {
                return Some(GoSyntax {
                    line: i + 1,
                    message: format!(
                        "Go template syntax {what} is not Handlebars; write {instead} (see the porting table in the README)"
                    ),
                });
            }
        }
    }
    None
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
}
