//! Gossip encryption with real agents: `-encrypt`, the keyring file,
//! `tribune keyring` rotation across a cluster while it serves writes, and
//! what a wrong key, no key or a packet capture see.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribune_tests::{bin, client, free_ports, run_cli, wait_until, Agent};

fn keygen() -> String {
    let out = run_cli("127.0.0.1:1", &["keygen"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let key = out.stdout.trim().to_string();
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&key)
        .unwrap();
    assert_eq!(raw.len(), 32, "keygen prints 32 bytes, base64");
    key
}

/// An agent on fixed server/serf ports (others must know them), HTTP port 0.
fn spawn(dir: &Path, name: &str, ports: (u16, u16), server: bool, extra: &[String]) -> Agent {
    let data = dir.join(name);
    let perf = dir.join("perf.json");
    std::fs::write(&perf, r#"{"performance":{"raft_multiplier":1}}"#).unwrap();
    let mut args: Vec<String> = vec!["agent".into()];
    if server {
        args.extend(["-server", "-bootstrap-expect", "3"].map(String::from));
    }
    for (f, v) in [
        ("-node", name.to_string()),
        ("-data-dir", data.to_str().unwrap().to_string()),
        ("-http-port", "0".into()),
        ("-dns-port", "-1".into()),
        ("-server-port", ports.0.to_string()),
        ("-serf-lan-port", ports.1.to_string()),
        ("-retry-interval", "1s".into()),
        ("-config-file", perf.to_str().unwrap().to_string()),
    ] {
        args.push(f.into());
        args.push(v);
    }
    args.extend(extra.iter().cloned());
    Agent::start(&args, Some(data))
}

fn alive_members(a: &Agent) -> Vec<String> {
    let Ok(r) = client()
        .get(format!("{}/v1/agent/members", a.url))
        .timeout(Duration::from_secs(5))
        .send()
    else {
        return vec![];
    };
    let v: Value = r.json().unwrap_or(Value::Null);
    let mut names: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["Status"] == 1)
        .map(|m| m["Name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

fn stored_keys(a: &Agent) -> Vec<String> {
    let p = a.data_dir.as_ref().unwrap().join("serf/local.keyring");
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Run a one-off agent that tries to `-join` `target`; it must fail, and
/// its output is returned.
fn failed_join(dir: &Path, name: &str, target: u16, extra: &[&str]) -> String {
    let data = dir.join(name);
    let mut child = Command::new(bin("tribune"))
        .args([
            "agent",
            "-node",
            name,
            "-data-dir",
            data.to_str().unwrap(),
            "-http-port",
            "0",
            "-dns-port",
            "-1",
            "-serf-lan-port",
            "0",
            "-join",
            &format!("127.0.0.1:{target}"),
        ])
        .args(extra)
        .env_remove("CONSUL_HTTP_ADDR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name} did not give up joining within 30s");
        }
        thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{name} must not join");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// 3 servers and a client with `-encrypt`: the cluster forms and
/// replicates; a wrong key or no key cannot join and the logs say why; the
/// key is rotated with `tribune keyring` while writes go on; a restarted
/// server keeps its keyring without `-encrypt`.
#[test]
fn encrypted_cluster_rotates_its_key_while_serving_writes() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = keygen();
    let ports = free_ports(8);
    let sp: Vec<(u16, u16)> = (0..4).map(|i| (ports[2 * i], ports[2 * i + 1])).collect();
    let mut extra: Vec<String> = vec!["-encrypt".into(), k1.clone()];
    for p in &sp[..3] {
        extra.push("-retry-join".into());
        extra.push(format!("127.0.0.1:{}", p.1));
    }
    let mut servers: Vec<Agent> = (0..3)
        .map(|i| spawn(dir.path(), &format!("s{i}"), sp[i], true, &extra))
        .collect();
    let c0 = spawn(dir.path(), "c0", sp[3], false, &extra);
    let all = vec!["c0", "s0", "s1", "s2"];
    assert!(
        wait_until(Duration::from_secs(40), || alive_members(&c0) == all),
        "encrypted cluster did not form: {:?}\n{}",
        alive_members(&c0),
        servers[0].log_text()
    );
    assert!(servers[0].log_text().contains("Gossip Encryption: true"));
    // replicates: written on a server, read through the client
    assert!(wait_until(Duration::from_secs(30), || {
        client()
            .put(format!("{}/v1/kv/enc/a", servers[0].url))
            .body("one")
            .send()
            .is_ok_and(|r| r.status() == 200)
    }));
    let got = client()
        .get(format!("{}/v1/kv/enc/a?raw", c0.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(got, "one");
    for s in &servers {
        assert_eq!(stored_keys(s), vec![k1.clone()]);
    }

    // A wrong key and no key cannot join; both sides' logs say why.
    let wrong = failed_join(dir.path(), "wrong", sp[0].1, &["-encrypt", &keygen()]);
    assert!(wrong.contains("gossip key"), "{wrong}");
    let plain = failed_join(dir.path(), "plain", sp[0].1, &[]);
    assert!(plain.contains("no agent answered"), "{plain}");
    assert!(wait_until(Duration::from_secs(5), || {
        let log = servers[0].log_text();
        log.contains("No installed keys could decrypt the message")
            || log.contains("requires encryption")
    }));
    assert!(!alive_members(&c0)
        .iter()
        .any(|m| m == "wrong" || m == "plain"));
    // undecryptable packets are counted
    let metrics = client()
        .get(format!("{}/v1/agent/metrics", servers[0].url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("memberlist.udp.refused"),
        "refused packets counted: {metrics}"
    );

    // Rotation while writes go on.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let url = servers[1].url.clone();
        thread::spawn(move || {
            let c = client();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = c
                    .put(format!("{url}/v1/kv/rot/{}", i % 50))
                    .body(i.to_string())
                    .timeout(Duration::from_secs(10))
                    .send();
                if r.is_ok_and(|r| r.status() == 200) {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let k2 = keygen();
    let kr = |args: &[&str]| {
        let mut a = vec!["keyring"];
        a.extend_from_slice(args);
        let out = c0.cli(&a, None);
        assert_eq!(
            out.code, 0,
            "keyring {args:?}: {} {}",
            out.stdout, out.stderr
        );
        out.stdout
    };
    kr(&["-install", &k2]);
    let list = kr(&["-list"]);
    assert!(list.contains(&format!("{k1} [4/4]")), "{list}");
    assert!(list.contains(&format!("{k2} [4/4]")), "{list}");
    kr(&["-use", &k2]);
    // the primary cannot be removed
    let out = c0.cli(&["keyring", "-remove", &k2], None);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("primary"), "{}", out.stderr);
    kr(&["-remove", &k1]);
    let list = kr(&["-list"]);
    assert!(!list.contains(&k1), "{list}");
    assert!(list.contains(&format!("{k2} [4/4]")), "{list}");
    for s in &servers {
        assert_eq!(stored_keys(s), vec![k2.clone()]);
    }
    // gossip goes on with the new key: nobody is marked failed
    thread::sleep(Duration::from_secs(4));
    assert_eq!(alive_members(&servers[2]), all);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(ok.load(Ordering::Relaxed) > 10);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "writes failed during rotation"
    );

    // The old key no longer joins.
    let old = failed_join(dir.path(), "old", sp[0].1, &["-encrypt", &k1]);
    assert!(old.contains("gossip key"), "{old}");

    // A server restarted without -encrypt keeps the rotated keyring.
    servers[2].kill9();
    let retry: Vec<String> = sp[..2]
        .iter()
        .flat_map(|p| ["-retry-join".to_string(), format!("127.0.0.1:{}", p.1)])
        .collect();
    servers[2] = spawn(dir.path(), "s2", sp[2], true, &retry);
    assert!(servers[2].log_text().contains("Gossip Encryption: true"));
    assert!(
        wait_until(Duration::from_secs(30), || alive_members(&servers[2])
            == all),
        "restarted server did not rejoin: {:?}\n{}",
        alive_members(&servers[2]),
        servers[2].log_text()
    );
    assert_eq!(stored_keys(&servers[2]), vec![k2]);
}

/// `/v1/operator/keyring` answers its four methods only, refuses bad keys,
/// and says so when encryption is off.
#[test]
fn keyring_endpoint_methods_and_errors() {
    let key = keygen();
    let a = Agent::dev(&["-encrypt", &key]);
    let c = client();
    let url = format!("{}/v1/operator/keyring", a.url);
    let r = c.patch(&url).send().unwrap();
    assert_eq!(r.status(), 405);
    let allow = r.headers()["allow"].to_str().unwrap().to_string();
    for m in ["GET", "POST", "PUT", "DELETE"] {
        assert!(allow.contains(m), "{allow}");
    }
    let r = c.post(&url).body(r#"{"Key":"c2hvcnQ="}"#).send().unwrap();
    assert_eq!(r.status(), 400);
    let r = c.post(&url).body("not json").send().unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = c.get(&url).send().unwrap().json().unwrap();
    assert_eq!(v[0]["Keys"][&key], 1, "{v}");
    assert_eq!(v[0]["PrimaryKeys"][&key], 1, "{v}");
    assert_eq!(v[0]["NumNodes"], 1, "{v}");
    let r = c
        .put(&url)
        .body(format!(r#"{{"Key":"{}"}}"#, keygen()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().unwrap().contains("not in the keyring"));

    let plain = Agent::dev(&[]);
    let r = c
        .get(format!("{}/v1/operator/keyring", plain.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().unwrap().contains("not enabled"));
    let out = plain.cli(&["keyring", "-list"], None);
    assert_ne!(out.code, 0);
    let out = plain.cli(&["keyring"], None);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("Exactly one of"), "{}", out.stderr);
}

/// Every UDP datagram on the loopback interface to or from `port`, read
/// with a raw packet socket (we run as root) while `f` runs. A proxy cannot
/// stand in the middle: foca drops a message addressed to another address.
fn capture_udp(port: u16, f: impl FnOnce()) -> Vec<Vec<u8>> {
    // SAFETY: plain socket calls on a descriptor owned here.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        )
    };
    assert!(fd >= 0, "raw socket: {}", std::io::Error::last_os_error());
    let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = lo as i32;
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    unsafe {
        assert_eq!(
            libc::bind(
                fd,
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32
            ),
            0
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        );
    }
    let done = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::<Vec<u8>>::new()));
    let t = {
        let (done, seen) = (done.clone(), seen.clone());
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !done.load(Ordering::Relaxed) {
                let n =
                    unsafe { libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
                if n <= 0 {
                    continue;
                }
                let b = &buf[..n as usize];
                // IPv4, UDP
                if b.len() < 28 || b[0] >> 4 != 4 || b[9] != 17 {
                    continue;
                }
                let ihl = usize::from(b[0] & 0xf) * 4;
                let (sport, dport) = (
                    u16::from_be_bytes([b[ihl], b[ihl + 1]]),
                    u16::from_be_bytes([b[ihl + 2], b[ihl + 3]]),
                );
                if sport == port || dport == port {
                    seen.lock().unwrap().push(b[ihl + 8..].to_vec());
                }
            }
            unsafe { libc::close(fd) };
        })
    };
    f();
    done.store(true, Ordering::Relaxed);
    t.join().unwrap();
    let out = seen.lock().unwrap().clone();
    out
}

/// What travels between a server and an agent joining it, captured off
/// the wire: with `-encrypt` no node name shows and every packet is
/// sealed; without it the names show (so the check can fail).
#[test]
fn captured_gossip_shows_no_plaintext() {
    fn run(encrypt: Option<&str>) -> Vec<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(2);
        let serf = ports[1];
        let key: Vec<String> = encrypt
            .map(|k| vec!["-encrypt".to_string(), k.to_string()])
            .unwrap_or_default();
        let data = dir.path().join("s");
        let mut args: Vec<String> = [
            "agent",
            "-server",
            "-bootstrap-expect",
            "1",
            "-node",
            "server-one",
            "-http-port",
            "0",
            "-dns-port",
            "-1",
            "-server-port",
            &ports[0].to_string(),
            "-serf-lan-port",
            &serf.to_string(),
            "-data-dir",
            data.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec();
        args.extend(key.iter().cloned());
        let s = Agent::spawn(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            Some(data),
        );
        capture_udp(serf, || {
            let mut jargs: Vec<String> = [
                "agent",
                "-node",
                "secret-joiner-name",
                "-http-port",
                "0",
                "-dns-port",
                "-1",
                "-serf-lan-port",
                "0",
                "-join",
                &format!("127.0.0.1:{serf}"),
            ]
            .map(String::from)
            .to_vec();
            jargs.extend(key.iter().cloned());
            let j = Agent::spawn(&jargs.iter().map(String::as_str).collect::<Vec<_>>(), None);
            assert!(
                wait_until(Duration::from_secs(20), || alive_members(&s).len() == 2),
                "joined\n{}",
                j.log_text()
            );
            // a few probe rounds
            thread::sleep(Duration::from_secs(3));
        })
    }
    let has = |packets: &[Vec<u8>], s: &str| {
        packets
            .iter()
            .any(|p| p.windows(s.len()).any(|w| w == s.as_bytes()))
    };
    let plain = run(None);
    assert!(plain.len() > 4, "captured the gossip: {}", plain.len());
    assert!(
        has(&plain, "secret-joiner-name"),
        "plaintext gossip shows names"
    );
    assert!(has(&plain, "server-one"));
    let sealed = run(Some(&keygen()));
    assert!(sealed.len() > 4, "captured the gossip: {}", sealed.len());
    assert!(!has(&sealed, "secret-joiner-name"));
    assert!(!has(&sealed, "server-one"));
    assert!(sealed.iter().all(|p| p[0] == 0xA7), "every packet sealed");
}

/// `encrypt_verify_incoming = false` / `encrypt_verify_outgoing = false`:
/// the first step of turning encryption on in a running plaintext cluster
/// (Consul's rolling procedure): plaintext agents still join.
#[test]
fn verify_incoming_off_lets_plaintext_agents_join() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("enc.json");
    std::fs::write(
        &conf,
        format!(
            r#"{{"encrypt":"{}","encrypt_verify_incoming":false,"encrypt_verify_outgoing":false}}"#,
            keygen()
        ),
    )
    .unwrap();
    let s = Agent::server(
        &dir.path().join("s"),
        &["-config-file", conf.to_str().unwrap(), "-node", "rolling"],
    );
    let v: Value = client()
        .get(format!("{}/v1/agent/self", s.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let port = v["DebugConfig"]["SerfPortLAN"].as_u64().unwrap();
    let j = Agent::spawn(
        &[
            "agent",
            "-node",
            "plainjoiner",
            "-http-port",
            "0",
            "-dns-port",
            "-1",
            "-serf-lan-port",
            "0",
            "-join",
            &format!("127.0.0.1:{port}"),
        ],
        None,
    );
    assert!(wait_until(Duration::from_secs(20), || alive_members(&s)
        .len()
        == 2));
    drop(j);
}
