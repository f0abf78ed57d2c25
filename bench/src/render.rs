//! `template-render`: the nginx template of `template-cpu --form`, rendered
//! in-process by tribune-template's two engines over the same data (10
//! healthy `web` instances with one check each, one key): time and CPU per
//! render, without the agent, the network or the file write. Rounds
//! alternate the engines so a busy neighbour affects both alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Result};
use tribune_template::dependency::{Data, Dependency, Instance};
use tribune_template::gosyntax::Engine;
use tribune_template::render::{DataStore, Outcome, Renderer, TemplateOptions};

use crate::args::Args;
use crate::procfs::Cpu;
use crate::result;
use crate::template::Form;

pub struct Opts {
    iterations: usize,
    rounds: usize,
}

impl Opts {
    pub fn from_args(args: &mut Args) -> Result<Self> {
        let o = Self {
            iterations: args.get("iterations", 20_000)?,
            rounds: args.get("rounds", 5)?,
        };
        if o.iterations == 0 || o.rounds == 0 {
            bail!("--iterations and --rounds must be at least 1");
        }
        Ok(o)
    }
}

const KEY: &str = "bench/t0/k";

fn instance(j: usize) -> Instance {
    let check = serde_json::json!({
        "Node": "bench", "CheckID": "serfHealth", "Name": "Serf Health Status",
        "Status": "passing", "ServiceID": "", "ServiceName": "",
    });
    Instance {
        node: "bench".into(),
        node_id: "0b6e3b2c-0000-4000-8000-000000000001".into(),
        node_address: "127.0.0.1".into(),
        node_datacenter: "dc1".into(),
        address: format!("10.0.0.{j}"),
        id: format!("web{j}"),
        name: "web".into(),
        tags: vec!["v1".into()],
        port: 8000 + j as u64,
        status: "passing".into(),
        checks: vec![check],
        ..Default::default()
    }
}

/// A renderer holding the nginx template in `form`, over fixed data.
fn renderer(form: Form) -> Result<(Renderer, String)> {
    let store = Arc::new(DataStore::default());
    store.put(
        &Dependency::KvPrefix("bench/t0/".into()),
        Data::Kv(BTreeMap::from([(
            KEY.to_string(),
            "1024".to_string().into(),
        )])),
    );
    store.put(
        &Dependency::Service {
            name: "web".into(),
            tag: None,
            dc: None,
            near: None,
        },
        Data::Service((1..=10).map(instance).collect()),
    );
    let mut r = Renderer::new(store);
    let engine = match form {
        Form::Go => Engine::Go,
        Form::Handlebars => Engine::Handlebars,
    };
    let opts = TemplateOptions {
        engine: Some(engine),
        ..Default::default()
    };
    let name = format!("nginx-{}.tmpl#0", form.name());
    r.load_str(&name, &name, &form.template(KEY), &opts)?;
    Ok((r, name))
}

fn render_once(r: &Renderer, name: &str, declared: &[String]) -> Result<String> {
    match r.render(name, "", declared).0 {
        Outcome::Rendered(s) => Ok(s),
        other => bail!("{name}: {other:?}"),
    }
}

pub async fn run(o: Opts) -> Result<()> {
    let declared = vec!["bench/t0/".to_string()];
    let forms = [Form::Handlebars, Form::Go];
    let mut built = Vec::new();
    for f in forms {
        built.push(renderer(f)?);
    }
    let outs: Vec<String> = built
        .iter()
        .map(|(r, n)| render_once(r, n, &declared))
        .collect::<Result<_>>()?;
    if outs[0] != outs[1] {
        bail!("the two forms differ:\n{}\n---\n{}", outs[0], outs[1]);
    }
    result("template_render_bytes", outs[0].len());
    let pid = std::process::id();
    // Per form: the best (least disturbed) round's wall and CPU ns per render.
    let mut best = [(u128::MAX, u64::MAX); 2];
    for _ in 0..o.rounds {
        for (i, (r, n)) in built.iter().enumerate() {
            let c0 = Cpu::read(pid)?;
            let t0 = Instant::now();
            for _ in 0..o.iterations {
                std::hint::black_box(render_once(r, n, &declared)?);
            }
            let wall = t0.elapsed().as_nanos() / o.iterations as u128;
            let (_, cpu_us) = Cpu::read(pid)?.since(&c0);
            let cpu = cpu_us * 1000 / o.iterations as u64;
            best[i] = (best[i].0.min(wall), best[i].1.min(cpu));
        }
    }
    for (i, f) in forms.iter().enumerate() {
        result(&format!("template_render_{}_ns", f.name()), best[i].0);
        result(&format!("template_render_{}_cpu_ns", f.name()), best[i].1);
    }
    result(
        "template_render_go_vs_handlebars",
        format!("{:.2}", best[1].0 as f64 / best[0].0 as f64),
    );
    result("template_render_iterations", o.iterations);
    result("template_render_rounds", o.rounds);
    Ok(())
}
