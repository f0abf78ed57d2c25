//! Query templates (`Template.Type = name_prefix_match`): a query whose
//! name is a prefix answers every name starting with it, its `Service`
//! fields interpolated with `${name.full}`, `${name.prefix}`,
//! `${name.suffix}`, `${match(N)}` (the `Template.Regexp` groups of the
//! full name) and `${agent.segment}`, as Consul's `prepared_query/template.go`.

use regex::Regex;

use crate::state::query::QueryRec;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

/// A template ready to render.
#[derive(Debug)]
pub struct Compiled {
    regexp: Option<Regex>,
}

/// Check a template query: its type, its regexp, every interpolation.
pub fn compile(q: &QueryRec) -> Result<Compiled, TemplateError> {
    if q.template.kind != "name_prefix_match" {
        return Err(TemplateError(format!(
            "Bad Template.Type '{}'",
            q.template.kind
        )));
    }
    let regexp = match q.template.regexp.as_str() {
        "" => None,
        r => Some(
            regex::RegexBuilder::new(r)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| TemplateError(format!("Bad Regexp: {e}")))?,
        ),
    };
    let c = Compiled { regexp };
    // Render once with the prefix itself: a bad interpolation fails now.
    c.render(q, &q.name)?;
    Ok(c)
}

/// Interpolate `${...}` in `s`.
fn interpolate(s: &str, vars: &dyn Fn(&str) -> Option<String>) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after.find('}').ok_or_else(|| {
            TemplateError(format!("Failed compiling template: unclosed ${{ in {s:?}"))
        })?;
        let expr = after[..end].trim();
        let v = vars(expr).ok_or_else(|| {
            TemplateError(format!(
                "Failed compiling template: unknown variable or function {expr:?}"
            ))
        })?;
        out.push_str(&v);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Compiled {
    /// The query as it answers `name` (its `Service` block interpolated).
    pub fn render(&self, q: &QueryRec, name: &str) -> Result<QueryRec, TemplateError> {
        let groups: Vec<String> = self
            .regexp
            .as_ref()
            .and_then(|r| r.captures(name))
            .map(|c| {
                c.iter()
                    .map(|m| m.map(|m| m.as_str().to_string()).unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        let vars = |e: &str| -> Option<String> {
            match e {
                "name.full" => Some(name.to_string()),
                "name.prefix" => Some(q.name.clone()),
                "name.suffix" => Some(name.strip_prefix(q.name.as_str()).unwrap_or("").to_string()),
                "agent.segment" => Some(String::new()),
                _ => {
                    let n = e.strip_prefix("match(")?.strip_suffix(')')?.trim();
                    let n: usize = n.parse().ok()?;
                    Some(groups.get(n).cloned().unwrap_or_default())
                }
            }
        };
        let mut out = q.clone();
        let s = &mut out.service;
        let one = |x: &mut String| -> Result<(), TemplateError> {
            *x = interpolate(x, &vars)?;
            Ok(())
        };
        let mut fields: Vec<&mut String> = vec![&mut s.service, &mut s.near];
        fields.extend(s.tags.iter_mut());
        fields.extend(s.failover.datacenters.iter_mut());
        fields.extend(s.ignore_check_ids.iter_mut());
        fields.extend(s.node_meta.values_mut());
        fields.extend(s.service_meta.values_mut());
        for f in fields {
            one(f)?;
        }
        if q.template.remove_empty_tags {
            s.tags.retain(|t| !t.is_empty());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::query::QueryTemplate;

    fn tmpl(name: &str, regexp: &str, service: &str, tags: &[&str]) -> QueryRec {
        let mut q = QueryRec {
            name: name.into(),
            template: QueryTemplate {
                kind: "name_prefix_match".into(),
                regexp: regexp.into(),
                remove_empty_tags: true,
            },
            ..Default::default()
        };
        q.service.service = service.into();
        q.service.tags = tags.iter().map(|t| t.to_string()).collect();
        q
    }

    #[test]
    fn renders_as_consul() {
        let q = tmpl(
            "geo-db-",
            r"^geo-db-(.*?)-([^\-]+?)$",
            "mysql-${match(1)}",
            &["${match(2)}", "${match(9)}", "x-${name.suffix}"],
        );
        let c = compile(&q).unwrap();
        let r = c.render(&q, "geo-db-customer-primary").unwrap();
        assert_eq!(r.service.service, "mysql-customer");
        // match(9) does not exist: empty, and removed with RemoveEmptyTags.
        assert_eq!(r.service.tags, ["primary", "x-customer-primary"]);
        let q = tmpl("", "", "${name.full}", &[]);
        let r = compile(&q).unwrap().render(&q, "web").unwrap();
        assert_eq!(r.service.service, "web");
        let q = tmpl("web-", "", "${name.prefix}|${name.suffix}", &[]);
        let r = compile(&q).unwrap().render(&q, "web-query").unwrap();
        assert_eq!(r.service.service, "web-|query");
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(compile(&tmpl("a", "(", "x", &[]))
            .unwrap_err()
            .0
            .starts_with("Bad Regexp"));
        assert!(compile(&tmpl("a", "", "${nope}", &[]))
            .unwrap_err()
            .0
            .contains("unknown variable"));
        assert!(compile(&tmpl("a", "", "${name.full", &[]))
            .unwrap_err()
            .0
            .contains("unclosed"));
        let mut q = tmpl("a", "", "x", &[]);
        q.template.kind = "other".into();
        assert_eq!(compile(&q).unwrap_err().0, "Bad Template.Type 'other'");
    }
}
