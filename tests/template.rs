//! tribune-template against the real `tribune agent -dev` binary: fixtures
//! compared exactly, watch and interval modes, commands, failures, restarts,
//! signals, exec mode.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribune_tests::{
    client, copy_dir, put_kv, root, run_renderer, stop_gracefully, Agent, Renderer,
};

fn load_fixture_data(a: &Agent, fixture: &Path) {
    if let Ok(text) = std::fs::read_to_string(fixture.join("kv.json")) {
        let kv: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
        for (k, v) in kv {
            put_kv(a, &k, v.as_str().unwrap());
        }
    }
    if let Ok(text) = std::fs::read_to_string(fixture.join("services.json")) {
        let list: Vec<Value> = serde_json::from_str(&text).unwrap();
        for s in list {
            let r = client()
                .put(format!("{}/v1/agent/service/register", a.url))
                .json(&s)
                .send()
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        // wait for anti-entropy to put them in the catalog
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            let v: Value = client()
                .get(format!("{}/v1/health/service/web", a.url))
                .send()
                .unwrap()
                .json()
                .unwrap();
            if v.as_array().map(|a| a.len()) == Some(3) {
                let crit = v.as_array().unwrap().iter().any(|e| {
                    e["Checks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|c| c["Status"] == "critical")
                });
                if crit {
                    break;
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Compare every expect/<file> with out/<file>, byte for byte.
fn assert_matches_expect(fixture: &Path, work: &Path) {
    for e in std::fs::read_dir(fixture.join("expect")).unwrap() {
        let e = e.unwrap();
        let want = std::fs::read_to_string(e.path()).unwrap();
        let got = std::fs::read_to_string(work.join("out").join(e.file_name()))
            .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        assert_eq!(
            got,
            want,
            "fixture {} file {:?}",
            fixture.display(),
            e.file_name()
        );
    }
}

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures").join(name)
}

/// confd-style fixture dirs render exactly their expect/ files with -onetime.
#[test]
fn fixtures_render_exactly() {
    // a fixed node name: the `node`/`nodes` lines print it
    let a = Agent::dev(&["-node", "fx1"]);
    for name in ["confd-nginx", "helpers", "consul-template"] {
        let fx = fixture(name);
        load_fixture_data(&a, &fx);
        let work = tempfile::tempdir().unwrap();
        copy_dir(&fx, work.path());
        let out = run_renderer(
            work.path(),
            &["-onetime", "-confdir", ".", "-node", &a.addr],
            &[("TRIBUNE_FIXTURE_ENV", "from-test")],
        );
        assert_eq!(out.code, 0, "{name}: {}", out.stderr);
        assert_matches_expect(&fx, work.path());
    }
    // mode from the resource
    let work = tempfile::tempdir().unwrap();
    copy_dir(&fixture("confd-nginx"), work.path());
    run_renderer(work.path(), &["-onetime", "-node", &a.addr], &[]);
    let m = std::fs::metadata(work.path().join("out/nginx.conf")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o640);
}

/// The file backend renders without any agent.
#[test]
fn file_backend_renders_alone() {
    let fx = fixture("file-backend");
    let work = tempfile::tempdir().unwrap();
    copy_dir(&fx, work.path());
    let out = run_renderer(
        work.path(),
        &["-onetime", "-backend", "file", "-file", "data.yaml"],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_matches_expect(&fx, work.path());
    // env backend
    let work = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(work.path().join("t")).unwrap();
    std::fs::write(
        work.path().join("t/e.tmpl"),
        "port={{getv \"/myapp/port\"}}\n",
    )
    .unwrap();
    let out = run_renderer(
        work.path(),
        &[
            "-onetime",
            "-backend",
            "env",
            "-template",
            "t/e.tmpl:out/e.conf",
        ],
        &[("MYAPP_PORT", "7070")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(work.path().join("out/e.conf")).unwrap(),
        "port=7070\n"
    );
}

/// A work dir with one resource watching `app/` and a reload command that
/// appends to reload.log.
fn watch_dir(extra_toml: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("conf.d")).unwrap();
    std::fs::create_dir_all(w.join("templates")).unwrap();
    std::fs::write(
        w.join("templates/app.tmpl"),
        "port={{getv \"/app/port\" \"80\"}}\nname={{getv \"/app/name\"}}\n",
    )
    .unwrap();
    std::fs::write(
        w.join("conf.d/app.toml"),
        format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"out/app.conf\"\nkeys = [\"/app\"]\nreload_cmd = \"echo reloaded >> reload.log\"\n{extra_toml}"
        ),
    )
    .unwrap();
    work
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn wait_file(p: &Path, want: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    while t.elapsed() < limit {
        if read(p).contains(want) {
            return t.elapsed();
        }
        thread::sleep(Duration::from_millis(5));
    }
    panic!(
        "{} never contained {want:?}; has {:?}",
        p.display(),
        read(p)
    );
}

fn reloads(w: &Path) -> usize {
    read(&w.join("reload.log")).lines().count()
}

/// A PUT of a watched key re-renders and runs reload_cmd; a write to an
/// unwatched key renders nothing; an unchanged render touches nothing.
#[test]
fn watch_mode_renders_on_put_only() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "one");
    let work = watch_dir("");
    let w = work.path();
    let r = Renderer::spawn(w, &["-node", &a.addr], &[]);
    let dest = w.join("out/app.conf");
    wait_file(&dest, "name=one", Duration::from_secs(10));
    r.wait_log(&["reload command ran"], 1, Duration::from_secs(5));
    assert_eq!(reloads(w), 1);
    let took = {
        put_kv(&a, "app/port", "8081");
        wait_file(&dest, "port=8081", Duration::from_secs(5))
    };
    assert!(took < Duration::from_secs(2), "{took:?}");
    r.wait_log(&["reload command ran"], 2, Duration::from_secs(5));
    assert_eq!(reloads(w), 2);
    r.wait_log(&["rendered", "changed=true"], 2, Duration::from_secs(5));
    let renders = r.count(&["rendered"]);
    let mtime = std::fs::metadata(&dest).unwrap().mtime_nsec();
    // unrelated writes: no render at all
    put_kv(&a, "web/other", "x");
    put_kv(&a, "application", "x");
    thread::sleep(Duration::from_millis(700));
    assert_eq!(
        r.count(&["rendered"]),
        renders,
        "an unwatched key caused a render:\n{}",
        r.log_text()
    );
    // a key under the watched prefix that the template doesn't print:
    // rendered, unchanged, no command, mtime kept
    let unchanged = r.count(&["rendered", "changed=false"]);
    put_kv(&a, "app/unused", "x");
    r.wait_log(
        &["rendered", "changed=false", "trigger=kv.list(app/)"],
        unchanged + 1,
        Duration::from_secs(5),
    );
    thread::sleep(Duration::from_millis(200));
    assert_eq!(std::fs::metadata(&dest).unwrap().mtime_nsec(), mtime);
    assert_eq!(reloads(w), 2, "a command ran for an unchanged file");
    assert_eq!(r.count(&["reload command ran"]), 2);
    // the per-render line names the src and the commands with exit codes
    r.wait_log(
        &[
            "template=",
            "app.tmpl",
            "changed=true",
            "commands=reload:exit 0 ",
        ],
        2,
        Duration::from_secs(1),
    );
    assert!(
        r.log_text().lines().all(|l| !l.contains('#')),
        "internal template names in the log:\n{}",
        r.log_text()
    );
}

/// -interval 1 picks up a change without blocking queries.
#[test]
fn interval_mode_polls() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "i1");
    let work = watch_dir("");
    let r = Renderer::spawn(work.path(), &["-node", &a.addr, "-interval", "1"], &[]);
    let dest = work.path().join("out/app.conf");
    wait_file(&dest, "name=i1", Duration::from_secs(10));
    put_kv(&a, "app/name", "i2");
    let took = wait_file(&dest, "name=i2", Duration::from_secs(5));
    assert!(took <= Duration::from_millis(2500), "{took:?}");
    drop(r);
}

/// A failing check_cmd keeps the old file; a failing reload_cmd keeps the daemon running.
#[test]
fn failing_commands() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "good");
    let work = watch_dir("check_cmd = \"! grep -q bad {{.src}}\"\n");
    let w = work.path();
    std::fs::write(
        w.join("conf.d/app.toml"),
        "[template]\nsrc = \"app.tmpl\"\ndest = \"out/app.conf\"\nkeys = [\"/app\"]\ncheck_cmd = \"! grep -q bad {{.src}}\"\nreload_cmd = \"echo boom; exit 7\"\n",
    )
    .unwrap();
    let r = Renderer::spawn(w, &["-node", &a.addr], &[]);
    let dest = w.join("out/app.conf");
    wait_file(&dest, "name=good", Duration::from_secs(10));
    r.wait_log(
        &["reload command failed", "exit 7"],
        1,
        Duration::from_secs(5),
    );
    put_kv(&a, "app/name", "bad");
    r.wait_log(&["check_cmd"], 1, Duration::from_secs(5));
    assert!(
        read(&dest).contains("name=good"),
        "check failure replaced the file"
    );
    assert_eq!(
        std::fs::read_dir(w.join("out")).unwrap().count(),
        1,
        "stage file left behind"
    );
    put_kv(&a, "app/name", "fine");
    wait_file(&dest, "name=fine", Duration::from_secs(5));
    r.wait_log(&["reload command failed"], 2, Duration::from_secs(5));
    // both commands, with exit codes, on the render's own line
    r.wait_log(
        &[
            "rendered",
            "app.tmpl",
            "commands=check:exit 0 ",
            "reload:exit 7 ",
        ],
        2,
        Duration::from_secs(5),
    );
}

/// Agent killed and restarted while watching: the file is never blanked and
/// the runner catches up after the restart.
#[test]
fn agent_restart_never_blanks() {
    let data = tempfile::tempdir().unwrap();
    let mut a = Agent::server(data.path(), &[]);
    put_kv(&a, "app/name", "before");
    let work = watch_dir("");
    let w = work.path();
    let dest = w.join("out/app.conf");
    let r = Renderer::spawn(w, &["-node", &a.addr], &[]);
    wait_file(&dest, "name=before", Duration::from_secs(10));
    let port = a.addr.rsplit_once(':').unwrap().1.to_string();
    a.kill9();
    // While the agent is down the file stays intact.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        assert!(
            read(&dest).contains("name=before"),
            "file changed while the agent was down"
        );
        thread::sleep(Duration::from_millis(50));
    }
    r.wait_log(&["fetch failed"], 1, Duration::from_secs(5));
    let a = Agent::server(data.path(), &["-http-port", &port]);
    put_kv(&a, "app/name", "after");
    wait_file(&dest, "name=after", Duration::from_secs(15));
    assert!(read(&dest).contains("port=80"));
}

/// A missing key fails only its template (error names key and template);
/// others are written; -onetime exits 1. Bad config exits 2.
#[test]
fn missing_key_and_exit_codes() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/port", "1");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("t")).unwrap();
    std::fs::write(w.join("t/ok.tmpl"), "p={{getv \"/app/port\"}}\n").unwrap();
    std::fs::write(w.join("t/bad.tmpl"), "n={{getv \"/app/missing\"}}\n").unwrap();
    let out = run_renderer(
        w,
        &[
            "-once",
            "-node",
            &a.addr,
            "-template",
            "t/ok.tmpl:out/ok.conf",
            "-template",
            "t/bad.tmpl:out/bad.conf",
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("app/missing") && out.stderr.contains("bad.tmpl"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&w.join("out/ok.conf")), "p=1\n");
    assert!(!w.join("out/bad.conf").exists());
    // A Go template (confd's syntax) renders as Go; a file mixing Go and
    // Handlebars syntax is refused with both lines; exit 2
    put_kv(&a, "x/1", "one");
    std::fs::write(
        w.join("t/go.tmpl"),
        "a\n{{range getvs \"/x/*\"}}{{.}}{{end}}\n",
    )
    .unwrap();
    let out = run_renderer(
        w,
        &[
            "-once",
            "-node",
            &a.addr,
            "-template",
            "t/go.tmpl:out/go.conf",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(read(&w.join("out/go.conf")), "a\none\n");
    std::fs::write(
        w.join("t/mixed.tmpl"),
        "{{#each (getvs \"/x/*\")}}{{this}}{{/each}}\n{{range getvs \"/x/*\"}}{{.}}{{end}}\n",
    )
    .unwrap();
    let out = run_renderer(
        w,
        &[
            "-once",
            "-node",
            &a.addr,
            "-template",
            "t/mixed.tmpl:out/mixed.conf",
        ],
        &[],
    );
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("t/mixed.tmpl")
            && out.stderr.contains("line 2")
            && out.stderr.contains("engine"),
        "{}",
        out.stderr
    );
    // agent unreachable in -onetime: exit 1, nothing written
    let out = run_renderer(
        w,
        &[
            "-once",
            "-node",
            "127.0.0.1:1",
            "-template",
            "t/ok.tmpl:out/none.conf",
        ],
        &[],
    );
    assert_eq!(out.code, 1);
    assert!(!w.join("out/none.conf").exists());
    // bad flags and config
    assert_eq!(run_renderer(w, &["-backend", "nope", "-once"], &[]).code, 2);
    assert_eq!(
        run_renderer(
            w,
            &["-once", "-wait", "9s:1s", "-template", "t/ok.tmpl:o"],
            &[]
        )
        .code,
        2
    );
    assert_eq!(
        run_renderer(w, &["-once", "-confdir", "/nonexistent"], &[]).code,
        2
    );
}

/// -noop logs a diff and writes nothing; -dry prints to stdout.
#[test]
fn noop_and_dry() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "n1");
    let work = watch_dir("");
    let w = work.path();
    std::fs::create_dir_all(w.join("out")).unwrap();
    std::fs::write(w.join("out/app.conf"), "port=80\nname=old\n").unwrap();
    let out = run_renderer(w, &["-once", "-noop", "-node", &a.addr], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("-name=old") && out.stderr.contains("+name=n1"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&w.join("out/app.conf")), "port=80\nname=old\n");
    assert_eq!(reloads(w), 0);
    let out = run_renderer(w, &["-once", "-dry", "-node", &a.addr], &[]);
    assert!(out.stdout.contains("name=n1"), "{}", out.stdout);
    assert_eq!(read(&w.join("out/app.conf")), "port=80\nname=old\n");
    let out = run_renderer(w, &["-once", "-sync-only", "-node", &a.addr], &[]);
    assert_eq!(out.code, 0);
    assert!(read(&w.join("out/app.conf")).contains("name=n1"));
    assert_eq!(reloads(w), 0, "-sync-only ran a command");
}

/// Owner and mode of an existing file are kept when none is configured.
#[test]
fn owner_and_mode_kept() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "m1");
    let work = watch_dir("");
    let w = work.path();
    std::fs::create_dir_all(w.join("out")).unwrap();
    let dest = w.join("out/app.conf");
    std::fs::write(&dest, "old").unwrap();
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o604)).unwrap();
    // a different owner, when we can (tests usually run as root)
    let chown_to = if unsafe { libc::geteuid() } == 0 {
        Some(65534u32)
    } else {
        None
    };
    if let Some(id) = chown_to {
        std::os::unix::fs::chown(&dest, Some(id), Some(id)).unwrap();
    }
    let out = run_renderer(w, &["-once", "-node", &a.addr], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = std::fs::metadata(&dest).unwrap();
    assert!(read(&dest).contains("name=m1"));
    assert_eq!(m.permissions().mode() & 0o777, 0o604);
    if let Some(id) = chown_to {
        assert_eq!((m.uid(), m.gid()), (id, id));
    }
}

/// SIGHUP picks up a new resource; an edit in conf.d applies without a signal.
#[test]
fn sighup_and_confd_edits() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "h1");
    put_kv(&a, "other/v", "o1");
    let work = watch_dir("");
    let w = work.path();
    let r = Renderer::spawn(w, &["-node", &a.addr], &[]);
    wait_file(&w.join("out/app.conf"), "name=h1", Duration::from_secs(10));
    std::fs::write(w.join("templates/other.tmpl"), "v={{getv \"/other/v\"}}\n").unwrap();
    std::fs::write(
        w.join("conf.d/other.toml"),
        "[template]\nsrc = \"other.tmpl\"\ndest = \"out/other.conf\"\n",
    )
    .unwrap();
    // picked up by the directory watch (no signal)
    wait_file(&w.join("out/other.conf"), "v=o1", Duration::from_secs(5));
    // and SIGHUP reloads too: edit a template, signal
    std::fs::write(
        w.join("templates/other.tmpl"),
        "value={{getv \"/other/v\"}}\n",
    )
    .unwrap();
    r.signal(libc::SIGHUP);
    wait_file(
        &w.join("out/other.conf"),
        "value=o1",
        Duration::from_secs(5),
    );
    put_kv(&a, "other/v", "o2");
    wait_file(
        &w.join("out/other.conf"),
        "value=o2",
        Duration::from_secs(5),
    );
    // only SIGHUP sees a -template source outside conf.d and templates
    // (those two are the only watched directories)
    std::fs::create_dir_all(w.join("elsewhere")).unwrap();
    std::fs::write(w.join("elsewhere/x.tmpl"), "x1={{getv \"/other/v\"}}\n").unwrap();
    drop(r);
    let r = Renderer::spawn(
        w,
        &["-node", &a.addr, "-template", "elsewhere/x.tmpl:out/x.conf"],
        &[],
    );
    wait_file(&w.join("out/x.conf"), "x1=o2", Duration::from_secs(10));
    std::fs::write(w.join("elsewhere/x.tmpl"), "x2={{getv \"/other/v\"}}\n").unwrap();
    thread::sleep(Duration::from_millis(600));
    assert!(
        read(&w.join("out/x.conf")).contains("x1="),
        "changed without SIGHUP"
    );
    r.signal(libc::SIGHUP);
    wait_file(&w.join("out/x.conf"), "x2=o2", Duration::from_secs(5));
    r.wait_log(&["resources reloaded", "SIGHUP"], 1, Duration::from_secs(1));
    // a broken edit keeps the old resources running
    std::fs::write(w.join("conf.d/broken.toml"), "[template]\nsrc = 1\n").unwrap();
    r.wait_log(&["reload failed"], 1, Duration::from_secs(5));
    put_kv(&a, "app/name", "h2");
    wait_file(&w.join("out/app.conf"), "name=h2", Duration::from_secs(5));
}

/// Exec mode: the child starts after the first render, gets the reload
/// signal on change, and its exit code becomes ours on shutdown.
#[test]
fn exec_mode_signals_child() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "e1");
    let work = watch_dir("");
    let w = work.path();
    child_script(
        w,
        "echo started >> child.log\ntrap 'echo hup >> child.log' HUP\ntrap 'echo term >> child.log; exit 3' TERM\nwhile true; do sleep 0.05; done\n",
    );
    let mut r = Renderer::spawn(
        w,
        &[
            "-node",
            &a.addr,
            "-exec",
            "./child.sh",
            "-exec-reload-signal",
            "SIGHUP",
            "-exec-kill-timeout",
            "5s",
        ],
        &[],
    );
    wait_file(&w.join("child.log"), "started", Duration::from_secs(10));
    assert!(
        read(&w.join("out/app.conf")).contains("name=e1"),
        "child started before the first render"
    );
    put_kv(&a, "app/name", "e2");
    wait_file(&w.join("child.log"), "hup", Duration::from_secs(5));
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(Duration::from_secs(10)), Some(3));
    assert!(read(&w.join("child.log")).contains("term"));
}

/// Debounce: with wait = "300ms:2s", a burst of changes renders once.
#[test]
fn debounce_wait() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "d0");
    let work = watch_dir("wait = \"300ms:2s\"\n");
    let w = work.path();
    let r = Renderer::spawn(w, &["-node", &a.addr], &[]);
    wait_file(&w.join("out/app.conf"), "name=d0", Duration::from_secs(10));
    r.wait_log(&["rendered", "changed=true"], 1, Duration::from_secs(5));
    burst_renders_once(&a, &r, &w.join("out/app.conf"), "d", 1);
}

/// Five quick changes of `app/name` (`<tag><from>`..`<tag>5`, 50 ms apart)
/// under a debounce: the last value lands, in a single render.
fn burst_renders_once(a: &Agent, r: &Renderer, dest: &Path, tag: &str, from: u32) {
    let before = r.count(&["rendered", "changed=true"]);
    for i in from..=5 {
        put_kv(a, "app/name", &format!("{tag}{i}"));
        thread::sleep(Duration::from_millis(50));
    }
    wait_file(dest, &format!("name={tag}5"), Duration::from_secs(5));
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        r.count(&["rendered", "changed=true"]),
        before + 1,
        "{}",
        r.log_text()
    );
}

/// `lookupSRV` resolves through DNS (here tribune's own, via TRIBUNE_DNS).
#[test]
fn lookup_srv_helper() {
    let dns = tribune_tests::free_port();
    let d = dns.to_string();
    let a = Agent::spawn(
        &[
            "agent",
            "-dev",
            "-http-port",
            "0",
            "-dns-port",
            &d,
            "-node",
            "n1",
        ],
        None,
    );
    for (id, port) in [("r1", 6379), ("r2", 6380)] {
        let r = client()
            .put(format!("{}/v1/agent/service/register", a.url))
            .json(&serde_json::json!({"Name": "redis", "ID": id, "Port": port, "Check": {"TTL": "60s", "Status": "passing"}}))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("t")).unwrap();
    std::fs::write(
        w.join("t/srv.tmpl"),
        "{{#each (lookupSRV \"redis\" \"tcp\" \"service.consul\")}}{{Target}}:{{Port}} {{/each}}\n",
    )
    .unwrap();
    let resolver = format!("127.0.0.1:{dns}");
    let t = Instant::now();
    loop {
        let out = run_renderer(
            w,
            &[
                "-once",
                "-node",
                &a.addr,
                "-template",
                "t/srv.tmpl:out/srv.conf",
            ],
            &[("TRIBUNE_DNS", &resolver)],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let got = read(&w.join("out/srv.conf"));
        if got == "n1.node.dc1.consul.:6379 n1.node.dc1.consul.:6380 \n" {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{got:?}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Exec mode without a reload signal: the child is restarted on change.
#[test]
fn exec_mode_restarts_child_without_reload_signal() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "r1");
    put_kv(&a, "app/must", "m");
    let work = watch_dir("");
    let w = work.path();
    std::fs::write(w.join("must.tmpl"), "m={{getv \"/app/must\"}}\n").unwrap();
    child_script(
        w,
        "echo started >> child.log\ntrap 'exit 0' TERM\nwhile true; do sleep 0.05; done\n",
    );
    let mut r = Renderer::spawn(
        w,
        &[
            "-node",
            &a.addr,
            "-exec",
            "./child.sh",
            "-exec-kill-timeout",
            "5s",
            "-template",
            "must.tmpl:out/must.conf",
        ],
        &[],
    );
    wait_file(&w.join("child.log"), "started", Duration::from_secs(10));
    put_kv(&a, "app/name", "r2");
    let t = Instant::now();
    while read(&w.join("child.log")).lines().count() < 2 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "child was not restarted"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(read(&w.join("out/app.conf")).contains("name=r2"));
    // a restart doesn't wait for another template that fails now
    let del = client()
        .delete(format!("{}/v1/kv/app/must", a.url))
        .send()
        .unwrap();
    assert_eq!(del.status(), 200);
    r.wait_log(&["render failed", "app/must"], 1, Duration::from_secs(5));
    put_kv(&a, "app/name", "r3");
    let t = Instant::now();
    while read(&w.join("child.log")).lines().count() < 3 {
        assert!(t.elapsed() < Duration::from_secs(5), "{}", r.log_text());
        thread::sleep(Duration::from_millis(20));
    }
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(Duration::from_secs(10)), Some(0));
}

/// The reference's confd layout: `-confdir ./ -config-file ./conf.d/config.toml`
/// with real confd config keys we don't use. The config file and a toml
/// without [template] are not resources; bad types still exit 2.
#[test]
fn confd_config_file_in_conf_d() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "cfg");
    let work = watch_dir("");
    let w = work.path();
    std::fs::write(
        w.join("conf.d/config.toml"),
        format!(
            "backend = \"consul\"\nnodes = [\"{}\"]\ninterval = 2\nprefix = \"/\"\nclient_cert = \"/etc/confd/c.pem\"\nclient_key = \"/etc/confd/k.pem\"\nclient_cakeys = \"/etc/confd/ca.pem\"\nsrv_domain = \"example.com\"\nauth_token = \"t\"\nbasic_auth = false\nusername = \"u\"\npassword = \"p\"\nscheme = \"http\"\ntable = \"kv\"\n",
            a.addr
        ),
    )
    .unwrap();
    std::fs::write(w.join("conf.d/notes.toml"), "owner = \"ops\"\n").unwrap();
    let out = run_renderer(
        w,
        &[
            "-onetime",
            "-confdir",
            "./",
            "-config-file",
            "./conf.d/config.toml",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(read(&w.join("out/app.conf")), "port=80\nname=cfg\n");
    assert!(
        out.stderr.contains("client_cert") && out.stderr.contains("notes.toml"),
        "{}",
        out.stderr
    );
    // daemon + edit in conf.d: the reload also skips the config file
    let r = Renderer::spawn(
        w,
        &[
            "-confdir",
            "./",
            "-config-file",
            "./conf.d/config.toml",
            "-watch",
        ],
        &[],
    );
    r.wait_log(&["rendered"], 1, Duration::from_secs(10));
    std::fs::write(
        w.join("templates/app.tmpl"),
        "edited={{getv \"/app/name\"}}\n",
    )
    .unwrap();
    wait_file(
        &w.join("out/app.conf"),
        "edited=cfg",
        Duration::from_secs(5),
    );
    r.wait_log(&["resources reloaded"], 1, Duration::from_secs(5));
    assert_eq!(r.count(&["reload failed"]), 0, "{}", r.log_text());
    assert_eq!(r.count(&["notes.toml"]), 1, "warned more than once");
    drop(r);
    // a supported key with a wrong type still fails
    std::fs::write(w.join("conf.d/config.toml"), "interval = \"soon\"\n").unwrap();
    let out = run_renderer(
        w,
        &[
            "-onetime",
            "-confdir",
            "./",
            "-config-file",
            "./conf.d/config.toml",
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("interval"), "{}", out.stderr);
}

fn child_script(w: &Path, body: &str) {
    std::fs::write(w.join("child.sh"), format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(w.join("child.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Exec mode signals: USR1/USR2/QUIT/WINCH are forwarded; a child ignoring
/// the kill signal gets SIGKILL after -exec-kill-timeout; -exec-kill-signal
/// is what the child gets; a child exiting on its own ends the runner with
/// its code.
#[test]
fn exec_mode_signal_handling() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "s1");
    let work = watch_dir("");
    let w = work.path();
    // forwarded signals, then SIGTERM ignored -> SIGKILL (128+9)
    child_script(
        w,
        "echo started >> child.log\nfor s in USR1 USR2 QUIT WINCH; do trap \"echo $s >> child.log\" $s; done\ntrap 'echo term-ignored >> child.log' TERM\nwhile true; do sleep 0.05; done\n",
    );
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = ["-node", a.addr.as_str(), "-exec", "./child.sh"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let spawn = |extra: &[&'static str]| {
        let v = args(extra);
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        Renderer::spawn(w, &v, &[])
    };
    let mut r = spawn(&["-exec-kill-timeout", "500ms"]);
    wait_file(&w.join("child.log"), "started", Duration::from_secs(10));
    for (sig, name) in [
        (libc::SIGUSR1, "USR1"),
        (libc::SIGUSR2, "USR2"),
        (libc::SIGQUIT, "QUIT"),
        (libc::SIGWINCH, "WINCH"),
    ] {
        r.signal(sig);
        wait_file(&w.join("child.log"), name, Duration::from_secs(5));
    }
    let t = Instant::now();
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(Duration::from_secs(5)), Some(128 + 9));
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    wait_file(&w.join("child.log"), "term-ignored", Duration::from_secs(1));
    r.wait_log(&["SIGKILL"], 1, Duration::from_secs(1));
    // -exec-kill-signal
    std::fs::remove_file(w.join("child.log")).unwrap();
    child_script(
        w,
        "echo started >> child.log\ntrap 'echo int >> child.log; exit 4' INT\nwhile true; do sleep 0.05; done\n",
    );
    let mut r = spawn(&["-exec-kill-signal", "SIGINT", "-exec-kill-timeout", "5s"]);
    wait_file(&w.join("child.log"), "started", Duration::from_secs(10));
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(Duration::from_secs(5)), Some(4));
    assert!(read(&w.join("child.log")).contains("int"));
    // the child exits on its own: so does the runner, with its code
    child_script(w, "sleep 0.2\nexit 5\n");
    let mut r = spawn(&[]);
    assert_eq!(r.wait_exit(Duration::from_secs(10)), Some(5));
}

/// A child that cannot be restarted doesn't kill the daemon: logged, retried
/// with backoff, started once it can be.
#[test]
fn exec_restart_failure_is_retried() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "f1");
    let work = watch_dir("");
    let w = work.path();
    child_script(
        w,
        "echo started >> child.log\ntrap 'exit 0' TERM\nwhile true; do sleep 0.05; done\n",
    );
    let r = Renderer::spawn(
        w,
        &[
            "-node",
            &a.addr,
            "-exec",
            "./child.sh",
            "-exec-kill-timeout",
            "5s",
        ],
        &[],
    );
    wait_file(&w.join("child.log"), "started", Duration::from_secs(10));
    std::fs::rename(w.join("child.sh"), w.join("child.off")).unwrap();
    put_kv(&a, "app/name", "f2");
    r.wait_log(
        &["child could not start; retrying"],
        2,
        Duration::from_secs(5),
    );
    assert!(read(&w.join("out/app.conf")).contains("name=f2"));
    std::fs::rename(w.join("child.off"), w.join("child.sh")).unwrap();
    let t = Instant::now();
    while read(&w.join("child.log")).lines().count() < 2 {
        assert!(t.elapsed() < Duration::from_secs(5), "{}", r.log_text());
        thread::sleep(Duration::from_millis(20));
    }
    // still watching
    put_kv(&a, "app/name", "f3");
    wait_file(&w.join("out/app.conf"), "name=f3", Duration::from_secs(5));
}

/// -node failover (first address dead), -prefix, and SIGTERM without -exec
/// exiting 0.
#[test]
fn node_failover_prefix_and_sigterm() {
    let a = Agent::dev(&[]);
    put_kv(&a, "pfx/app/name", "pre");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("t")).unwrap();
    std::fs::write(w.join("t/p.tmpl"), "name={{getv \"/app/name\"}}\n").unwrap();
    let out = run_renderer(
        w,
        &[
            "-once",
            "-node",
            "127.0.0.1:1",
            "-node",
            &a.addr,
            "-prefix",
            "/pfx",
            "-template",
            "t/p.tmpl:out/p.conf",
        ],
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(read(&w.join("out/p.conf")), "name=pre\n");
    // the daemon keeps failing over while watching, and stops cleanly
    let mut r = Renderer::spawn(
        w,
        &[
            "-node",
            "127.0.0.1:1",
            "-node",
            &a.addr,
            "-prefix",
            "pfx",
            "-template",
            "t/p.tmpl:out/p.conf",
        ],
        &[],
    );
    put_kv(&a, "pfx/app/name", "pre2");
    wait_file(&w.join("out/p.conf"), "name=pre2", Duration::from_secs(10));
    r.signal(libc::SIGTERM);
    assert_eq!(r.wait_exit(Duration::from_secs(5)), Some(0));
}

/// Global -wait debounces every template: a change waits at least `min`,
/// and a burst renders once.
#[test]
fn global_wait_debounces() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "g0");
    let work = watch_dir("");
    let w = work.path();
    let dest = w.join("out/app.conf");
    let r = Renderer::spawn(w, &["-node", &a.addr, "-wait", "400ms:3s"], &[]);
    wait_file(&dest, "name=g0", Duration::from_secs(10));
    r.wait_log(&["rendered", "changed=true"], 1, Duration::from_secs(5));
    let t = Instant::now();
    put_kv(&a, "app/name", "g1");
    wait_file(&dest, "name=g1", Duration::from_secs(5));
    assert!(
        t.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t.elapsed()
    );
    // the render line follows the write (it carries the reload's result)
    r.wait_log(&["rendered", "changed=true"], 2, Duration::from_secs(5));
    burst_renders_once(&a, &r, &dest, "g", 2);
}

/// Two templates reading the same key share one watch (one blocking query),
/// and both follow its changes.
#[test]
fn shared_dependency_one_watch() {
    let a = Agent::dev(&[]);
    put_kv(&a, "shared/k", "v1");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("t")).unwrap();
    std::fs::write(w.join("t/a.tmpl"), "a={{key \"shared/k\"}}\n").unwrap();
    std::fs::write(
        w.join("t/b.tmpl"),
        "b={{keyOrDefault \"shared/k\" \"x\"}}\n",
    )
    .unwrap();
    let r = Renderer::spawn(
        w,
        &[
            "-node",
            &a.addr,
            "-log-level",
            "debug",
            "-template",
            "t/a.tmpl:out/a.conf",
            "-template",
            "t/b.tmpl:out/b.conf",
        ],
        &[],
    );
    wait_file(&w.join("out/a.conf"), "a=v1", Duration::from_secs(10));
    wait_file(&w.join("out/b.conf"), "b=v1", Duration::from_secs(5));
    put_kv(&a, "shared/k", "v2");
    wait_file(&w.join("out/a.conf"), "a=v2", Duration::from_secs(5));
    wait_file(&w.join("out/b.conf"), "b=v2", Duration::from_secs(5));
    assert_eq!(
        r.count(&["watch started", "kv.key(shared/k)"]),
        1,
        "{}",
        r.log_text()
    );
}

/// SIGHUP re-reads -config-file (prefix here); a broken edit changes nothing.
#[test]
fn sighup_rereads_config_file() {
    let a = Agent::dev(&[]);
    put_kv(&a, "p1/name", "one");
    put_kv(&a, "p2/name", "two");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("t")).unwrap();
    std::fs::write(w.join("t/n.tmpl"), "name={{getv \"/name\"}}\n").unwrap();
    let cfg = |body: &str| std::fs::write(w.join("tribune.toml"), body).unwrap();
    cfg(&format!("nodes = [\"{}\"]\nprefix = \"/p1\"\n", a.addr));
    let r = Renderer::spawn(
        w,
        &[
            "-config-file",
            "tribune.toml",
            "-template",
            "t/n.tmpl:out/n.conf",
        ],
        &[],
    );
    let dest = w.join("out/n.conf");
    wait_file(&dest, "name=one", Duration::from_secs(10));
    cfg("prefix = 5\n");
    r.signal(libc::SIGHUP);
    r.wait_log(
        &["reload failed", "tribune.toml"],
        1,
        Duration::from_secs(5),
    );
    assert!(read(&dest).contains("name=one"));
    cfg(&format!("nodes = [\"{}\"]\nprefix = \"/p2\"\n", a.addr));
    r.signal(libc::SIGHUP);
    wait_file(&dest, "name=two", Duration::from_secs(5));
    // and the new prefix is watched
    put_kv(&a, "p2/name", "three");
    wait_file(&dest, "name=three", Duration::from_secs(5));
}

/// Debian's nginx as a logging reverse proxy in front of the agent: it
/// records the `X-Consul-Token` header of every request it passes on.
struct TokenLoggingProxy {
    child: std::process::Child,
    addr: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TokenLoggingProxy {
    fn start(upstream: &str) -> TokenLoggingProxy {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = tribune_tests::free_port();
        let log = d.join("access.log");
        let conf = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  log_format tok '$request_method $uri token=$http_x_consul_token';\n  \
             access_log {log} tok;\n  \
             server {{\n    listen 127.0.0.1:{port};\n    \
             location / {{ proxy_pass http://{upstream}; proxy_buffering off; proxy_read_timeout 700s; }}\n  }}\n}}\n",
            d = d.display(),
            log = log.display(),
        );
        std::fs::write(d.join("nginx.conf"), conf).unwrap();
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nginx");
        let child = std::process::Command::new(nginx)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(d.join("nginx.conf"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starting nginx (test.sh installs nginx-light)");
        let addr = format!("127.0.0.1:{port}");
        let t = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "nginx did not start");
            thread::sleep(Duration::from_millis(20));
        }
        TokenLoggingProxy {
            child,
            addr,
            log,
            _dir: dir,
        }
    }

    /// The `token=` values logged for requests to the KV API.
    fn kv_tokens(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("/v1/kv/"))
            .filter_map(|l| l.split("token=").nth(1).map(str::to_string))
            .collect()
    }
}

impl Drop for TokenLoggingProxy {
    /// SIGTERM: nginx's master stops its workers (a SIGKILLed master would
    /// leave them running).
    fn drop(&mut self) {
        stop_gracefully(&mut self.child, Duration::from_secs(10));
    }
}

/// The ACL token reaches the agent as `X-Consul-Token`, from
/// CONSUL_HTTP_TOKEN or from -token, as consul-template sends it; without
/// one, no header is sent.
#[test]
fn token_is_sent_to_the_agent() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "tok");
    let proxy = TokenLoggingProxy::start(&a.addr);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::write(w.join("t.tmpl"), "name={{key \"app/name\"}}\n").unwrap();
    // (runner flags, environment, the token nginx should log)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 3] = [
        (&[], &[("CONSUL_HTTP_TOKEN", "from-env")], "from-env"),
        (&["-token", "from-flag"], &[], "from-flag"),
        (&[], &[], "-"),
    ];
    for (i, (flags, envs, want)) in cases.into_iter().enumerate() {
        let dest = format!("out{i}.conf");
        let tmpl = format!("t.tmpl:{dest}");
        let mut args = vec!["-onetime", "-node", &proxy.addr, "-template", &tmpl];
        args.extend_from_slice(flags);
        let before = proxy.kv_tokens().len();
        let out = run_renderer(w, &args, envs);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(
            std::fs::read_to_string(w.join(&dest)).unwrap(),
            "name=tok\n"
        );
        // nginx writes its access log line once the answer has been sent.
        let t = Instant::now();
        let logged = loop {
            let all = proxy.kv_tokens();
            if all.len() > before || t.elapsed() > Duration::from_secs(5) {
                break all[before..].to_vec();
            }
            thread::sleep(Duration::from_millis(20));
        };
        assert!(!logged.is_empty(), "no KV request logged for case {i}");
        assert!(logged.iter().all(|t| t == want), "case {i}: {logged:?}");
    }
}

/// A work dir whose resource `app.toml` has `extra_toml` (check_cmd,
/// reload_cmd, ...) and renders `value={{getv "/app/name"}}` to out/app.conf.
fn value_dir(extra_toml: &str) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("conf.d")).unwrap();
    std::fs::create_dir_all(w.join("templates")).unwrap();
    std::fs::write(
        w.join("templates/app.tmpl"),
        "value={{getv \"/app/name\"}}\n",
    )
    .unwrap();
    std::fs::write(
        w.join("conf.d/app.toml"),
        format!(
            "[template]\nsrc = \"app.tmpl\"\ndest = \"out/app.conf\"\nkeys = [\"/app\"]\n{extra_toml}"
        ),
    )
    .unwrap();
    work
}

/// Log lines of `r` containing every needle.
fn lines(r: &Renderer, needles: &[&str]) -> Vec<String> {
    r.log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| needles.iter().all(|n| l.contains(n)))
        .cloned()
        .collect()
}

/// Issue 12.4: check_cmd and reload_cmd printing far more than a pipe holds
/// (`nginx -T` does) finish at once instead of blocking until their
/// timeout: both pipes are drained past the 16 KiB kept for the log, and
/// the log says the output was cut.
#[test]
fn command_output_past_the_cap_is_drained() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "1");
    // 200 KB on stdout and 100 KB on stderr, then the real check / reload.
    let noisy =
        "head -c 200000 /dev/zero | tr '\\\\0' o; head -c 100000 /dev/zero | tr '\\\\0' e >&2";
    let work = value_dir(&format!(
        "check_cmd = \"{noisy}; ! grep -q bad {{{{.src}}}}\"\nreload_cmd = \"{noisy}; echo reloaded >> reload.log\"\ncommand_timeout = \"10s\"\n"
    ));
    let w = work.path();
    let dest = w.join("out/app.conf");
    let r = Renderer::spawn(w, &["-node", &a.addr], &[]);
    wait_file(&dest, "value=1", Duration::from_secs(10));
    r.wait_log(&["reload command ran"], 1, Duration::from_secs(10));
    put_kv(&a, "app/name", "2");
    let took = wait_file(&dest, "value=2", Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "check_cmd blocked: {took:?}");
    r.wait_log(&["reload command ran"], 2, Duration::from_secs(10));
    assert_eq!(reloads(w), 2);
    // both commands well inside their 10 s timeout, on the render line
    let rendered = lines(
        &r,
        &["rendered", "changed=true", "check:exit 0", "reload:exit 0"],
    );
    assert_eq!(rendered.len(), 2, "{}", r.log_text());
    let ran = lines(&r, &["reload command ran"]);
    for l in &ran {
        assert!(
            l.contains("[stdout truncated: 200000 bytes, the first 16384 shown]")
                && l.contains("[stderr truncated: 100000 bytes, the first 16384 shown]"),
            "{l:.300}"
        );
        assert!(l.len() < 40_000, "{} bytes logged", l.len());
    }
    // a failing check with that much output: its error is cut the same way
    put_kv(&a, "app/name", "bad");
    r.wait_log(
        &["check_cmd", "failed (exit 1)"],
        1,
        Duration::from_secs(10),
    );
    let failed = lines(&r, &["check_cmd", "failed (exit 1)"]);
    assert!(
        failed[0].contains("[stdout truncated: 200000 bytes") && failed[0].len() < 40_000,
        "{:.300}",
        failed[0]
    );
    assert!(read(&dest).contains("value=2"));
}

/// Issue 12.7: a write that fails because of the destination (here its
/// directory is a file, then the destination is a directory) is retried
/// with backoff and no change of data: each distinct cause is logged once
/// as an error (the retries only at debug level), the recovery is logged,
/// and the reload runs. A failing check_cmd (bad content) is not retried.
#[test]
fn failed_write_is_retried_until_it_succeeds() {
    let a = Agent::dev(&[]);
    put_kv(&a, "app/name", "one");
    let work = value_dir(
        "check_cmd = \"! grep -q bad {{.src}}\"\nreload_cmd = \"echo reloaded >> reload.log\"\n",
    );
    let w = work.path();
    let out = w.join("out");
    let dest = out.join("app.conf");
    let r = Renderer::spawn(w, &["-node", &a.addr, "-log-level", "debug"], &[]);
    wait_file(&dest, "value=one", Duration::from_secs(10));
    r.wait_log(&["reload command ran"], 1, Duration::from_secs(5));
    // cause 1: the destination's directory is a file
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::write(&out, "not a directory").unwrap();
    put_kv(&a, "app/name", "two");
    r.wait_log(
        &[
            "ERROR",
            "not written",
            "will retry",
            "creating directory",
            "File exists",
        ],
        1,
        Duration::from_secs(5),
    );
    // retried on its own after ~1 s, the same cause not logged again
    r.wait_log(
        &["write still failing", "trigger=retry"],
        1,
        Duration::from_secs(5),
    );
    // cause 2: the destination is a directory
    std::fs::remove_file(&out).unwrap();
    std::fs::create_dir_all(&dest).unwrap();
    r.wait_log(
        &[
            "ERROR",
            "not written",
            "will retry",
            "renaming",
            "Is a directory",
        ],
        1,
        Duration::from_secs(10),
    );
    assert_eq!(
        lines(&r, &["ERROR", "not written"]).len(),
        2,
        "one error per distinct cause:\n{}",
        r.log_text()
    );
    // space is back, so to speak: the next retry writes it, no KV change
    std::fs::remove_dir(&dest).unwrap();
    let took = wait_file(&dest, "value=two", Duration::from_secs(15));
    r.wait_log(&["write recovered", "app.conf"], 1, Duration::from_secs(5));
    r.wait_log(
        &["rendered", "trigger=retry", "changed=true"],
        1,
        Duration::from_secs(5),
    );
    r.wait_log(&["reload command ran"], 2, Duration::from_secs(5));
    assert_eq!(reloads(w), 2);
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "stage file left behind"
    );
    assert!(took < Duration::from_secs(9), "{took:?}");
    // bad content: one error, no retry until the data changes
    put_kv(&a, "app/name", "bad");
    r.wait_log(&["ERROR", "check_cmd"], 1, Duration::from_secs(5));
    let retries = r.count(&["trigger=retry"]);
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(r.count(&["ERROR", "check_cmd"]), 1, "{}", r.log_text());
    assert_eq!(r.count(&["trigger=retry"]), retries, "{}", r.log_text());
    assert_eq!(
        r.count(&["rendered", "trigger=retry"]),
        1,
        "{}",
        r.log_text()
    );
    put_kv(&a, "app/name", "three");
    wait_file(&dest, "value=three", Duration::from_secs(5));
}

/// Issue 12.10: the agent restarts with less history (a dev agent: a new,
/// lower raft index). A blocking query at the old, higher index would sit
/// out the whole 60 s wait before the lower index showed; the first query
/// after a failed one starts from 0, so a change renders at once, in watch
/// mode and with -interval.
#[test]
fn agent_restart_with_lower_index_renders_at_once() {
    let mut a = Agent::dev(&[]);
    for i in 0..40 {
        put_kv(&a, "app/name", &format!("before{i}"));
    }
    let high = tribune_tests::index_of(
        &client()
            .get(format!("{}/v1/kv/app/name", a.url))
            .send()
            .unwrap(),
    );
    let watch = value_dir("");
    let poll = value_dir("");
    let rw = Renderer::spawn(watch.path(), &["-node", &a.addr], &[]);
    let _rp = Renderer::spawn(poll.path(), &["-node", &a.addr, "-interval", "1"], &[]);
    for w in [watch.path(), poll.path()] {
        wait_file(
            &w.join("out/app.conf"),
            "value=before39",
            Duration::from_secs(10),
        );
    }
    let port = a.addr.rsplit_once(':').unwrap().1.to_string();
    a.kill9();
    rw.wait_log(&["fetch failed"], 1, Duration::from_secs(5));
    let a = Agent::spawn(
        &["agent", "-dev", "-http-port", &port, "-dns-port", "-1"],
        None,
    );
    put_kv(&a, "app/name", "after");
    let low = tribune_tests::index_of(
        &client()
            .get(format!("{}/v1/kv/app/name", a.url))
            .send()
            .unwrap(),
    );
    assert!(
        low < high,
        "the restarted agent's index {low} is not below {high}"
    );
    let t = Instant::now();
    wait_file(
        &watch.path().join("out/app.conf"),
        "value=after",
        Duration::from_secs(20),
    );
    let watch_took = t.elapsed();
    wait_file(
        &poll.path().join("out/app.conf"),
        "value=after",
        Duration::from_secs(20),
    );
    let poll_took = t.elapsed();
    // the fetch backoff after the outage is at most a few seconds here
    assert!(watch_took < Duration::from_secs(8), "watch: {watch_took:?}");
    assert!(
        poll_took < Duration::from_secs(8),
        "-interval: {poll_took:?}"
    );
    // and it goes on following changes with blocking queries
    put_kv(&a, "app/name", "later");
    let took = wait_file(
        &watch.path().join("out/app.conf"),
        "value=later",
        Duration::from_secs(5),
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// Issue 13.3: confd's getting-started command line exactly as a user types
/// it, `=` forms and quotes included, with the guide's layout:
/// conf.d/config.toml is both `-config-file` and the one [template]
/// resource. It renders and follows changes, with no warning at all; the
/// messages for the near misses name the real problem.
#[test]
fn confd_guide_command_line() {
    let a = Agent::dev(&[]);
    put_kv(&a, "myapp/database/url", "db.example.com");
    put_kv(&a, "myapp/database/user", "rob");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    std::fs::create_dir_all(w.join("conf.d")).unwrap();
    std::fs::create_dir_all(w.join("templates")).unwrap();
    let dest = w.join("myconfig.conf");
    let resource = format!(
        "[template]\nsrc = \"myconfig.conf.tmpl\"\ndest = \"{}\"\nkeys = [\n    \"/myapp/database/url\",\n    \"/myapp/database/user\",\n]\n",
        dest.display()
    );
    std::fs::write(w.join("conf.d/config.toml"), &resource).unwrap();
    std::fs::write(
        w.join("templates/myconfig.conf.tmpl"),
        "[myconfig]\ndatabase_url = {{getv \"/myapp/database/url\"}}\ndatabase_user = {{getv \"/myapp/database/user\"}}\n",
    )
    .unwrap();
    let port = a.addr.rsplit_once(':').unwrap().1;
    let line = format!(
        "tribune-template -confdir=\"./\" -config-file=\"./conf.d/config.toml\" -interval=2 -backend consul -node localhost:{port}"
    );
    let mut cmd = std::process::Command::new("sh");
    // the user's shell does the quoting; exec so the guard stops the runner
    cmd.arg("-c")
        .arg(format!("exec {line}"))
        .current_dir(w)
        .env(
            "PATH",
            format!(
                "{}:{}",
                tribune_tests::bin("tribune-template")
                    .parent()
                    .unwrap()
                    .display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        );
    let r = Renderer::from_command(cmd);
    wait_file(
        &dest,
        "[myconfig]\ndatabase_url = db.example.com\ndatabase_user = rob\n",
        Duration::from_secs(10),
    );
    put_kv(&a, "myapp/database/user", "kelsey");
    let took = wait_file(&dest, "database_user = kelsey", Duration::from_secs(10));
    assert!(took < Duration::from_millis(4500), "-interval=2: {took:?}");
    assert!(
        lines(&r, &["WARN"]).is_empty() && lines(&r, &["ERROR"]).is_empty(),
        "{}",
        r.log_text()
    );
    drop(r);
    // near miss 1: the resource in a config file outside conf.d, which
    // confd does not load either; the warning says where resources go
    std::fs::remove_file(w.join("conf.d/config.toml")).unwrap();
    std::fs::write(w.join("confd.toml"), &resource).unwrap();
    let out = run_renderer(
        w,
        &[
            "-onetime",
            "-confdir=./",
            "-config-file=./confd.toml",
            "-node",
            &a.addr,
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("./confd.toml: its [template] table is not loaded")
            && out.stderr.contains("./conf.d/*.toml only")
            && out.stderr.contains(
                "no template resources: put *.toml files with a [template] table in ./conf.d"
            )
            && !out.stderr.contains("not supported"),
        "{}",
        out.stderr
    );
    // near miss 2: resource keys without their [template] line
    std::fs::write(
        w.join("conf.d/config.toml"),
        format!(
            "src = \"myconfig.conf.tmpl\"\ndest = \"{}\"\n",
            dest.display()
        ),
    )
    .unwrap();
    let out = run_renderer(
        w,
        &[
            "-onetime",
            "-confdir=./",
            "-config-file=./conf.d/config.toml",
            "-node",
            &a.addr,
        ],
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "key \"src\" is a [template] key, not a config key: put it under the [template] line"
        ) && out.stderr.contains("key \"dest\" is a [template] key"),
        "{}",
        out.stderr
    );
}
