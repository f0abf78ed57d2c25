//! `tribune monitor [-log-level=INFO] [-log-json]`: stream the agent's log
//! (`/v1/agent/monitor`) until interrupted, as Consul's monitor does.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Args;

use super::common::HttpOpts;
use super::common::{cli_runtime, on_signals};
use crate::apiclient::ApiClient;

#[derive(Args, Debug)]
pub struct MonitorArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// Log level of the agent.
    #[arg(long = "log-level", default_value = "INFO")]
    log_level: String,
    /// Output logs in JSON format.
    #[arg(long = "log-json")]
    log_json: bool,
}

pub fn run(a: MonitorArgs) -> ExitCode {
    let rt = match cli_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(stream(a))
}

async fn stream(a: MonitorArgs) -> ExitCode {
    let api = ApiClient::new(crate::apiclient::Config {
        datacenter: None,
        ..a.http.async_config()
    });
    let mut q = vec![("loglevel", a.log_level.clone())];
    if a.log_json {
        q.push(("logjson", String::new()));
    }
    let stop = on_signals();
    let mut resp = tokio::select! {
        r = api.stream("agent/monitor", &q) => match r {
            Ok(r) => r,
            Err(e) => {
                eprintln!("Error starting monitor: {e}");
                return ExitCode::from(1);
            }
        },
        _ = stop.cancelled() => return ExitCode::SUCCESS,
    };
    loop {
        let chunk = tokio::select! {
            c = resp.chunk() => c,
            // Interrupted: Consul's monitor exits 0.
            _ = stop.cancelled() => return ExitCode::SUCCESS,
        };
        match chunk {
            Ok(Some(bytes)) => {
                let mut out = std::io::stdout().lock();
                if out.write_all(&bytes).and_then(|_| out.flush()).is_err() {
                    return ExitCode::SUCCESS;
                }
            }
            Ok(None) | Err(_) => {
                println!();
                println!(
                    "Remote side ended the monitor! This usually means that the\n\
                     remote side has exited or crashed."
                );
                return ExitCode::from(1);
            }
        }
    }
}
