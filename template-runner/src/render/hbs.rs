//! The Handlebars engine: the function table as helpers, output not
//! HTML-escaped (config files are not HTML).

use std::sync::Arc;

use handlebars::{
    Context, Handlebars, Helper as HbHelper, HelperDef, RenderContext, RenderErrorReason,
    ScopedJson,
};
use serde_json::Value;

use super::{shown, Ctx, RenderError};
use crate::helpers::{self, Engines, HelperFn};

struct Fn {
    name: &'static str,
    f: HelperFn,
    ctx: Arc<Ctx>,
}

impl HelperDef for Fn {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &HbHelper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, handlebars::RenderError> {
        let args: Vec<Value> = h.params().iter().map(|p| p.value().clone()).collect();
        match (self.f)(&self.ctx, &args) {
            Ok(v) => Ok(ScopedJson::Derived(v)),
            Err(msg) => Err(RenderErrorReason::Other(format!("{}: {msg}", self.name)).into()),
        }
    }
}

pub struct Hbs {
    hb: Handlebars<'static>,
}

impl Hbs {
    pub fn new(ctx: &Arc<Ctx>) -> Self {
        let mut hb = Handlebars::new();
        hb.register_escape_fn(handlebars::no_escape);
        for h in helpers::all() {
            if matches!(h.engines, Engines::Both | Engines::Handlebars) {
                hb.register_helper(
                    h.name,
                    Box::new(Fn {
                        name: h.name,
                        f: h.f,
                        ctx: ctx.clone(),
                    }),
                );
            }
        }
        Self { hb }
    }

    pub fn load(&mut self, name: &str, shown: &str, text: &str) -> Result<(), RenderError> {
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

    /// Render `name`; the error names the file and line.
    pub fn render(&self, name: &str) -> Result<String, String> {
        self.hb.render(name, &serde_json::json!({})).map_err(|e| {
            let at = match (e.template_name.as_deref(), e.line_no) {
                (Some(t), Some(l)) => format!("{}:{l}: ", shown(t)),
                (Some(t), None) => format!("{}: ", shown(t)),
                _ => format!("{}: ", shown(name)),
            };
            let reason = match e.reason() {
                handlebars::RenderErrorReason::Other(m) => m.clone(),
                other => other.to_string(),
            };
            format!("{at}{reason}")
        })
    }
}
