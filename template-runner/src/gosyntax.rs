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
            (
                r(r#"\{\{[^}|]*"[^"]*"\s*\|\s*[A-Za-z]|\{\{[^}"|]*\)\s*\|\s*[A-Za-z]"#),
                "pipelines (x | f)",
                "nested calls: {{f (getv \"/x\")}}",
            ),
        ]
    })
}

/// The first Go-template construct in `text`, if any.
pub fn check(text: &str) -> Option<GoSyntax> {
    for (i, line) in text.lines().enumerate() {
        // Handlebars comments may mention anything.
        if line.trim_start().starts_with("{{!") {
            continue;
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
        ] {
            assert!(check(ok).is_none(), "{ok} flagged");
        }
    }
}
