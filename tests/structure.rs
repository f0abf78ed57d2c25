//! Guards on the source's shape, read with `syn` (no binaries run):
//!
//! - the agent's modules form no import circle: a file that names another
//!   file's item (by `use` or by path) depends on it, and the dependency
//!   graph of `agent/src` has no cycle. Naming a type alias does not count
//!   (an alias is a name, not code one must read first);
//! - no non-test function in the workspace's crates is over 150 lines.
//!
//! `cargo test -p tribune-tests --test structure -- --nocapture` prints
//! the graph's layers (each file's depth) and the longest functions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

const MAX_FN_LINES: usize = 150;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `#[cfg(test)]` or `#[test]`.
fn is_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        if a.path().is_ident("test") {
            return true;
        }
        if !a.path().is_ident("cfg") {
            return false;
        }
        let mut test = false;
        let _ = a.parse_nested_meta(|m| {
            if m.path.is_ident("test") {
                test = true;
            }
            Ok(())
        });
        test
    })
}

fn parse(path: &Path) -> syn::File {
    let src = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    syn::parse_file(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One module of the crate: the file it lives in, the items it defines
/// and the names it imports.
#[derive(Default, Debug)]
struct Module {
    file: usize,
    children: BTreeMap<String, Vec<String>>,
    /// Items defined here, `true` for type aliases.
    items: HashMap<String, bool>,
    /// Imported names (`use a::b as c;` -> c: [a, b], relative as written).
    imports: HashMap<String, Vec<String>>,
    globs: Vec<Vec<String>>,
}

struct Crate {
    files: Vec<PathBuf>,
    modules: BTreeMap<Vec<String>, Module>,
    /// Raw references per file: (module they appear in, path as written).
    refs: Vec<Vec<(Vec<String>, Vec<String>)>>,
}

fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(String, Vec<String>)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            let mut full = prefix.clone();
            if name != "self" {
                full.push(name.clone());
                out.push((name, full));
            } else if let Some(last) = prefix.last() {
                out.push((last.clone(), full));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut full = prefix.clone();
            if r.ident != "self" {
                full.push(r.ident.to_string());
            }
            out.push((r.rename.to_string(), full));
        }
        syn::UseTree::Glob(_) => out.push(("*".into(), prefix.clone())),
        syn::UseTree::Group(g) => {
            for t in &g.items {
                use_paths(t, prefix, out);
            }
        }
    }
}

/// Collects every path written in non-test code.
struct Paths<'a> {
    out: &'a mut Vec<Vec<String>>,
}

impl<'ast> Visit<'ast> for Paths<'_> {
    fn visit_path(&mut self, p: &'ast syn::Path) {
        self.out
            .push(p.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, p);
    }
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        // Inline modules are walked as modules of their own.
        let _ = m;
    }
    fn visit_item_use(&mut self, _: &'ast syn::ItemUse) {}
    fn visit_attribute(&mut self, _: &'ast syn::Attribute) {}
    // `pub(super)` names who may see an item, not something it uses.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if !is_test(&f.attrs) {
            syn::visit::visit_item_fn(self, f);
        }
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if !is_test(&f.attrs) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }
    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Paths inside macro calls (`tokio::select!`, `format!`) are tokens:
        // take the ones that parse as expressions or statements.
        if let Ok(e) = m.parse_body_with(
            syn::punctuated::Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated,
        ) {
            for x in e {
                self.visit_expr(&x);
            }
        }
    }
}

impl Crate {
    fn load(src: &Path) -> Self {
        let mut c = Crate {
            files: Vec::new(),
            modules: BTreeMap::new(),
            refs: Vec::new(),
        };
        c.add_file(src.join("lib.rs"), vec![]);
        c
    }

    fn add_file(&mut self, path: PathBuf, module: Vec<String>) {
        let f = parse(&path);
        let file = self.files.len();
        self.files.push(path.clone());
        self.refs.push(Vec::new());
        // a/mod.rs and lib.rs hold children in a/; a.rs holds them in a/ too.
        let dir = match path.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs") | Some("lib.rs") | Some("main.rs") => {
                path.parent().unwrap().to_path_buf()
            }
            _ => path.with_extension(""),
        };
        self.add_items(&f.items, module, file, &dir);
    }

    fn add_items(&mut self, items: &[syn::Item], module: Vec<String>, file: usize, dir: &Path) {
        let mut m = Module {
            file,
            ..Default::default()
        };
        let mut refs = Vec::new();
        let mut subs = Vec::new();
        for item in items {
            let (attrs, name, alias) = match item {
                syn::Item::Const(i) => (&i.attrs, Some(i.ident.to_string()), false),
                syn::Item::Enum(i) => (&i.attrs, Some(i.ident.to_string()), false),
                syn::Item::Fn(i) => (&i.attrs, Some(i.sig.ident.to_string()), false),
                syn::Item::Static(i) => (&i.attrs, Some(i.ident.to_string()), false),
                syn::Item::Struct(i) => (&i.attrs, Some(i.ident.to_string()), false),
                syn::Item::Trait(i) => (&i.attrs, Some(i.ident.to_string()), false),
                syn::Item::Type(i) => (&i.attrs, Some(i.ident.to_string()), true),
                syn::Item::Union(i) => (&i.attrs, Some(i.ident.to_string()), false),
                syn::Item::Impl(i) => (&i.attrs, None, false),
                syn::Item::Macro(i) => (&i.attrs, i.ident.as_ref().map(|x| x.to_string()), false),
                syn::Item::Mod(i) => (&i.attrs, None, false),
                syn::Item::Use(i) => (&i.attrs, None, false),
                _ => continue,
            };
            if is_test(attrs) {
                continue;
            }
            if let Some(n) = name {
                m.items.insert(n, alias);
            }
            match item {
                syn::Item::Use(u) => {
                    let mut out = Vec::new();
                    use_paths(&u.tree, &mut Vec::new(), &mut out);
                    for (name, path) in out {
                        refs.push(path.clone());
                        if name == "*" {
                            m.globs.push(path);
                        } else {
                            m.imports.insert(name, path);
                        }
                    }
                }
                syn::Item::Mod(md) => {
                    let name = md.ident.to_string();
                    let mut child = module.clone();
                    child.push(name.clone());
                    m.children.insert(name.clone(), child.clone());
                    subs.push((md, child));
                }
                other => {
                    let mut out = Vec::new();
                    Paths { out: &mut out }.visit_item(other);
                    refs.extend(out);
                }
            }
        }
        for r in refs {
            self.refs[file].push((module.clone(), r));
        }
        self.modules.insert(module.clone(), m);
        for (md, child) in subs {
            let name = md.ident.to_string();
            match &md.content {
                Some((_, items)) => self.add_items(items, child, file, &dir.join(&name)),
                None => {
                    let a = dir.join(format!("{name}.rs"));
                    let b = dir.join(&name).join("mod.rs");
                    let path = if a.exists() { a } else { b };
                    self.add_file(path, child);
                }
            }
        }
    }

    /// The file a path written in `module` leads to, if it is in this crate
    /// and not a type alias.
    fn resolve(&self, module: &[String], path: &[String], depth: usize) -> Option<usize> {
        if depth > 8 || path.is_empty() {
            return None;
        }
        let mut at: Vec<String> = match path[0].as_str() {
            "crate" => vec![],
            "self" => module.to_vec(),
            "super" => {
                let mut m = module.to_vec();
                let mut rest = path;
                while rest.first().map(String::as_str) == Some("super") {
                    m.pop();
                    rest = &rest[1..];
                }
                return self.resolve_from(m, rest, depth);
            }
            first => {
                let here = self.modules.get(module)?;
                if here.children.contains_key(first) {
                    module.to_vec()
                } else if let Some(imp) = here.imports.get(first) {
                    let mut p = imp.clone();
                    p.extend_from_slice(&path[1..]);
                    return self.resolve(module, &p, depth + 1);
                } else {
                    return None;
                }
            }
        };
        let rest = if matches!(path[0].as_str(), "crate" | "self") {
            &path[1..]
        } else {
            path
        };
        if rest.is_empty() {
            return self.modules.get(&at).map(|m| m.file);
        }
        at.shrink_to_fit();
        self.resolve_from(at, rest, depth)
    }

    fn resolve_from(&self, mut at: Vec<String>, rest: &[String], depth: usize) -> Option<usize> {
        let mut i = 0;
        while i < rest.len() {
            let m = self.modules.get(&at)?;
            match m.children.get(&rest[i]) {
                Some(child) => {
                    at = child.clone();
                    i += 1;
                }
                None => break,
            }
        }
        let m = self.modules.get(&at)?;
        if i == rest.len() {
            return Some(m.file);
        }
        let name = &rest[i];
        match m.items.get(name) {
            Some(true) => None,
            Some(false) => Some(m.file),
            None => match m.imports.get(name) {
                Some(imp) => {
                    let mut p = imp.clone();
                    p.extend_from_slice(&rest[i + 1..]);
                    self.resolve(&at, &p, depth + 1)
                }
                // Through a glob, or a variant/associated item: the module itself.
                None => Some(m.file),
            },
        }
    }

    fn edges(&self) -> BTreeMap<usize, BTreeSet<usize>> {
        let mut g: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
        for (file, refs) in self.refs.iter().enumerate() {
            g.entry(file).or_default();
            for (module, path) in refs {
                if let Some(to) = self.resolve(module, path, 0) {
                    if to != file {
                        g.entry(file).or_default().insert(to);
                    }
                }
            }
        }
        g
    }

    fn name(&self, file: usize, base: &Path) -> String {
        self.files[file]
            .strip_prefix(base)
            .unwrap_or(&self.files[file])
            .display()
            .to_string()
    }
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(g: &BTreeMap<usize, BTreeSet<usize>>) -> Vec<Vec<usize>> {
    struct T<'a> {
        g: &'a BTreeMap<usize, BTreeSet<usize>>,
        index: HashMap<usize, usize>,
        low: HashMap<usize, usize>,
        stack: Vec<usize>,
        on: BTreeSet<usize>,
        next: usize,
        out: Vec<Vec<usize>>,
    }
    impl T<'_> {
        fn visit(&mut self, v: usize) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on.insert(v);
            for &w in self.g.get(&v).into_iter().flatten() {
                if !self.index.contains_key(&w) {
                    self.visit(w);
                    let l = self.low[&v].min(self.low[&w]);
                    self.low.insert(v, l);
                } else if self.on.contains(&w) {
                    let l = self.low[&v].min(self.index[&w]);
                    self.low.insert(v, l);
                }
            }
            if self.low[&v] == self.index[&v] {
                let mut scc = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on.remove(&w);
                    scc.push(w);
                    if w == v {
                        break;
                    }
                }
                if scc.len() > 1 {
                    self.out.push(scc);
                }
            }
        }
    }
    let mut t = T {
        g,
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in g.keys() {
        if !t.index.contains_key(&v) {
            t.visit(v);
        }
    }
    t.out
}

#[test]
fn agent_modules_form_no_import_circle() {
    let src = root().join("agent/src");
    let c = Crate::load(&src);
    let g = c.edges();
    let found = cycles(&g);
    // Layers: a file's depth is one more than the deepest file it uses.
    if found.is_empty() {
        let mut depth: BTreeMap<usize, usize> = BTreeMap::new();
        fn d(
            v: usize,
            g: &BTreeMap<usize, BTreeSet<usize>>,
            memo: &mut BTreeMap<usize, usize>,
        ) -> usize {
            if let Some(&x) = memo.get(&v) {
                return x;
            }
            let x = g[&v].iter().map(|&w| d(w, g, memo) + 1).max().unwrap_or(0);
            memo.insert(v, x);
            x
        }
        let mut by: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for &v in g.keys() {
            by.entry(d(v, &g, &mut depth))
                .or_default()
                .push(c.name(v, &src));
        }
        for (k, v) in by {
            println!("layer {k}: {}", v.join(" "));
        }
    }
    let mut report = String::new();
    for scc in &found {
        let set: BTreeSet<usize> = scc.iter().copied().collect();
        report.push_str(&format!("circle of {} files:\n", scc.len()));
        for &v in scc {
            let to: Vec<String> = g[&v]
                .iter()
                .filter(|w| set.contains(w))
                .map(|&w| c.name(w, &src))
                .collect();
            report.push_str(&format!("  {} -> {}\n", c.name(v, &src), to.join(", ")));
        }
    }
    assert!(found.is_empty(), "import circles in agent/src:\n{report}");
}

/// Non-test functions of a file and their lengths in lines.
struct Fns {
    out: Vec<(String, usize, usize)>,
}

impl<'ast> Visit<'ast> for Fns {
    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        if is_test(&f.attrs) {
            return;
        }
        self.record(&f.sig.ident, &f.block);
        syn::visit::visit_item_fn(self, f);
    }
    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        if is_test(&f.attrs) {
            return;
        }
        self.record(&f.sig.ident, &f.block);
        syn::visit::visit_impl_item_fn(self, f);
    }
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if !is_test(&m.attrs) {
            syn::visit::visit_item_mod(self, m);
        }
    }
    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !is_test(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }
}

impl Fns {
    fn record(&mut self, name: &syn::Ident, body: &syn::Block) {
        use syn::spanned::Spanned;
        let start = name.span().start().line;
        let end = body.span().end().line;
        self.out.push((name.to_string(), start, end + 1 - start));
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_function_over_150_lines() {
    let root = root();
    let mut files = Vec::new();
    for krate in workspace_crates(&root) {
        rust_files(&root.join(krate).join("src"), &mut files);
    }
    files.sort();
    let mut all = Vec::new();
    for f in &files {
        // Unit-test files of their own (`mod tests;` under cfg(test)).
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let mut v = Fns { out: Vec::new() };
        v.visit_file(&parse(f));
        let name = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        all.extend(
            v.out
                .into_iter()
                .map(|(n, line, len)| (len, format!("{name}:{line} {n}"))),
        );
    }
    all.sort_by_key(|e| std::cmp::Reverse(e.0));
    for (len, what) in all.iter().take(10) {
        println!("{len:4} lines: {what}");
    }
    let long: Vec<String> = all
        .iter()
        .filter(|(len, _)| *len > MAX_FN_LINES)
        .map(|(len, what)| format!("{len} lines: {what}"))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// The workspace members that hold non-test code (`tests/` is all tests).
fn workspace_crates(root: &Path) -> Vec<String> {
    let toml = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
    let line = toml
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members");
    line.split('"')
        .skip(1)
        .step_by(2)
        .filter(|m| *m != "tests")
        .map(str::to_string)
        .collect()
}
