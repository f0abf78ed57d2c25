//! Shell completion as Consul does it: `tribune -autocomplete-install`
//! adds `complete -C /path/to/tribune tribune` to `~/.bashrc` (and, with
//! bash compatibility loaded, to `~/.zshrc`); the shell then runs tribune
//! with `COMP_LINE` set, and tribune prints the candidates: subcommands,
//! Go-style `-flags` of the command being typed, and file names where a
//! command or flag takes a path. The candidates come from the same clap
//! command tree that parses the arguments.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Command;

const BASH_LINE: &str = "complete -C {bin} tribune";
const ZSH_INIT: &str = "autoload -U +X bashcompinit && bashcompinit";
const ZSH_LINE: &str = "complete -o nospace -C {bin} tribune";

/// Handle completion requests and `-autocomplete-(un)install`; `None` for
/// everything else.
pub fn handle(root: &Command) -> Option<ExitCode> {
    if let Ok(line) = std::env::var("COMP_LINE") {
        let point = std::env::var("COMP_POINT")
            .ok()
            .and_then(|p| p.parse::<usize>().ok())
            .unwrap_or(line.len());
        let upto = line.get(..point.min(line.len())).unwrap_or(&line);
        for c in candidates(root, upto) {
            println!("{c}");
        }
        return Some(ExitCode::SUCCESS);
    }
    let arg = std::env::args().nth(1)?;
    let install = match arg.trim_start_matches('-') {
        "autocomplete-install" => true,
        "autocomplete-uninstall" => false,
        _ => return None,
    };
    let home = std::env::var_os("HOME").map(PathBuf::from)?;
    let bin = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .unwrap_or_else(|_| PathBuf::from("tribune"));
    let r = if install {
        self::install(&home, &bin)
    } else {
        uninstall(&home, &bin)
    };
    Some(match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error executing CLI: {e}");
            ExitCode::from(1)
        }
    })
}

fn lines_for(shell: &str, bin: &Path) -> Vec<String> {
    let bin = bin.display().to_string();
    match shell {
        "bash" => vec![BASH_LINE.replace("{bin}", &bin)],
        _ => vec![ZSH_INIT.to_string(), ZSH_LINE.replace("{bin}", &bin)],
    }
}

/// The rc files of the shells this user has.
fn shells(home: &Path) -> Vec<(&'static str, PathBuf)> {
    [("bash", ".bashrc"), ("zsh", ".zshrc")]
        .into_iter()
        .map(|(s, f)| (s, home.join(f)))
        .filter(|(_, p)| p.is_file())
        .collect()
}

pub fn install(home: &Path, bin: &Path) -> Result<(), String> {
    let found = shells(home);
    if found.is_empty() {
        return Err("did not find any shells to install (no ~/.bashrc or ~/.zshrc)".into());
    }
    for (shell, rc) in found {
        let text = std::fs::read_to_string(&rc).map_err(|e| format!("{}: {e}", rc.display()))?;
        let want = lines_for(shell, bin);
        let last = want.last().cloned().unwrap_or_default();
        if text.lines().any(|l| l.trim() == last) {
            return Err(format!("already installed in {}", rc.display()));
        }
        let mut out = text.clone();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        for l in want {
            // zsh's bashcompinit may be loaded already.
            if !text.lines().any(|x| x.trim() == l) {
                out.push_str(&l);
                out.push('\n');
            }
        }
        crate::fsutil::write_atomic(&rc, out.as_bytes())
            .map_err(|e| format!("{}: {e}", rc.display()))?;
    }
    Ok(())
}

pub fn uninstall(home: &Path, bin: &Path) -> Result<(), String> {
    let mut removed = false;
    for (shell, rc) in shells(home) {
        let text = std::fs::read_to_string(&rc).map_err(|e| format!("{}: {e}", rc.display()))?;
        // Only the `complete` line: bashcompinit may serve other programs.
        let line = lines_for(shell, bin).pop().unwrap_or_default();
        if !text.lines().any(|l| l.trim() == line) {
            continue;
        }
        let kept: String = text
            .lines()
            .filter(|l| l.trim() != line)
            .map(|l| format!("{l}\n"))
            .collect();
        crate::fsutil::write_atomic(&rc, kept.as_bytes())
            .map_err(|e| format!("{}: {e}", rc.display()))?;
        removed = true;
    }
    if removed {
        Ok(())
    } else {
        Err("tribune completion is not installed in ~/.bashrc or ~/.zshrc".into())
    }
}

/// Positional arguments (or flag values) that are paths.
fn takes_paths(cmd_path: &[&str]) -> bool {
    matches!(
        cmd_path,
        ["validate"] | ["snapshot", "save" | "restore" | "inspect"] | ["services", _]
    )
}

fn flag_takes_path(name: &str) -> bool {
    name.ends_with("-file") || name.ends_with("-dir") || name == "ca-path"
}

/// Completions of the last word of `line` (the command line up to the cursor).
pub fn candidates(root: &Command, line: &str) -> Vec<String> {
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let current = if line.ends_with(char::is_whitespace) || words.is_empty() {
        ""
    } else {
        words.pop().unwrap_or("")
    };
    let mut cmd = root;
    let mut path: Vec<&str> = Vec::new();
    let mut value_of: Option<String> = None;
    for w in words.iter().skip(1) {
        if value_of.take().is_some() {
            continue;
        }
        if let Some(flag) = w.strip_prefix('-') {
            let name = flag.trim_start_matches('-');
            if !name.contains('=') && takes_value(cmd, name) {
                value_of = Some(name.to_string());
            }
            continue;
        }
        if let Some(sub) = cmd.find_subcommand(w) {
            cmd = sub;
            path.push(sub.get_name());
        }
    }
    let mut out: Vec<String> = if let Some(flag) = value_of {
        if flag_takes_path(&flag) {
            files(current)
        } else {
            Vec::new()
        }
    } else if current.starts_with('-') {
        cmd.get_arguments()
            .filter(|a| !a.is_hide_set())
            .filter_map(|a| a.get_long())
            .filter(|l| *l != "help" && *l != "version")
            .map(|l| format!("-{l}"))
            // `--st` completes like `-st`.
            .filter(|f| f.starts_with(&format!("-{}", current.trim_start_matches('-'))))
            .collect()
    } else if cmd.has_subcommands() {
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| s.get_name().to_string())
            .filter(|n| n.starts_with(current))
            .collect()
    } else if takes_paths(&path) {
        files(current)
    } else {
        Vec::new()
    };
    out.sort();
    out.dedup();
    out
}

fn takes_value(cmd: &Command, name: &str) -> bool {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(name))
        .is_some_and(|a| a.get_action().takes_values())
}

/// Entries of the directory `prefix` names, that start with it
/// (directories with a trailing `/`).
fn files(prefix: &str) -> Vec<String> {
    let (dir, start) = match prefix.rfind('/') {
        Some(i) => (&prefix[..=i], &prefix[i + 1..]),
        None => ("", prefix),
    };
    let Ok(rd) = std::fs::read_dir(if dir.is_empty() { "." } else { dir }) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            if !name.starts_with(start) || (name.starts_with('.') && !start.starts_with('.')) {
                return None;
            }
            let slash = if e.path().is_dir() { "/" } else { "" };
            Some(format!("{dir}{name}{slash}"))
        })
        .take(1000)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn c(line: &str) -> Vec<String> {
        candidates(&crate::cli::Cli::command(), line)
    }

    #[test]
    fn commands_flags_and_files() {
        assert_eq!(c("tribune sna"), ["snapshot"]);
        assert_eq!(c("tribune snapshot "), ["inspect", "restore", "save"]);
        assert_eq!(c("tribune snapshot save -st"), ["-stale"]);
        assert!(c("tribune ").contains(&"maint".to_string()));
        assert_eq!(c("tribune maint -e"), ["-enable"]);
        assert!(c("tribune kv get -").contains(&"-recurse".to_string()));
        // a flag's value is skipped, and a path flag completes files
        assert_eq!(c("tribune maint -reason x -di"), ["-disable"]);
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("backup.snap"), "").unwrap();
        std::fs::create_dir(d.path().join("conf")).unwrap();
        let p = format!("{}/", d.path().display());
        assert_eq!(
            c(&format!("tribune snapshot inspect {p}b")),
            [format!("{p}backup.snap")]
        );
        assert_eq!(
            c(&format!("tribune agent -config-dir {p}c")),
            [format!("{p}conf/")]
        );
        assert!(c("tribune members x").is_empty());
    }

    #[test]
    fn install_and_uninstall() {
        let home = tempfile::tempdir().unwrap();
        let bin = Path::new("/opt/bin/tribune");
        assert!(install(home.path(), bin).is_err(), "no rc files");
        std::fs::write(home.path().join(".bashrc"), "alias ll='ls -l'").unwrap();
        std::fs::write(home.path().join(".zshrc"), "").unwrap();
        install(home.path(), bin).unwrap();
        let bash = std::fs::read_to_string(home.path().join(".bashrc")).unwrap();
        assert_eq!(
            bash,
            "alias ll='ls -l'\ncomplete -C /opt/bin/tribune tribune\n"
        );
        let zsh = std::fs::read_to_string(home.path().join(".zshrc")).unwrap();
        assert_eq!(
            zsh,
            "autoload -U +X bashcompinit && bashcompinit\n\
             complete -o nospace -C /opt/bin/tribune tribune\n"
        );
        assert!(install(home.path(), bin)
            .unwrap_err()
            .contains("already installed"));
        uninstall(home.path(), bin).unwrap();
        let bash = std::fs::read_to_string(home.path().join(".bashrc")).unwrap();
        assert_eq!(bash, "alias ll='ls -l'\n");
        assert!(uninstall(home.path(), bin).is_err());
    }
}
