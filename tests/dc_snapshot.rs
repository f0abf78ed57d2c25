//! `/v1/snapshot?dc=` across two federated datacenters (real processes on
//! 127.0.0.1): a save through dc1 is dc2's state, a restore through dc1
//! replaces dc2's state only — by HTTP from a dc1 server and by
//! `tribune snapshot save|restore -datacenter dc2` through dc1's client.

use serde_json::Value;
use tribune_tests::wan::two_dcs;
use tribune_tests::{client, put_kv, Agent};

/// A key's raw value (`None`: 404).
fn raw(a: &Agent, key: &str) -> Option<String> {
    let r = client()
        .get(format!("{}/v1/kv/{key}?raw", a.url))
        .send()
        .unwrap();
    match r.status().as_u16() {
        404 => None,
        200 => Some(r.text().unwrap()),
        s => panic!("{key}: {s} {}", r.text().unwrap()),
    }
}

/// The top-level KV prefixes a snapshot file holds (`snapshot inspect`).
fn prefixes(a: &Agent, file: &str) -> Vec<String> {
    let out = a.cli(
        &[
            "snapshot",
            "inspect",
            "-kvdetails",
            "-kvdepth",
            "1",
            "-format",
            "json",
            file,
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let mut names: Vec<String> = v["StatsKV"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["Name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn snapshot_of_another_datacenter() {
    let dir = tempfile::tempdir().unwrap();
    let f = two_dcs(dir.path(), ["{}", "{}"]);
    put_kv(&f.c1, "only1/k", "dc1");
    put_kv(&f.c2, "only2/k", "before");

    // From a dc1 server, by HTTP: dc2's file, as a snapshot is served.
    let r = client()
        .get(format!("{}/v1/snapshot?dc=dc2", f.s1.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/octet-stream",
        "{:?}",
        r.headers()
    );
    assert!(r.headers().contains_key("x-consul-index"));
    let http_file = dir.path().join("http.snap");
    std::fs::write(&http_file, r.bytes().unwrap()).unwrap();
    let http_file = http_file.to_str().unwrap();
    assert_eq!(prefixes(&f.c1, http_file), ["only2"]);
    // No such datacenter: Consul's error, from the server and the client.
    for a in [&f.s1.agent, &f.c1] {
        let r = client()
            .get(format!("{}/v1/snapshot?dc=nowhere", a.url))
            .send()
            .unwrap();
        assert_eq!(r.status(), 500);
        assert_eq!(r.text().unwrap(), "No path to datacenter");
    }

    // Through dc1's client agent with the CLI's -datacenter.
    let file = dir.path().join("dc2.snap");
    let file = file.to_str().unwrap();
    let out =
        f.c1.cli(&["snapshot", "save", "-datacenter", "dc2", file], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("Saved and verified snapshot to index"),
        "{}",
        out.stdout
    );
    assert_eq!(prefixes(&f.c1, file), ["only2"]);

    // dc2 moves on; the restore through dc1 brings its saved state back
    // and leaves dc1 as it was.
    put_kv(&f.c2, "only2/k", "after");
    put_kv(&f.c2, "only2/new", "x");
    let out =
        f.c1.cli(&["snapshot", "restore", "-datacenter", "dc2", file], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), "Restored snapshot");
    assert_eq!(raw(&f.c2, "only2/k").as_deref(), Some("before"));
    assert_eq!(raw(&f.c2, "only2/new"), None);
    assert_eq!(raw(&f.c1, "only1/k").as_deref(), Some("dc1"));
    assert_eq!(raw(&f.c1, "only2/k"), None);

    // A restore by HTTP from a dc1 server: dc2 only, again.
    put_kv(&f.c2, "only2/k", "later");
    let r = client()
        .put(format!("{}/v1/snapshot?dc=dc2", f.s1.url))
        .body(std::fs::read(http_file).unwrap())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    assert_eq!(raw(&f.c2, "only2/k").as_deref(), Some("before"));
    assert_eq!(raw(&f.c1, "only1/k").as_deref(), Some("dc1"));
}
