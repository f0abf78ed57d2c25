//! `tribune catalog services|nodes|datacenters`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::Api;
use super::common::{fail, get_json, table, HttpOpts, SimpleArgs};

#[derive(Args, Debug)]
pub struct CatalogArgs {
    #[command(subcommand)]
    pub cmd: CatalogCmd,
}

#[derive(Subcommand, Debug)]
pub enum CatalogCmd {
    /// List services.
    Services(CatalogListArgs),
    /// List nodes.
    Nodes(SimpleArgs),
    /// List datacenters.
    Datacenters(SimpleArgs),
}

#[derive(Args, Debug)]
pub struct CatalogListArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// Show tags too.
    #[arg(long)]
    tags: bool,
}

pub fn run(a: CatalogArgs) -> ExitCode {
    match a.cmd {
        CatalogCmd::Services(c) => match get_json(&Api::new(&c.http), "catalog/services") {
            Ok(Value::Object(m)) => {
                for (name, tags) in m {
                    if c.tags {
                        let t: Vec<&str> = tags
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        println!("{name}  {}", t.join(","));
                    } else {
                        println!("{name}");
                    }
                }
                ExitCode::SUCCESS
            }
            Ok(_) => fail("Error listing services: unexpected response"),
            Err(e) => fail(format!("Error listing services: {e}")),
        },
        CatalogCmd::Nodes(s) => match get_json(&Api::new(&s.http), "catalog/nodes") {
            Ok(v) => {
                let mut rows = vec![["Node", "ID", "Address", "DC"].map(String::from).to_vec()];
                for n in v.as_array().into_iter().flatten() {
                    let f = |k: &str| n[k].as_str().unwrap_or("").to_string();
                    rows.push(vec![
                        f("Node"),
                        f("ID").chars().take(8).collect(),
                        f("Address"),
                        f("Datacenter"),
                    ]);
                }
                table(rows);
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("Error listing nodes: {e}")),
        },
        CatalogCmd::Datacenters(s) => match get_json(&Api::new(&s.http), "catalog/datacenters") {
            Ok(v) => {
                for d in v.as_array().into_iter().flatten() {
                    println!("{}", d.as_str().unwrap_or(""));
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(format!("Error listing datacenters: {e}")),
        },
    }
}
