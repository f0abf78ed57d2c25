//! `tribune version [-format=pretty|json]`, also `tribune -v`/`--version`.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

/// tribune's own version.
pub const VERSION: &str = crate::version::TRIBUNE;
/// When the binary was built (RFC 3339, UTC), set by `build.rs`.
pub const BUILD_DATE: &str = env!("TRIBUNE_BUILD_DATE");

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Output format {pretty|json}
    #[arg(long, default_value = "pretty")]
    format: String,
}

fn pretty() -> String {
    format!(
        "tribune v{VERSION}\nBuild Date {BUILD_DATE}\nImplements the Consul {} HTTP API and DNS interface",
        crate::version::CONSUL_API
    )
}

/// `tribune -v`: the pretty form.
pub fn print_pretty() -> ExitCode {
    println!("{}", pretty());
    ExitCode::SUCCESS
}

pub fn run(a: VersionArgs) -> ExitCode {
    match a.format.as_str() {
        "pretty" => print_pretty(),
        // Consul's fields (its `VersionInfo`), indented as it indents them.
        "json" => {
            let v = json!({
                "Version": VERSION,
                "ConsulAPI": crate::version::CONSUL_API,
                "Revision": "",
                "Prerelease": "",
                "BuildDate": BUILD_DATE,
                "RPC": { "Default": 2, "Min": 2, "Max": 3 },
            });
            let mut out = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"   ");
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            if serde::Serialize::serialize(&v, &mut ser).is_err() {
                eprintln!("Failed to marshal version info");
                return ExitCode::from(1);
            }
            println!("{}", String::from_utf8_lossy(&out));
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("Unknown format: {other}");
            ExitCode::from(1)
        }
    }
}
