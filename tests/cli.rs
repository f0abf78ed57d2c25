//! The `tribune` CLI against a real agent: Consul's messages and exit codes.

use tribune_tests::{run_cli, Agent};

/// put/get/delete, @file and stdin, -detailed, -recurse, -keys, -flags, -base64,
/// CAS success and failure, export/import, missing keys.
#[test]
fn kv_cli_round_trip() {
    let a = Agent::dev(&[]);
    let out = a.cli(&["kv", "put", "app/name", "tribune"], None);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "Success! Data written to: app/name")
    );
    let out = a.cli(&["kv", "get", "app/name"], None);
    assert_eq!((out.code, out.stdout.as_str()), (0, "tribune\n"));

    // @file and stdin
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("v.txt");
    std::fs::write(&f, "from-file").unwrap();
    let at = format!("@{}", f.display());
    assert_eq!(a.cli(&["kv", "put", "app/file", &at], None).code, 0);
    assert_eq!(
        a.cli(&["kv", "get", "app/file"], None).stdout,
        "from-file\n"
    );
    assert_eq!(
        a.cli(&["kv", "put", "app/stdin", "-"], Some(b"piped")).code,
        0
    );
    assert_eq!(a.cli(&["kv", "get", "app/stdin"], None).stdout, "piped\n");
    // flags and base64, Go-style flag spellings
    assert_eq!(
        a.cli(
            &["kv", "put", "-flags=42", "--base64", "app/b64", "aGVsbG8="],
            None
        )
        .code,
        0
    );
    let out = a.cli(&["kv", "get", "-detailed", "app/b64"], None);
    assert_eq!(out.code, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{}", out.stdout);
    assert!(lines[0].starts_with("CreateIndex      "), "{}", lines[0]);
    assert_eq!(lines[1], "Flags            42");
    assert_eq!(lines[2], "Key              app/b64");
    assert_eq!(lines[3], "LockIndex        0");
    assert!(lines[4].starts_with("ModifyIndex      "));
    assert_eq!(lines[5], "Session          -");
    assert_eq!(lines[6], "Value            hello");
    let modify: u64 = lines[4].split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(
        a.cli(&["kv", "get", "-base64", "app/b64"], None).stdout,
        "aGVsbG8=\n"
    );

    // CAS: wrong index fails with Consul's message and exit 1; right one succeeds
    let wrong = format!("-modify-index={}", modify + 99);
    let out = a.cli(&["kv", "put", "-cas", &wrong, "app/b64", "nope"], None);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        "Error! Did not write to app/b64: CAS failed"
    );
    let right = modify.to_string();
    let out = a.cli(
        &[
            "kv",
            "put",
            "-cas",
            "-modify-index",
            &right,
            "app/b64",
            "yes",
        ],
        None,
    );
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "Success! Data written to: app/b64")
    );
    let out = a.cli(&["kv", "put", "-cas", "app/b64", "x"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("-modify-index"), "{}", out.stderr);

    // recurse and keys
    let out = a.cli(&["kv", "get", "-recurse", "app/"], None);
    assert_eq!(
        out.stdout,
        "app/b64:yes\napp/file:from-file\napp/name:tribune\napp/stdin:piped\n"
    );
    assert_eq!(a.cli(&["kv", "put", "app/deep/x", "1"], None).code, 0);
    let out = a.cli(&["kv", "get", "-keys", "app/"], None);
    assert_eq!(
        out.stdout,
        "app/b64\napp/deep/\napp/file\napp/name\napp/stdin\n"
    );

    // missing key
    let out = a.cli(&["kv", "get", "app/none"], None);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.trim(), "Error! No key exists at: app/none");
    let out = a.cli(&["kv", "get"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("Missing KEY argument"));

    // export / import round trip under a new prefix
    let out = a.cli(&["kv", "export", "app/"], None);
    assert_eq!(out.code, 0);
    let exported: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(exported.as_array().unwrap().len(), 5);
    assert_eq!(exported[0]["key"], "app/b64");
    // the CAS put above carried no -flags, so flags went back to 0 (as in Consul)
    assert_eq!(exported[0]["flags"], 0);
    assert_eq!(exported[0]["value"], "eWVz");
    let out = a.cli(
        &["kv", "import", "-prefix", "copy/", "-"],
        Some(out.stdout.as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("Imported: copy/app/b64"));
    assert_eq!(
        a.cli(&["kv", "get", "copy/app/name"], None).stdout,
        "tribune\n"
    );
    // a bad import writes nothing
    let bad =
        br#"[{"key":"imp/ok","flags":0,"value":"eA=="},{"key":"imp/bad","flags":0,"value":"!!"}]"#;
    let out = a.cli(&["kv", "import", "-"], Some(bad));
    assert_eq!(out.code, 1);
    assert_eq!(a.cli(&["kv", "get", "imp/ok"], None).code, 1);

    // delete
    let out = a.cli(&["kv", "delete", "app/name"], None);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "Success! Deleted key: app/name")
    );
    let out = a.cli(&["kv", "delete", "-recurse", "copy/"], None);
    assert_eq!(
        (out.code, out.stdout.trim()),
        (0, "Success! Deleted keys with prefix: copy/")
    );
    assert_eq!(a.cli(&["kv", "get", "-recurse", "copy/"], None).stdout, "");
    let out = a.cli(&["kv", "delete", "-cas", "-recurse", "app/"], None);
    assert_eq!(out.code, 1);
}

/// Agent unreachable, bad flags, and version.
#[test]
fn cli_errors_and_version() {
    let out = run_cli("127.0.0.1:1", &["kv", "get", "x"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("Error querying"), "{}", out.stderr);
    let out = run_cli("127.0.0.1:1", &["kv", "get", "-no-such-flag", "x"], None);
    assert_eq!(out.code, 1);
    let out = run_cli("127.0.0.1:1", &["version"], None);
    assert_eq!(out.code, 0);
    assert!(out.stdout.starts_with("tribune v"));
    // a bad agent flag value fails clearly, before binding anything
    let out = run_cli(
        "127.0.0.1:1",
        &["agent", "-dev", "-http-port", "99999"],
        None,
    );
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("ports.http"), "{}", out.stderr);
    let out = run_cli("127.0.0.1:1", &["agent", "-server"], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("data-dir"), "{}", out.stderr);
}

/// The `-http-addr` flag overrides CONSUL_HTTP_ADDR.
#[test]
fn http_addr_flag() {
    let a = Agent::dev(&[]);
    let flag = format!("-http-addr={}", a.addr);
    let out = run_cli("127.0.0.1:1", &["kv", "put", &flag, "k", "v"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(a.cli(&["kv", "get", "k"], None).stdout, "v\n");
}
