//! The Go text/template engine, on the `gotmpl` crate (pinned; see the
//! README's "Go templates" section for what we add around it).
//!
//! gotmpl covers the language (actions, pipelines, variables, `if`/`range`/
//! `with` with `else`, `break`/`continue`, `define`/`template`/`block`,
//! trim markers, Go's `printf`, `missingkey`, maps in sorted key order).
//! It has no method calls on values, so a parsed template is rewritten
//! before it is compiled: a call `X.M args...` (a field chain with
//! arguments, or a known argument-less method like `.Unix`) becomes
//! `__method X "M" args...`, which dispatches on the receiver
//! (`.Tags.Contains "x"`, `scratch.Set "k" v`, `(datetime).Format "..."`).
//! The same pass gives `fn.Method args` Go's meaning (the function is called
//! without arguments, the method with them) and reports an unknown function
//! at load time with its line, as Go's parser does.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gotmpl::parse::{CommandNode, Expr, ListNode, Node, Parser, PipeNode, Pos, SmolStr};
use gotmpl::{MissingKey, Template, TemplateError, Value};
use parking_lot::Mutex;

use super::{Ctx, RenderError, TemplateOptions};
use crate::helpers::{self, gotime, Engines};

/// Name of the compiled entry template.
const MAIN: &str = "__tribune_main__";
const METHOD: &str = "__method";
/// Starts the hidden first argument carrying a call's line (added by the
/// rewrite, removed before the function sees its arguments), and brackets
/// the line in an error message.
const LINE_MARK: char = '\u{1}';
/// Nesting limit for `executeTemplate`.
const MAX_EXECUTE_DEPTH: usize = 32;
/// Method names taking no arguments that a template calls (`(datetime).Unix`).
const ZERO_ARG_METHODS: &[&str] = &["Unix", "UnixNano", "UTC", "Local"];
/// text/template's own functions.
const BUILTINS: &[&str] = &[
    "and", "call", "eq", "ge", "gt", "html", "index", "js", "le", "len", "lt", "ne", "not", "or",
    "print", "printf", "println", "slice", "urlquery",
];

/// consul-template's `scratch`: a per-render key/value store.
type Scratch = Arc<Mutex<BTreeMap<String, Value>>>;

/// State shared by the registered functions during one render.
#[derive(Default)]
struct Exec {
    current: Mutex<Option<Arc<Template>>>,
    scratch: Scratch,
    depth: AtomicUsize,
}

pub struct GoTemplates {
    /// A template holding every function; each compiled template is a clone
    /// of it (the function map is shared, not copied).
    base: Template,
    exec: Arc<Exec>,
    templates: HashMap<String, Arc<Template>>,
}

fn exec_err(msg: impl Into<String>) -> TemplateError {
    TemplateError::Exec(msg.into())
}

/// JSON (the function table's values) to a template value.
pub fn to_go(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::Uint(u),
            _ => Value::Float(n.as_f64().unwrap_or(0.0)),
        },
        serde_json::Value::String(s) => Value::String(Arc::from(s.as_str())),
        serde_json::Value::Array(a) => Value::List(a.iter().map(to_go).collect()),
        serde_json::Value::Object(m) => Value::Map(Arc::new(
            m.iter()
                .map(|(k, v)| (Arc::from(k.as_str()), to_go(v)))
                .collect(),
        )),
    }
}

/// A template value as JSON (functions become null).
pub fn from_go(v: &Value) -> serde_json::Value {
    match v {
        Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Int(i) => (*i).into(),
        Value::Uint(u) => (*u).into(),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::String(s) => serde_json::Value::String(s.to_string()),
        Value::List(l) => serde_json::Value::Array(l.iter().map(from_go).collect()),
        Value::Map(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.to_string(), from_go(v))).collect())
        }
    }
}

fn str_arg(args: &[Value], i: usize, method: &str) -> Result<String, TemplateError> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.to_string()),
        Some(v) => Ok(v.to_string()),
        None => Err(exec_err(format!("{method}: missing argument {}", i + 1))),
    }
}

/// The scratch object's methods (consul-template's `Scratch`).
fn scratch_method(s: &Scratch, m: &str, args: &[Value]) -> Result<Value, TemplateError> {
    let mut map = s.lock();
    let key = str_arg(args, 0, m)?;
    let empty = Value::String(Arc::from(""));
    match m {
        "Key" => Ok(Value::Bool(map.contains_key(&key))),
        "Get" => Ok(map.get(&key).cloned().unwrap_or(Value::Nil)),
        "Set" | "SetX" => {
            let v = args.get(1).cloned().unwrap_or(Value::Nil);
            if m == "Set" || !map.contains_key(&key) {
                map.insert(key, v);
            }
            Ok(empty)
        }
        "MapSet" | "MapSetX" => {
            let k = str_arg(args, 1, m)?;
            let v = args.get(2).cloned().unwrap_or(Value::Nil);
            let mut inner: BTreeMap<Arc<str>, Value> = match map.get(&key) {
                Some(Value::Map(im)) => (**im).clone(),
                _ => BTreeMap::new(),
            };
            if m == "MapSet" || !inner.contains_key(k.as_str()) {
                inner.insert(Arc::from(k.as_str()), v);
            }
            map.insert(key, Value::Map(Arc::new(inner)));
            Ok(empty)
        }
        "MapValues" => match map.get(&key) {
            Some(Value::Map(im)) => Ok(Value::List(im.values().cloned().collect())),
            _ => Ok(Value::List(Arc::from(Vec::new()))),
        },
        other => Err(exec_err(format!("scratch has no method {other}"))),
    }
}

/// `ServiceTags` methods on a list: `Contains x`, `ContainsAll list`, ...
fn list_method(l: &[Value], m: &str, args: &[Value]) -> Result<Value, TemplateError> {
    let has = |x: &Value| l.iter().any(|e| e == x || e.to_string() == x.to_string());
    let wanted: Vec<Value> = match args {
        [Value::List(w)] => w.to_vec(),
        other => other.to_vec(),
    };
    let r = match m {
        "Contains" => has(args.first().unwrap_or(&Value::Nil)),
        "ContainsAll" => wanted.iter().all(has),
        "ContainsAny" => wanted.iter().any(has),
        "ContainsNone" => !wanted.iter().any(has),
        "ContainsNotAll" => !wanted.iter().all(has),
        other => return Err(exec_err(format!("can't call method {other} on a list"))),
    };
    Ok(Value::Bool(r))
}

/// A time as `datetime` gives it: `Format layout`, `Unix`, `UTC`, `Local`.
fn time_method(s: &str, m: &str, args: &[Value]) -> Result<Value, TemplateError> {
    let t = gotime::parse_go_string(s)
        .ok_or_else(|| exec_err(format!("can't call method {m} on string {s:?}")))?;
    let out = match m {
        "Format" => gotime::format(&t, &str_arg(args, 0, m)?),
        "Unix" => return Ok(Value::Int(t.timestamp())),
        "UnixNano" => return Ok(Value::Int(t.timestamp_nanos_opt().unwrap_or(0))),
        "UTC" => gotime::format(
            &t.with_timezone(&chrono::Utc).fixed_offset(),
            gotime::GO_STRING,
        ),
        "Local" => gotime::format(
            &t.with_timezone(&chrono::Local).fixed_offset(),
            gotime::GO_STRING,
        ),
        other => return Err(exec_err(format!("time has no method {other}"))),
    };
    Ok(Value::String(Arc::from(out)))
}

/// `__method receiver "Name" args...`.
fn call_method(args: &[Value]) -> Result<Value, TemplateError> {
    let (recv, name, rest) = match args {
        [r, Value::String(n), rest @ ..] => (r, n.as_ref(), rest),
        _ => return Err(exec_err("bad method call")),
    };
    match recv {
        Value::Function(f) => {
            let mut a = vec![Value::String(Arc::from(name))];
            a.extend_from_slice(rest);
            f(&a)
        }
        Value::List(l) => list_method(l, name, rest),
        Value::String(s) => time_method(s, name, rest),
        Value::Map(m) => match m.get(name) {
            Some(Value::Function(f)) => f(rest),
            Some(v) if rest.is_empty() => Ok(v.clone()),
            _ => Err(exec_err(format!(
                "{name} has arguments but cannot be invoked as function"
            ))),
        },
        Value::Nil => Err(exec_err(format!("can't call method {name} on nil"))),
        other => Err(exec_err(format!(
            "can't call method {name} on type {}",
            other.type_name()
        ))),
    }
}

impl GoTemplates {
    pub fn new(ctx: &Arc<Ctx>) -> Self {
        let exec = Arc::new(Exec::default());
        let mut fm = gotmpl::FuncMap::new();
        for h in helpers::all().filter(|h| h.engines == Engines::Both) {
            let (name, f, ctx) = (h.name, h.f, ctx.clone());
            fm.insert(
                name.into(),
                Arc::new(move |args: &[Value]| {
                    let (line, args) = split_line(args);
                    let j: Vec<serde_json::Value> = args.iter().map(from_go).collect();
                    f(&ctx, &j).map(|v| to_go(&v)).map_err(|m| {
                        exec_err(match line {
                            Some(l) => format!("{LINE_MARK}{l}{LINE_MARK}{name}: {m}"),
                            None => format!("{name}: {m}"),
                        })
                    })
                }),
            );
        }
        fm.insert(METHOD.into(), Arc::new(call_method));
        let s = exec.scratch.clone();
        fm.insert(
            "scratch".into(),
            Arc::new(move |_: &[Value]| {
                let s = s.clone();
                Ok(Value::Function(Arc::new(move |a: &[Value]| {
                    let m = str_arg(a, 0, "scratch")?;
                    scratch_method(&s, &m, &a[1..])
                })))
            }),
        );
        let e = exec.clone();
        fm.insert(
            "executeTemplate".into(),
            Arc::new(move |args: &[Value]| execute_template(&e, args)),
        );
        Self {
            base: Template::new(MAIN).funcs(fm),
            exec,
            templates: HashMap::new(),
        }
    }

    fn known(&self, name: &str) -> bool {
        BUILTINS.contains(&name)
            || name == "scratch"
            || name == "executeTemplate"
            || helpers::all().any(|h| h.name == name && h.engines == Engines::Both)
    }

    pub fn load(
        &mut self,
        name: &str,
        shown: &str,
        text: &str,
        opts: &TemplateOptions,
    ) -> Result<(), RenderError> {
        let (ld, rd) = opts
            .delims
            .clone()
            .unwrap_or_else(|| ("{{".into(), "}}".into()));
        // Parse errors already name the file and position (`t.tmpl:3:7: ...`).
        let bad = |e: TemplateError| {
            let msg = clean(&e);
            RenderError::Template(if msg.starts_with(shown) {
                msg
            } else {
                format!("{shown}: {msg}")
            })
        };
        let (mut tree, mut defines) = Parser::with_name(Some(shown), text, &ld, &rd)
            .and_then(|p| p.parse())
            .map_err(bad)?;
        check_closed(shown, text, &ld, &rd, &tree)?;
        let mut rw = Rewriter {
            known: &|n| self.known(n),
            tagged: &|n| helpers::all().any(|h| h.name == n && h.engines == Engines::Both),
            unknown: None,
        };
        rw.list(&mut tree);
        for d in &mut defines {
            rw.list(&mut d.body);
        }
        if let Some((f, line)) = rw.unknown {
            return Err(RenderError::Template(format!(
                "{shown}:{line}: function {f:?} not defined"
            )));
        }
        let mk = if opts.error_on_missing_key {
            MissingKey::Error
        } else {
            MissingKey::ZeroValue
        };
        let mut t = self
            .base
            .clone()
            .missing_key(mk)
            .parse(&format!("{{{{template {MAIN:?} .}}}}"))
            .map_err(bad)?;
        for d in defines {
            t = t.add_parse_tree(d.name.as_str(), d.body);
        }
        t = t.add_parse_tree(MAIN, tree);
        self.templates.insert(name.to_string(), Arc::new(t));
        Ok(())
    }

    pub fn unload(&mut self, name: &str) {
        self.templates.remove(name);
    }

    /// Render `name` with a nil dot, as confd and consul-template do.
    pub fn render(&self, name: &str) -> Result<String, String> {
        let shown = super::shown(name);
        let t = self
            .templates
            .get(name)
            .ok_or_else(|| format!("{shown}: not loaded"))?;
        *self.exec.current.lock() = Some(t.clone());
        self.exec.scratch.lock().clear();
        let out = t.execute_to_string(&Value::Nil);
        *self.exec.current.lock() = None;
        out.map_err(|e| located(shown, &e))
    }
}

/// consul-template `executeTemplate "name" [dot]`: a `define`d template's
/// output as a string.
fn execute_template(e: &Exec, args: &[Value]) -> Result<Value, TemplateError> {
    let name = str_arg(args, 0, "executeTemplate")?;
    if args.len() > 2 {
        return Err(exec_err(format!(
            "executeTemplate: wrong number of arguments, expected 1 or 2, but got {}",
            args.len()
        )));
    }
    let t = e
        .current
        .lock()
        .clone()
        .ok_or_else(|| exec_err("executeTemplate outside a render"))?;
    if e.depth.fetch_add(1, Ordering::SeqCst) >= MAX_EXECUTE_DEPTH {
        e.depth.fetch_sub(1, Ordering::SeqCst);
        return Err(exec_err("executeTemplate: nested too deeply"));
    }
    let dot = args.get(1).cloned().unwrap_or(Value::Nil);
    let r = t.execute_template_to_string(&name, &dot);
    e.depth.fetch_sub(1, Ordering::SeqCst);
    r.map(|s| Value::String(Arc::from(s)))
}

/// gotmpl 0.6.1's parser accepts a block left open at the end of the file
/// (`{{if x}}...` without `{{end}}`) and stops at an `{{end}}` or `{{else}}`
/// outside any block, dropping the rest of the file without a word; Go
/// refuses both. Parsing the text again with a sentinel appended shows
/// either: the sentinel must end the top-level list.
fn check_closed(
    shown: &str,
    text: &str,
    ld: &str,
    rd: &str,
    tree: &ListNode,
) -> Result<(), RenderError> {
    let with = format!("{text}{SENTINEL}");
    let Ok((probe, defines)) =
        Parser::with_name(Some(shown), &with, ld, rd).and_then(|p| p.parse())
    else {
        return Ok(());
    };
    if matches!(probe.nodes.last(), Some(Node::Text(t)) if t.text.ends_with(SENTINEL)) {
        return Ok(());
    }
    let reached = tree.nodes.last().map(node_line).unwrap_or(1);
    // The sentinel inside a block: that block was never closed.
    let open = probe.nodes.last().is_some_and(holds_sentinel)
        || defines
            .iter()
            .any(|d| d.body.nodes.last().is_some_and(holds_sentinel));
    Err(RenderError::Template(if open {
        format!(
            "{shown}: unexpected EOF: a block (if, range, with, define, block) opened at or after line {reached} has no {{{{end}}}}"
        )
    } else {
        format!(
            "{shown}:{reached}: unexpected {{{{end}}}} or {{{{else}}}} outside a block (after this line); the rest of the file would be dropped"
        )
    }))
}

const SENTINEL: &str = "\u{0}tribune-end-of-file\u{0}";

/// Whether the file's end (the sentinel) is the last thing in `n`.
fn holds_sentinel(n: &Node) -> bool {
    match n {
        Node::Text(t) => t.text.ends_with(SENTINEL),
        Node::If(b) | Node::Range(b) | Node::With(b) => b
            .else_body
            .as_ref()
            .unwrap_or(&b.body)
            .nodes
            .last()
            .is_some_and(holds_sentinel),
        Node::List(l) => l.nodes.last().is_some_and(holds_sentinel),
        _ => false,
    }
}

fn node_line(n: &Node) -> usize {
    match n {
        Node::Text(t) => t.pos.line,
        Node::Action(a) => a.pos.line,
        Node::If(b) | Node::Range(b) | Node::With(b) => b.pos.line,
        Node::Template(t) => t.pos.line,
        Node::Define(d) => d.pos.line,
        Node::List(l) => l.pos.line,
        Node::Break(p) | Node::Continue(p) => p.line,
    }
}

/// The line a rewritten call carries as its first argument, and the rest.
fn split_line(args: &[Value]) -> (Option<usize>, &[Value]) {
    match args.first() {
        Some(Value::String(s)) if s.starts_with(LINE_MARK) => {
            (s[LINE_MARK.len_utf8()..].parse().ok(), &args[1..])
        }
        _ => (None, args),
    }
}

/// An error as Go prints it, without gotmpl's "execution error: " prefix.
fn clean(e: &TemplateError) -> String {
    let s = e.to_string();
    let s = s.strip_prefix("execution error: ").unwrap_or(&s);
    s.strip_prefix("template: ").unwrap_or(s).to_string()
}

/// `file: msg`, or `file:line: msg` when a function said where it failed.
fn located(shown: &str, e: &TemplateError) -> String {
    let msg = clean(e);
    if let Some(rest) = msg.strip_prefix(LINE_MARK) {
        if let Some((line, m)) = rest.split_once(LINE_MARK) {
            return format!("{shown}:{line}: {m}");
        }
    }
    format!("{shown}: {msg}")
}

/// The AST pass described in the module docs.
struct Rewriter<'a> {
    known: &'a dyn Fn(&str) -> bool,
    /// Functions of the table, whose calls get their line as a first argument.
    tagged: &'a dyn Fn(&str) -> bool,
    /// The first unknown function and its line.
    unknown: Option<(String, usize)>,
}

impl Rewriter<'_> {
    fn list(&mut self, l: &mut ListNode) {
        for n in &mut l.nodes {
            self.node(n);
        }
    }

    fn node(&mut self, n: &mut Node) {
        match n {
            Node::List(l) => self.list(l),
            Node::Action(a) => self.pipe(&mut a.pipe),
            Node::If(b) | Node::Range(b) | Node::With(b) => {
                self.pipe(&mut b.pipe);
                self.list(&mut b.body);
                if let Some(e) = &mut b.else_body {
                    self.list(e);
                }
            }
            Node::Template(t) => {
                if let Some(p) = &mut t.pipe {
                    self.pipe(p);
                }
            }
            Node::Define(d) => self.list(&mut d.body),
            Node::Text(_) | Node::Break(_) | Node::Continue(_) => {}
        }
    }

    fn pipe(&mut self, p: &mut PipeNode) {
        for (i, c) in p.commands.iter_mut().enumerate() {
            self.command(c, i > 0);
        }
    }

    fn command(&mut self, c: &mut CommandNode, piped: bool) {
        for a in c.args.iter_mut().skip(1) {
            self.arg(a);
        }
        let Some(head) = c.args.first_mut() else {
            return;
        };
        self.check(head);
        let has_args = c.args.len() > 1 || piped;
        if let Some(call) = method_call(&c.args[0], has_args) {
            let rest: Vec<Expr> = c.args.drain(1..).collect();
            c.args = call;
            c.args.extend(rest);
        } else if let Some(head) = c.args.first_mut() {
            self.nested(head);
            if let Expr::Identifier(pos, name) = head {
                if (self.tagged)(name) {
                    let mark = format!("{LINE_MARK}{}", pos.line);
                    let pos = *pos;
                    c.args.insert(1, Expr::String(pos, Arc::from(mark)));
                }
            }
        }
    }

    /// Record an unknown function used as `head`.
    fn check(&mut self, e: &Expr) {
        let name = match e {
            Expr::Identifier(_, n) => n,
            Expr::Chain(_, inner, _) => match inner.as_ref() {
                Expr::Identifier(_, n) => n,
                _ => return,
            },
            _ => return,
        };
        if self.unknown.is_none() && !(self.known)(name) {
            self.unknown = Some((name.to_string(), e.pos().line));
        }
    }

    /// Pipelines inside an expression.
    fn nested(&mut self, a: &mut Expr) {
        match a {
            Expr::Pipe(_, p) => self.pipe(p),
            Expr::Chain(_, inner, _) => self.arg(inner),
            _ => {}
        }
    }

    fn arg(&mut self, a: &mut Expr) {
        self.check(a);
        self.nested(a);
        if let Some(call) = method_call(a, false) {
            let pos = a.pos();
            *a = Expr::Pipe(
                pos,
                PipeNode {
                    pos,
                    decl: vec![],
                    commands: vec![CommandNode { pos, args: call }],
                    is_assign: false,
                },
            );
        }
    }
}

/// `X.M` as `[__method, X, "M"]` when it is a method call: it has
/// arguments, or `M` is a known argument-less method.
fn method_call(e: &Expr, has_args: bool) -> Option<Vec<Expr>> {
    let fields = match e {
        Expr::Field(_, f) | Expr::Variable(_, _, f) | Expr::Chain(_, _, f) => f,
        _ => return None,
    };
    let last = fields.last()?;
    if !has_args && !ZERO_ARG_METHODS.contains(&last.as_str()) {
        return None;
    }
    let pos: Pos = e.pos();
    let rest: Vec<SmolStr> = fields[..fields.len() - 1].to_vec();
    let base = match e {
        Expr::Field(p, _) if rest.is_empty() => Expr::Dot(*p),
        Expr::Field(p, _) => Expr::Field(*p, rest),
        Expr::Variable(p, n, _) => Expr::Variable(*p, n.clone(), rest),
        Expr::Chain(_, inner, _) if rest.is_empty() => (**inner).clone(),
        Expr::Chain(p, inner, _) => Expr::Chain(*p, inner.clone(), rest),
        _ => return None,
    };
    Some(vec![
        Expr::Identifier(pos, SmolStr::new(METHOD)),
        base,
        Expr::String(pos, Arc::from(last.as_str())),
    ])
}
