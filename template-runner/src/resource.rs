//! Template resources: confd's `conf.d/*.toml` `[template]` tables (plus our
//! `wait`, `backup`, `command_timeout`) and consul-template's
//! `-template "src:dest[:command]"` flags.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::gosyntax::Engine;
use crate::helpers::Flavor;
use crate::render::TemplateOptions;

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// Debounce: render no sooner than `min` after the last change and no later
/// than `max` after the first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wait {
    pub min: Duration,
    pub max: Duration,
}

impl Wait {
    /// `"2s"`, `"2s:10s"` (max defaults to 4 x min, as consul-template does).
    pub fn parse(s: &str) -> Result<Self, String> {
        let (a, b) = match s.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let min = parse_duration(a).ok_or_else(|| format!("invalid wait {s:?}"))?;
        let max = match b {
            Some(b) => parse_duration(b).ok_or_else(|| format!("invalid wait {s:?}"))?,
            None => min * 4,
        };
        if max < min {
            return Err(format!("invalid wait {s:?}: max is smaller than min"));
        }
        Ok(Self { min, max })
    }
}

/// A Go duration, or a bare number of seconds (confd configs use both).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if let Ok(n) = s.parse::<f64>() {
        return (n >= 0.0 && n.is_finite()).then(|| Duration::from_secs_f64(n));
    }
    gocompat::duration::parse(s).ok()
}

/// File owner: numeric id or a name resolved at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// One template resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    /// Where it came from (conf.d file or `-template` flag), for logs.
    pub origin: String,
    pub src: PathBuf,
    pub dest: PathBuf,
    /// KV directories declared by `keys` (joined with `prefix`, ending in `/`).
    pub keys: Vec<String>,
    /// Prefix applied to every key a helper reads (confd's `prefix`).
    pub prefix: String,
    pub mode: Option<u32>,
    pub owner: Owner,
    pub check_cmd: Option<String>,
    pub reload_cmd: Option<String>,
    pub wait: Option<Wait>,
    pub backup: bool,
    pub command_timeout: Duration,
    /// Engine, flavor, delimiters, missing-key rule.
    pub options: TemplateOptions,
    /// The template text itself (consul-template's `contents`), instead of
    /// reading `src`.
    pub contents: Option<String>,
    /// Create missing parent directories of `dest` (consul-template's
    /// `create_dest_dirs`, default true).
    pub create_dirs: bool,
}

pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A resource file: only its `[template]` table is read. Its top-level
/// keys are confd config when the file is also `-config-file` (confd's own
/// guide keeps one file for both); [`load_dir`] warns about them otherwise.
#[derive(Deserialize)]
struct File {
    template: Raw,
}

/// The keys of a `[template]` table, to point a misplaced one the right way.
pub const TEMPLATE_KEYS: &[&str] = &[
    "src",
    "dest",
    "keys",
    "prefix",
    "mode",
    "uid",
    "gid",
    "user",
    "group",
    "check_cmd",
    "reload_cmd",
    "wait",
    "backup",
    "command_timeout",
    "engine",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    src: String,
    dest: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    uid: Option<i64>,
    #[serde(default)]
    gid: Option<i64>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    check_cmd: Option<String>,
    #[serde(default)]
    reload_cmd: Option<String>,
    #[serde(default)]
    wait: Option<String>,
    #[serde(default)]
    backup: bool,
    #[serde(default)]
    command_timeout: Option<toml::Value>,
    #[serde(default)]
    engine: Option<String>,
}

/// Join key paths the way confd does (`/app` + `/nginx` = `/app/nginx`),
/// returning a Consul key without the leading slash.
pub fn join_key(prefix: &str, key: &str) -> String {
    let p = prefix.trim_matches('/');
    let k = key.trim_start_matches('/');
    match (p.is_empty(), k.is_empty()) {
        (true, _) => k.to_string(),
        (false, true) => p.to_string(),
        (false, false) => format!("{p}/{k}"),
    }
}

fn parse_mode(s: &str) -> Option<u32> {
    let s = s.trim();
    let s = s.strip_prefix("0o").unwrap_or(s);
    u32::from_str_radix(s, 8).ok().filter(|m| *m <= 0o7777)
}

fn lookup_user(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|u| u.uid.as_raw())
}

fn lookup_group(name: &str) -> Option<u32> {
    nix::unistd::Group::from_name(name)
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
}

impl Resource {
    /// Parse one `conf.d/*.toml` file. `templates` is the templates dir and
    /// `global_prefix` the `-prefix` flag.
    pub fn from_toml(
        path: &Path,
        text: &str,
        templates: &Path,
        global_prefix: &str,
    ) -> Result<Self, ResourceError> {
        let invalid = |msg: String| ResourceError::Invalid {
            path: path.display().to_string(),
            msg,
        };
        let f: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let t = f.template;
        if t.src.trim().is_empty() || t.dest.trim().is_empty() {
            return Err(invalid("src and dest are required".into()));
        }
        let prefix = join_key(global_prefix, t.prefix.as_deref().unwrap_or(""));
        let mode =
            match &t.mode {
                None => None,
                Some(m) => Some(parse_mode(m).ok_or_else(|| {
                    invalid(format!("invalid mode {m:?}: use octal like \"0644\""))
                })?),
            };
        let id = |v: Option<i64>, what: &str| -> Result<Option<u32>, ResourceError> {
            v.map(|n| u32::try_from(n).map_err(|_| invalid(format!("invalid {what} {n}"))))
                .transpose()
        };
        let mut owner = Owner {
            uid: id(t.uid, "uid")?,
            gid: id(t.gid, "gid")?,
        };
        if let Some(u) = &t.user {
            owner.uid = Some(lookup_user(u).ok_or_else(|| invalid(format!("unknown user {u:?}")))?);
        }
        if let Some(g) = &t.group {
            owner.gid =
                Some(lookup_group(g).ok_or_else(|| invalid(format!("unknown group {g:?}")))?);
        }
        let wait = t
            .wait
            .as_deref()
            .map(Wait::parse)
            .transpose()
            .map_err(invalid)?;
        let command_timeout = match &t.command_timeout {
            None => DEFAULT_COMMAND_TIMEOUT,
            Some(toml::Value::Integer(n)) if *n > 0 => Duration::from_secs(*n as u64),
            Some(toml::Value::String(s)) => parse_duration(s)
                .ok_or_else(|| invalid(format!("invalid command_timeout {s:?}")))?,
            Some(v) => return Err(invalid(format!("invalid command_timeout {v}"))),
        };
        let engine = t
            .engine
            .as_deref()
            .map(|e| {
                Engine::parse(e).ok_or_else(|| {
                    invalid(format!(
                        "invalid engine {e:?}: use \"go\" or \"handlebars\""
                    ))
                })
            })
            .transpose()?;
        let src = PathBuf::from(&t.src);
        Ok(Resource {
            origin: path.display().to_string(),
            src: if src.is_absolute() {
                src
            } else {
                templates.join(src)
            },
            dest: PathBuf::from(&t.dest),
            // Keys are paths: `/app` watches `app/...`, not `application`.
            keys: t
                .keys
                .iter()
                .map(|k| match join_key(&prefix, k) {
                    k if k.is_empty() => k,
                    k => format!("{k}/"),
                })
                .collect(),
            prefix,
            mode,
            owner,
            check_cmd: t.check_cmd.filter(|c| !c.trim().is_empty()),
            reload_cmd: t.reload_cmd.filter(|c| !c.trim().is_empty()),
            wait,
            backup: t.backup,
            command_timeout,
            options: TemplateOptions {
                engine,
                flavor: Flavor::Confd,
                ..TemplateOptions::default()
            },
            contents: None,
            create_dirs: true,
        })
    }

    /// `-template "src:dest[:command]"` (paths relative to the working dir).
    pub fn from_flag(spec: &str, global_prefix: &str) -> Result<Self, ResourceError> {
        let invalid = |msg: &str| ResourceError::Invalid {
            path: format!("-template {spec:?}"),
            msg: msg.into(),
        };
        let mut parts = spec.splitn(3, ':');
        let src = parts
            .next()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("missing source"))?;
        let dest = parts
            .next()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("missing destination"))?;
        let cmd = parts
            .next()
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string);
        Ok(Resource {
            origin: format!("-template {src}"),
            src: PathBuf::from(src),
            dest: PathBuf::from(dest),
            keys: vec![],
            prefix: join_key(global_prefix, ""),
            mode: None,
            owner: Owner {
                uid: None,
                gid: None,
            },
            check_cmd: None,
            reload_cmd: cmd,
            wait: None,
            backup: false,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            options: TemplateOptions {
                flavor: Flavor::ConsulTemplate,
                ..TemplateOptions::default()
            },
            contents: None,
            create_dirs: true,
        })
    }
}

/// Warnings already given (file and what), so a reload doesn't repeat them.
static WARNED: parking_lot::Mutex<Vec<(PathBuf, &'static str)>> =
    parking_lot::Mutex::new(Vec::new());

fn warn_once(file: &Path, what: &'static str, warn: impl FnOnce()) {
    let mut warned = WARNED.lock();
    if !warned.iter().any(|(f, w)| f == file && *w == what) {
        warn();
        warned.push((file.to_path_buf(), what));
    }
}

pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Load every `conf.d/*.toml` of `confdir` (sorted by name) that has a
/// `[template]` table, as confd does; `config_file` (confd's
/// `-config-file`) is one of them when it sits in conf.d and has one. A
/// toml without `[template]` is skipped: silently when it is the config
/// file, else with one warning.
pub fn load_dir(
    confdir: &Path,
    global_prefix: &str,
    config_file: Option<&Path>,
) -> Result<Vec<Resource>, ResourceError> {
    let conf_d = confdir.join("conf.d");
    let templates = confdir.join("templates");
    let rd = match std::fs::read_dir(&conf_d) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => {
            return Err(ResourceError::Read {
                path: conf_d.display().to_string(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml") && p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|source| ResourceError::Read {
            path: f.display().to_string(),
            source,
        })?;
        let is_config = config_file.is_some_and(|c| same_file(&f, c));
        // A file that doesn't parse as TOML still errors below (it may be a
        // broken resource); only valid TOML without [template] is skipped.
        if let Ok(t) = text.parse::<toml::Table>() {
            if !t.contains_key("template") {
                if !is_config {
                    warn_once(&f, "no template", || {
                        let misplaced: Vec<&str> = t
                            .keys()
                            .map(String::as_str)
                            .filter(|k| TEMPLATE_KEYS.contains(k))
                            .collect();
                        if misplaced.is_empty() {
                            tracing::warn!(file = %f.display(), "no [template] table: not a template resource, skipped");
                        } else {
                            tracing::warn!(file = %f.display(), keys = %misplaced.join(","), "no [template] table: not a template resource, skipped; these keys belong under a [template] line");
                        }
                    });
                }
                continue;
            }
            let extra: Vec<&str> = t
                .keys()
                .map(String::as_str)
                .filter(|k| *k != "template")
                .collect();
            if !is_config && !extra.is_empty() {
                warn_once(&f, "top-level keys", || {
                    tracing::warn!(file = %f.display(), keys = %extra.join(","), "keys outside [template] are ignored (only -config-file's are read as config)");
                });
            }
        }
        out.push(Resource::from_toml(&f, &text, &templates, global_prefix)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// confd's format parses unchanged; prefix joins keys; our additions parse.
    #[test]
    fn confd_resource() {
        let text = r#"
[template]
src = "nginx.conf.tmpl"
dest = "/tmp/nginx.conf"
keys = ["/nginx", "/upstream"]
prefix = "/app"
mode = "0640"
uid = 0
check_cmd = "nginx -t -c {{.src}}"
reload_cmd = "nginx -s reload"
wait = "1s:5s"
backup = true
command_timeout = "10s"
"#;
        let r = Resource::from_toml(Path::new("conf.d/x.toml"), text, Path::new("/t"), "").unwrap();
        assert_eq!(r.src, PathBuf::from("/t/nginx.conf.tmpl"));
        assert_eq!(r.keys, ["app/nginx/", "app/upstream/"]);
        assert_eq!(r.prefix, "app");
        assert_eq!(r.mode, Some(0o640));
        assert_eq!(r.owner.uid, Some(0));
        assert_eq!(r.wait.unwrap().max, Duration::from_secs(5));
        assert!(r.backup);
        assert_eq!(r.command_timeout, Duration::from_secs(10));
        let r = Resource::from_toml(
            Path::new("x"),
            "[template]\nsrc=\"a\"\ndest=\"b\"\n",
            Path::new("/t"),
            "/g",
        )
        .unwrap();
        assert_eq!(r.prefix, "g");
        assert_eq!(r.command_timeout, DEFAULT_COMMAND_TIMEOUT);
    }

    #[test]
    fn bad_resources() {
        for (t, needle) in [
            ("[template]\nsrc=\"a\"\n", "dest"),
            ("[template]\nsrc=\"a\"\ndest=\"b\"\nmode=\"999\"\n", "mode"),
            (
                "[template]\nsrc=\"a\"\ndest=\"b\"\nuser=\"no-such-user-here\"\n",
                "unknown user",
            ),
            ("[template]\nsrc=\"a\"\ndest=\"b\"\nwait=\"5s:1s\"\n", "max"),
            ("[template]\nsrc=\"a\"\ndest=\"b\"\nbogus=1\n", "bogus"),
        ] {
            let e = Resource::from_toml(Path::new("x.toml"), t, Path::new("/t"), "")
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle), "{t}: {e}");
        }
    }

    /// Every conf.d toml with a [template] is a resource, the config file
    /// too (its top-level keys are config); tomls without one are skipped.
    #[test]
    fn load_dir_reads_every_template_table() {
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("conf.d");
        std::fs::create_dir_all(&c).unwrap();
        std::fs::write(c.join("a.toml"), "[template]\nsrc=\"a\"\ndest=\"b\"\n").unwrap();
        // confd config with a [template]-less body, named by -config-file
        std::fs::write(c.join("config.toml"), "backend = \"consul\"\n").unwrap();
        std::fs::write(c.join("notes.toml"), "x = 1\n").unwrap();
        let r = load_dir(d.path(), "", Some(&c.join("config.toml"))).unwrap();
        assert_eq!(r.len(), 1);
        // the config file with a [template] table is a resource as well
        std::fs::write(
            c.join("config.toml"),
            "backend = \"consul\"\ninterval = 2\n[template]\nsrc=\"c\"\ndest=\"d\"\n",
        )
        .unwrap();
        let r = load_dir(d.path(), "", Some(&c.join("config.toml"))).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].dest, PathBuf::from("d"));
        // ... whether or not it is named by -config-file
        assert_eq!(load_dir(d.path(), "", None).unwrap().len(), 2);
        // a broken [template] is an error naming the file
        std::fs::write(c.join("config.toml"), "[template]\nsrc=1\n").unwrap();
        let e = load_dir(d.path(), "", Some(&c.join("config.toml"))).unwrap_err();
        assert!(e.to_string().contains("config.toml"), "{e}");
    }

    #[test]
    fn template_flag() {
        let r = Resource::from_flag("in.tmpl:out.conf:nginx -s reload", "").unwrap();
        assert_eq!(r.reload_cmd.as_deref(), Some("nginx -s reload"));
        assert!(Resource::from_flag("in.tmpl", "").is_err());
        assert_eq!(Wait::parse("2s").unwrap().max, Duration::from_secs(8));
        assert_eq!(join_key("/", "/a/b"), "a/b");
    }
}
