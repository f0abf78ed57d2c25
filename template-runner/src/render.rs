//! Rendering templates with Handlebars.
//!
//! Helpers read fetched data from the [`DataStore`] and record every
//! dependency they touch, so a template's dependencies are discovered by
//! rendering it (consul-template style) in addition to the `keys` a confd
//! resource declares. A render that touched data not fetched yet is
//! discarded, never written: the runner fetches and renders again.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use handlebars::Handlebars;
use parking_lot::{Mutex, RwLock};

use crate::dependency::{Data, Dependency};
use crate::gosyntax;
use crate::helpers;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Template(String),
    #[error("reading template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// Fetched data of every watched dependency.
#[derive(Default)]
pub struct DataStore {
    map: RwLock<HashMap<Dependency, Arc<Data>>>,
}

impl DataStore {
    pub fn get(&self, d: &Dependency) -> Option<Arc<Data>> {
        self.map.read().get(d).cloned()
    }

    /// Store new data; true when it differs from what was there.
    pub fn put(&self, d: &Dependency, data: Data) -> bool {
        let mut m = self.map.write();
        if m.get(d).map(|old| **old == data).unwrap_or(false) {
            return false;
        }
        m.insert(d.clone(), Arc::new(data));
        true
    }

    pub fn has(&self, d: &Dependency) -> bool {
        self.map.read().contains_key(d)
    }

    pub fn forget(&self, d: &Dependency) {
        self.map.write().remove(d);
    }
}

/// Per-render state the helpers read and fill.
#[derive(Default)]
pub struct Scope {
    pub template: String,
    /// confd `prefix` of the resource, joined to every key.
    pub prefix: String,
    /// Declared KV prefixes (`keys`), longest first.
    pub declared: Vec<String>,
    pub used: BTreeSet<Dependency>,
    pub missing: BTreeSet<Dependency>,
}

pub struct Ctx {
    pub store: Arc<DataStore>,
    pub scope: Mutex<Scope>,
}

/// The result of rendering one template.
#[derive(Debug)]
pub enum Outcome {
    Rendered(String),
    /// Data for these dependencies has not arrived yet.
    Missing(BTreeSet<Dependency>),
    Failed(String),
}

/// The file a compiled template came from: internal names are
/// `<src>#<generation>-<index>` (so a reload can compile next to the old
/// set); logs and errors show the src path.
pub fn shown(name: &str) -> &str {
    name.rsplit_once('#').map_or(name, |(src, _)| src)
}

/// Compiled templates and the helper set.
pub struct Renderer {
    hb: Handlebars<'static>,
    ctx: Arc<Ctx>,
}

impl Renderer {
    pub fn new(store: Arc<DataStore>) -> Self {
        let ctx = Arc::new(Ctx {
            store,
            scope: Mutex::new(Scope::default()),
        });
        let mut hb = Handlebars::new();
        // Config files are not HTML.
        hb.register_escape_fn(handlebars::no_escape);
        helpers::register(&mut hb, &ctx);
        Self { hb, ctx }
    }

    /// Load and compile `path` under `name`, refusing Go-template syntax
    /// with the Handlebars form to use instead.
    pub fn load(&mut self, name: &str, path: &Path) -> Result<(), RenderError> {
        let text = std::fs::read_to_string(path).map_err(|source| RenderError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_str(name, &path.display().to_string(), &text)
    }

    pub fn load_str(&mut self, name: &str, shown: &str, text: &str) -> Result<(), RenderError> {
        if let Some(e) = gosyntax::check(text) {
            return Err(RenderError::Template(format!(
                "{shown}:{}: {}",
                e.line, e.message
            )));
        }
        self.hb.register_template_string(name, text).map_err(|e| {
            let pos = e
                .pos()
                .map(|(l, c)| format!("{l}:{c}: "))
                .unwrap_or_default();
            RenderError::Template(format!("{shown}:{pos}{}", e.reason()))
        })
    }

    pub fn unload(&mut self, name: &str) {
        self.hb.unregister_template(name);
    }

    /// Render template `name` with a resource's prefix and declared keys.
    /// Returns the outcome and every dependency the render touched.
    pub fn render(
        &self,
        name: &str,
        prefix: &str,
        declared: &[String],
    ) -> (Outcome, BTreeSet<Dependency>) {
        {
            let mut s = self.ctx.scope.lock();
            let mut declared = declared.to_vec();
            declared.sort_by_key(|d| std::cmp::Reverse(d.len()));
            *s = Scope {
                template: shown(name).to_string(),
                prefix: prefix.to_string(),
                declared,
                used: BTreeSet::new(),
                missing: BTreeSet::new(),
            };
        }
        let result = self.hb.render(name, &serde_json::json!({}));
        let scope = std::mem::take(&mut *self.ctx.scope.lock());
        let outcome = if !scope.missing.is_empty() {
            Outcome::Missing(scope.missing)
        } else {
            match result {
                Ok(text) => Outcome::Rendered(text),
                Err(e) => {
                    let at = match (e.template_name.as_deref(), e.line_no) {
                        (Some(t), Some(l)) => format!("{}:{l}: ", shown(t)),
                        (Some(t), None) => format!("{}: ", shown(t)),
                        _ => format!("{}: ", shown(name)),
                    };
                    let reason = match e.reason() {
                        handlebars::RenderErrorReason::Other(m) => m.clone(),
                        other => other.to_string(),
                    };
                    Outcome::Failed(format!("{at}{reason}"))
                }
            }
        };
        (outcome, scope.used)
    }
}
