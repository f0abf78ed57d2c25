//! tribune-template running confd's and consul-template's Go templates
//! unchanged, against the real `tribune agent -dev`: fixtures (template +
//! data + expected bytes) for every function of both sets and for the
//! language, the guides' examples byte for byte, a consul-template HCL
//! config with two templates, `wait` and `exec`, and missing data handled
//! as each original handles it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribune_tests::{client, copy_dir, put_kv, root, run_renderer, wait_until, Agent, Renderer};

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// Put the fixture's kv.json into KV and register its services.json,
/// waiting until the catalog shows every instance with its check status.
fn load_data(a: &Agent, fx: &Path) {
    if let Ok(text) = std::fs::read_to_string(fx.join("kv.json")) {
        let kv: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        for (k, v) in kv {
            put_kv(a, &k, v.as_str().unwrap());
        }
    }
    let Ok(text) = std::fs::read_to_string(fx.join("services.json")) else {
        return;
    };
    let list: Vec<Value> = serde_json::from_str(&text).unwrap();
    for s in &list {
        let r = client()
            .put(format!("{}/v1/agent/service/register", a.url))
            .json(s)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let synced = wait_until(Duration::from_secs(10), || {
        list.iter().all(|s| {
            let v: Value = client()
                .get(format!(
                    "{}/v1/health/service/{}",
                    a.url,
                    s["Name"].as_str().unwrap()
                ))
                .send()
                .unwrap()
                .json()
                .unwrap();
            v.as_array().unwrap().iter().any(|e| {
                e["Service"]["ID"] == s["ID"]
                    && e["Checks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| c["Status"] == s["Check"]["Status"])
            })
        })
    });
    assert!(synced, "services of {} not in the catalog", fx.display());
}

/// Compare every expect/<file> with out/<file>, byte for byte.
fn assert_matches_expect(fx: &Path, work: &Path) {
    for e in std::fs::read_dir(fx.join("expect")).unwrap() {
        let e = e.unwrap();
        let want = std::fs::read_to_string(e.path()).unwrap();
        let got = std::fs::read_to_string(work.join("out").join(e.file_name()))
            .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        assert_eq!(
            got,
            want,
            "fixture {} file {:?}",
            fx.display(),
            e.file_name()
        );
    }
}

/// Every Go fixture renders exactly its expect/ files with -once: confd
/// layouts (conf.d + templates) with `-confdir`, consul-template ones with
/// their `-config config.hcl` (whose address the flag overrides).
#[test]
fn go_fixtures_render_exactly() {
    let a = Agent::dev(&["-node", "fx1"]);
    for name in [
        "go-language",
        "go-confd",
        "go-consul-template",
        "confd-guide",
        "ct-nginx",
    ] {
        let fx = fixture(name);
        load_data(&a, &fx);
        let work = tempfile::tempdir().unwrap();
        copy_dir(&fx, work.path());
        let mut args: Vec<String> = if fx.join("config.hcl").exists() {
            ["-once", "-config", "config.hcl", "-consul-addr", &a.addr]
                .map(String::from)
                .to_vec()
        } else {
            ["-onetime", "-confdir", ".", "-node", &a.addr]
                .map(String::from)
                .to_vec()
        };
        args.extend(read(&fx.join("flags")).lines().map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_renderer(work.path(), &args, &[("TRIBUNE_FIXTURE_ENV", "from-test")]);
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert_matches_expect(&fx, work.path());
    }
}

/// `plugin` runs nothing unless -enable-plugin is given.
#[test]
fn plugin_is_off_by_default() {
    let a = Agent::dev(&[]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("p.ctmpl"), "{{ plugin \"touch\" \"ran\" }}\n").unwrap();
    let out = run_renderer(
        w,
        &[
            "-once",
            "-consul-addr",
            &a.addr,
            "-template",
            "p.ctmpl:out/p.conf",
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("-enable-plugin"), "{}", out.stderr);
    assert!(!w.join("ran").exists() && !w.join("out/p.conf").exists());
}

/// consul-template's `key` waits for an absent key: -once names what it
/// waits for and finishes when the key is written; a daemon writes nothing
/// until then. confd's `getv` instead fails the render and keeps the old
/// file.
#[test]
fn missing_data_like_the_originals() {
    let a = Agent::dev(&[]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path().to_path_buf();
    std::fs::write(w.join("k.ctmpl"), "v={{ key \"later/k\" }}\n").unwrap();
    let mut once = Renderer::spawn(
        &w,
        &[
            "-once",
            "-consul-addr",
            &a.addr,
            "-template",
            "k.ctmpl:out/k.conf",
        ],
        &[],
    );
    once.wait_log(
        &["waiting for data", "kv.key(later/k)", "k.ctmpl"],
        1,
        Duration::from_secs(10),
    );
    thread::sleep(Duration::from_millis(300));
    assert!(
        !w.join("out/k.conf").exists(),
        "rendered before the key existed"
    );
    put_kv(&a, "later/k", "here");
    assert_eq!(once.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(read(&w.join("out/k.conf")), "v=here\n");

    // confd: a Go template whose key disappears fails; the file stays.
    std::fs::create_dir_all(w.join("conf.d")).unwrap();
    std::fs::create_dir_all(w.join("templates")).unwrap();
    std::fs::write(
        w.join("templates/c.tmpl"),
        "c={{getv \"/conf/c\"}}{{/* go */}}\n",
    )
    .unwrap();
    std::fs::write(
        w.join("conf.d/c.toml"),
        "[template]\nsrc = \"c.tmpl\"\ndest = \"out/c.conf\"\nkeys = [\"/conf\"]\n",
    )
    .unwrap();
    put_kv(&a, "conf/c", "one");
    let r = Renderer::spawn(&w, &["-node", &a.addr], &[]);
    let dest = w.join("out/c.conf");
    assert!(wait_until(Duration::from_secs(10), || read(&dest) == "c=one\n"));
    let del = client()
        .delete(format!("{}/v1/kv/conf/c", a.url))
        .send()
        .unwrap();
    assert_eq!(del.status(), 200);
    r.wait_log(&["render failed", "conf/c"], 1, Duration::from_secs(5));
    assert_eq!(read(&dest), "c=one\n");
    put_kv(&a, "conf/c", "two");
    assert!(wait_until(Duration::from_secs(5), || read(&dest) == "c=two\n"));
}

/// `error_on_missing_key` makes a missing map key fail the render, as
/// consul-template's `missingkey=error`; without it Go prints `<no value>`.
#[test]
fn error_on_missing_key() {
    let a = Agent::dev(&[]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let tmpl = "{{ with parseJSON `{\\\"a\\\": 1}` }}{{ .a }} {{ .b }}{{ end }}\n";
    let cfg = |strict: bool| {
        format!(
            "template {{\n  contents = \"{tmpl}\"\n  destination = \"out/m.conf\"\n  error_on_missing_key = {strict}\n}}\n"
        )
    };
    std::fs::write(w.join("c.hcl"), cfg(false)).unwrap();
    let out = run_renderer(
        w,
        &["-once", "-config", "c.hcl", "-consul-addr", &a.addr],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(read(&w.join("out/m.conf")), "1 <no value>\n");
    std::fs::write(w.join("c.hcl"), cfg(true)).unwrap();
    std::fs::remove_file(w.join("out/m.conf")).unwrap();
    let out = run_renderer(
        w,
        &["-once", "-config", "c.hcl", "-consul-addr", &a.addr],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("b"), "{}", out.stderr);
    assert!(!w.join("out/m.conf").exists());
}

/// A consul-template HCL config with two templates, a global `wait` and an
/// `exec` block runs as under consul-template: the child starts once both
/// files are rendered (the second waits for its key), a burst of changes
/// renders once after the quiet period and reloads the child with its
/// signal; `perms` apply; SIGHUP re-reads the config; SIGTERM stops the
/// child with the kill signal and we exit with its code.
#[test]
fn ct_config_two_templates_wait_exec() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/a", "a0");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("a.ctmpl"), "a={{ key \"app/a\" }}\n").unwrap();
    std::fs::write(
        w.join("child.sh"),
        "#!/bin/sh\necho started >> child.log\ntrap 'echo hup >> child.log' HUP\ntrap 'echo term >> child.log; exit 3' TERM\nwhile true; do sleep 0.05; done\n",
    )
    .unwrap();
    std::fs::set_permissions(w.join("child.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let config = |extra: &str| {
        format!(
            r#"consul {{
  address = "{addr}"
}}

wait {{
  min = "400ms"
  max = "3s"
}}

template {{
  source      = "a.ctmpl"
  destination = "out/a.conf"
}}

template {{
  contents    = "b={{{{ key \"app/b\" }}}}\n"
  destination = "out/b.conf"
  perms       = 0600
}}
{extra}
exec {{
  command       = "./child.sh"
  reload_signal = "SIGHUP"
  kill_timeout  = "5s"
}}
"#,
            addr = a.addr
        )
    };
    std::fs::write(w.join("config.hcl"), config("")).unwrap();
    let mut r = Renderer::spawn(w, &["-config", "config.hcl"], &[]);
    r.wait_log(
        &["waiting for data", "kv.key(app/b)"],
        1,
        Duration::from_secs(10),
    );
    assert_eq!(read(&w.join("out/a.conf")), "a=a0\n");
    assert!(
        !w.join("child.log").exists(),
        "child started before every template rendered"
    );
    put_kv(&a, "app/b", "b0");
    assert!(wait_until(Duration::from_secs(10), || read(
        &w.join("child.log")
    )
    .contains("started")));
    assert_eq!(read(&w.join("out/b.conf")), "b=b0\n");
    let mode = std::fs::metadata(w.join("out/b.conf"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // a burst inside the quiet period: one render, one reload signal
    let renders = r.count(&["rendered", "changed=true"]);
    let t = Instant::now();
    for i in 1..=4 {
        put_kv(&a, "app/a", &format!("a{i}"));
        thread::sleep(Duration::from_millis(60));
    }
    assert!(wait_until(Duration::from_secs(5), || read(
        &w.join("out/a.conf")
    ) == "a=a4\n"));
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert!(wait_until(Duration::from_secs(5), || read(
        &w.join("child.log")
    )
    .contains("hup")));
    thread::sleep(Duration::from_millis(600));
    assert_eq!(
        r.count(&["rendered", "changed=true"]),
        renders + 1,
        "{}",
        r.log_text()
    );
    assert_eq!(read(&w.join("child.log")).matches("hup").count(), 1);
    // SIGHUP re-reads the config: a third template appears
    std::fs::write(
        w.join("config.hcl"),
        config("\ntemplate {\n  contents    = \"c={{ key \\\"app/a\\\" }}\"\n  destination = \"out/c.conf\"\n}\n"),
    )
    .unwrap();
    r.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || read(
        &w.join("out/c.conf")
    ) == "c=a4"));
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(Duration::from_secs(10)), Some(3));
    assert!(read(&w.join("child.log")).contains("term"));
}

/// consul-template's top-level `reload_signal` reloads the configuration
/// (here SIGUSR1, no longer forwarded to a child) and `kill_signal` stops.
#[test]
fn ct_reload_and_kill_signals() {
    let a = Agent::dev(&[]);
    put_kv(&a, "sig/k", "v1");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let cfg = |body: &str| {
        format!(
            "reload_signal = \"SIGUSR1\"\nkill_signal = \"SIGQUIT\"\ntemplate {{\n  contents    = \"{body}\"\n  destination = \"out/s.conf\"\n}}\n"
        )
    };
    std::fs::write(w.join("c.hcl"), cfg("a={{ key \\\"sig/k\\\" }}")).unwrap();
    let mut r = Renderer::spawn(w, &["-config", "c.hcl", "-consul-addr", &a.addr], &[]);
    let dest = w.join("out/s.conf");
    assert!(wait_until(Duration::from_secs(10), || read(&dest) == "a=v1"));
    std::fs::write(w.join("c.hcl"), cfg("b={{ key \\\"sig/k\\\" }}")).unwrap();
    r.signal(libc::SIGUSR1);
    assert!(
        wait_until(Duration::from_secs(10), || read(&dest) == "b=v1"),
        "{}",
        r.log_text()
    );
    r.signal(libc::SIGQUIT);
    assert_eq!(r.wait_exit(Duration::from_secs(10)), Some(0));
}

/// confd's `lookupSRV` in a Go template, through tribune's own DNS (via
/// TRIBUNE_DNS): records sorted, fields as Go's net.SRV.
#[test]
fn lookup_srv_go() {
    let dns = tribune_tests::free_port().to_string();
    let a = Agent::spawn(
        &[
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-dns-port",
            &dns,
            "-node",
            "n1",
        ],
        None,
    );
    for (id, port) in [("r2", 6380), ("r1", 6379)] {
        let r = client()
            .put(format!("{}/v1/agent/service/register", a.url))
            .json(&serde_json::json!({"Name": "redis", "ID": id, "Port": port}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(
        w.join("srv.tmpl"),
        "{{range lookupSRV \"redis\" \"tcp\" \"service.consul\"}}{{.Target}}:{{.Port}} {{end}}\n",
    )
    .unwrap();
    let resolver = format!("127.0.0.1:{dns}");
    let want = "n1.node.dc1.consul.:6379 n1.node.dc1.consul.:6380 \n";
    let ok = wait_until(Duration::from_secs(10), || {
        let out = run_renderer(
            w,
            &[
                "-once",
                "-node",
                &a.addr,
                "-template",
                "srv.tmpl:out/srv.conf",
            ],
            &[("TRIBUNE_DNS", &resolver)],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        read(&w.join("out/srv.conf")) == want
    });
    assert!(ok, "{:?}", read(&w.join("out/srv.conf")));
}
