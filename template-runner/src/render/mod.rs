//! Rendering templates: Handlebars ([`hbs`]) or Go text/template ([`go`]),
//! with one function table ([`crate::helpers`]) registered by both.
//!
//! Functions read fetched data from the [`DataStore`] and record every
//! dependency they touch, so a template's dependencies are discovered by
//! rendering it (consul-template style) in addition to the `keys` a confd
//! resource declares. A render that touched data not fetched yet (or that
//! waits for data, like consul-template's `key` on an absent key) is
//! discarded, never written: the runner fetches and renders again.

pub mod go;
pub mod hbs;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::dependency::{Data, Dependency};
use crate::gosyntax::{self, Engine};
use crate::helpers::Flavor;

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

/// Per-render state the functions read and fill.
#[derive(Default)]
pub struct Scope {
    pub template: String,
    /// confd `prefix` of the resource, joined to every key.
    pub prefix: String,
    /// Declared KV prefixes (`keys`), longest first.
    pub declared: Vec<String>,
    pub flavor: Flavor,
    /// Rendering with the Go engine.
    pub go: bool,
    pub used: BTreeSet<Dependency>,
    /// Not fetched yet, or waited for: the render is not written.
    pub missing: BTreeSet<Dependency>,
}

pub struct Ctx {
    pub store: Arc<DataStore>,
    pub scope: Mutex<Scope>,
    /// `plugin` may run programs (`-enable-plugin`).
    pub plugins: bool,
}

impl Ctx {
    pub fn is_go(&self) -> bool {
        self.scope.lock().go
    }

    pub fn plugins_enabled(&self) -> bool {
        self.plugins
    }
}

/// The result of rendering one template.
#[derive(Debug)]
pub enum Outcome {
    Rendered(String),
    /// Data for these dependencies has not arrived yet (or is waited for).
    Missing(BTreeSet<Dependency>),
    Failed(String),
}

/// The file a compiled template came from: internal names are
/// `<src>#<generation>-<index>` (so a reload can compile next to the old
/// set); logs and errors show the src path.
pub fn shown(name: &str) -> &str {
    name.rsplit_once('#').map_or(name, |(src, _)| src)
}

/// How one template is read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TemplateOptions {
    /// `engine = "go"|"handlebars"`; else chosen from the file (see
    /// [`gosyntax::select`]).
    pub engine: Option<Engine>,
    pub flavor: Flavor,
    /// Go delimiters other than `{{ }}` (consul-template's
    /// `left_delimiter`/`right_delimiter`).
    pub delims: Option<(String, String)>,
    /// Go: a missing map key fails the render (`error_on_missing_key`).
    pub error_on_missing_key: bool,
}

/// Renderer-wide settings.
#[derive(Clone, Copy, Debug, Default)]
pub struct RenderSettings {
    pub plugins: bool,
}

/// Compiled templates of both engines and the function set.
pub struct Renderer {
    hb: hbs::Hbs,
    go: go::GoTemplates,
    /// name -> (engine, flavor)
    loaded: HashMap<String, (Engine, Flavor)>,
    ctx: Arc<Ctx>,
}

impl Renderer {
    pub fn new(store: Arc<DataStore>) -> Self {
        Self::with_settings(store, RenderSettings::default())
    }

    pub fn with_settings(store: Arc<DataStore>, settings: RenderSettings) -> Self {
        let ctx = Arc::new(Ctx {
            store,
            scope: Mutex::new(Scope::default()),
            plugins: settings.plugins,
        });
        Self {
            hb: hbs::Hbs::new(&ctx),
            go: go::GoTemplates::new(&ctx),
            loaded: HashMap::new(),
            ctx,
        }
    }

    /// Load and compile `path` under `name`; returns the engine chosen.
    pub fn load(
        &mut self,
        name: &str,
        path: &Path,
        opts: &TemplateOptions,
    ) -> Result<Engine, RenderError> {
        let text = std::fs::read_to_string(path).map_err(|source| RenderError::Read {
            path: path.display().to_string(),
            source,
        })?;
        self.load_str(name, &path.display().to_string(), &text, opts)
    }

    pub fn load_str(
        &mut self,
        name: &str,
        shown: &str,
        text: &str,
        opts: &TemplateOptions,
    ) -> Result<Engine, RenderError> {
        let engine = match opts.engine {
            Some(e) => e,
            None => gosyntax::select(Path::new(shown), text)
                .map_err(|e| RenderError::Template(format!("{shown}: {e}")))?,
        };
        match engine {
            Engine::Handlebars => self.hb.load(name, shown, text)?,
            Engine::Go => self.go.load(name, shown, text, opts)?,
        }
        // Handlebars helpers keep their own (confd) argument orders.
        let flavor = match engine {
            Engine::Go => opts.flavor,
            Engine::Handlebars => Flavor::Confd,
        };
        self.loaded.insert(name.to_string(), (engine, flavor));
        Ok(engine)
    }

    pub fn unload(&mut self, name: &str) {
        match self.loaded.remove(name) {
            Some((Engine::Handlebars, _)) => self.hb.unload(name),
            Some((Engine::Go, _)) => self.go.unload(name),
            None => {}
        }
    }

    /// Render template `name` with a resource's prefix and declared keys.
    /// Returns the outcome and every dependency the render touched.
    pub fn render(
        &self,
        name: &str,
        prefix: &str,
        declared: &[String],
    ) -> (Outcome, BTreeSet<Dependency>) {
        let Some(&(engine, flavor)) = self.loaded.get(name) else {
            let msg = format!("{}: template not loaded", shown(name));
            return (Outcome::Failed(msg), BTreeSet::new());
        };
        {
            let mut s = self.ctx.scope.lock();
            let mut declared = declared.to_vec();
            declared.sort_by_key(|d| std::cmp::Reverse(d.len()));
            *s = Scope {
                template: shown(name).to_string(),
                prefix: prefix.to_string(),
                declared,
                flavor,
                go: engine == Engine::Go,
                used: BTreeSet::new(),
                missing: BTreeSet::new(),
            };
        }
        let result = match engine {
            Engine::Handlebars => self.hb.render(name),
            Engine::Go => self.go.render(name),
        };
        let scope = std::mem::take(&mut *self.ctx.scope.lock());
        let outcome = if !scope.missing.is_empty() {
            Outcome::Missing(scope.missing)
        } else {
            match result {
                Ok(text) => Outcome::Rendered(text),
                Err(e) => Outcome::Failed(e),
            }
        };
        (outcome, scope.used)
    }
}

#[cfg(test)]
mod tests;
