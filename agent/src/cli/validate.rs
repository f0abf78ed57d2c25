//! `tribune validate`: check config files and directories with the
//! agent's own parser, as the agent would load them, without starting it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::config::{AgentConfig, Flags};

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// When given, a successful run will produce no output.
    #[arg(long)]
    quiet: bool,
    #[arg(hide = true)]
    paths: Vec<PathBuf>,
}

/// Why a configuration is not valid: the first error of the step that
/// found it, as the agent would print it at start.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Definitions(#[from] crate::app::DefinitionError),
    #[error("{0}")]
    Watches(#[from] crate::watchplan::ConfigWatchError),
}

/// Load `paths` (files and directories, as `-config-file` and
/// `-config-dir`) and check every definition in them; the warnings.
pub fn check(paths: &[PathBuf]) -> Result<Vec<String>, ValidateError> {
    let mut flags = Flags::default();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => flags.config_dir.push(p.clone()),
            Ok(_) => flags.config_file.push(p.clone()),
            Err(source) => {
                return Err(ValidateError::Read {
                    path: p.clone(),
                    source,
                })
            }
        }
    }
    let c = AgentConfig::load(&flags)?;
    crate::app::config_definitions(&c)?;
    crate::watchplan::parse_config_watches(&c.watch_defs)?;
    Ok(c.warnings)
}

pub fn run(a: ValidateArgs) -> ExitCode {
    if a.paths.is_empty() {
        eprintln!("Must specify at least one config file or directory");
        return ExitCode::from(1);
    }
    match check(&a.paths) {
        Ok(warnings) => {
            if !a.quiet {
                for w in warnings {
                    eprintln!("{w}");
                }
                println!("Configuration is valid!");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Config validation failed: {e}");
            ExitCode::from(1)
        }
    }
}
