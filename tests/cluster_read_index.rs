//! A follower's default reads by read index (issue 21): three real servers
//! (`support::servers`, `performance.raft_multiplier = 1`). A follower
//! answers a default read from its own state once it has applied the index
//! the leader gave it
//! (lease-checked; quorum-checked for `?consistent`): so every write
//! acknowledged before the read is in the answer, the headers are the
//! leader's, and a follower that cannot reach a leader answers an error,
//! never its possibly stale state.

use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use tribune_tests::servers::{three_servers, Member};
use tribune_tests::{client, paused, wait_for};

struct Cluster {
    _dir: tempfile::TempDir,
    servers: Vec<Member>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let servers = three_servers(dir.path(), "s");
        Cluster { _dir: dir, servers }
    }

    fn url(&self, i: usize) -> &str {
        &self.servers[i].url
    }

    fn leader_of(&self, i: usize) -> Option<usize> {
        let r = client()
            .get(format!("{}/v1/status/leader", self.url(i)))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?;
        let leader: String = r.json().ok()?;
        self.servers.iter().position(|m| m.rpc == leader)
    }

    /// Until every server names one leader and it takes a write; its index.
    fn wait_leader(&self) -> usize {
        wait_for("an agreed leader", Duration::from_secs(30), || {
            let l = self.leader_of(0)?;
            ((1..3).all(|i| self.leader_of(i) == Some(l))
                && put(self.url(l), "probe", "x").is_some_and(|r| r.status() == 200))
            .then_some(l)
        })
    }
}

fn put(url: &str, key: &str, value: &str) -> Option<Response> {
    client()
        .put(format!("{url}/v1/kv/{key}"))
        .timeout(Duration::from_secs(15))
        .body(value.to_string())
        .send()
        .ok()
}

fn get(url: &str, key: &str, query: &str) -> Response {
    client()
        .get(format!("{url}/v1/kv/{key}?raw{query}"))
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap()
}

fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map_or("", |v| v.to_str().unwrap_or(""))
}

/// A write the leader acknowledged (or a follower's forwarded write) is in
/// the very next default read on a follower, every time; the answer has
/// the leader's headers; `?consistent` and `?stale` keep their meaning.
#[test]
fn follower_default_reads_see_every_acknowledged_write() {
    let c = Cluster::start();
    let l = c.wait_leader();
    let (f, g) = ((l + 1) % 3, (l + 2) % 3);
    for i in 0..300 {
        let v = format!("v{i}");
        // Alternately through the leader and through the other follower.
        let via = if i % 2 == 0 { l } else { g };
        let r = put(c.url(via), "ri/k", &v).expect("write answered");
        assert_eq!(r.text().unwrap(), "true", "write {i} via s{via}");
        let q = if i % 3 == 0 { "&consistent" } else { "" };
        let r = get(c.url(f), "ri/k", q);
        assert_eq!(r.status(), 200, "read {i}{q} on follower s{f}");
        assert_eq!(
            r.text().unwrap(),
            v,
            "read {i}{q} on follower s{f} after the ack"
        );
    }

    // Headers: the leader's, for the same state.
    let on_leader = get(c.url(l), "ri/k", "");
    let r = get(c.url(f), "ri/k", "");
    assert_eq!(
        header(&r, "x-consul-index"),
        header(&on_leader, "x-consul-index")
    );
    assert_eq!(header(&r, "x-consul-knownleader"), "true");
    assert_eq!(header(&r, "x-consul-lastcontact"), "0");
    assert_eq!(header(&r, "x-consul-effective-consistency"), "leader");
    let r = get(c.url(f), "ri/k", "&consistent");
    assert_eq!(header(&r, "x-consul-effective-consistency"), "consistent");
    assert_eq!(
        header(&r, "x-consul-index"),
        header(&on_leader, "x-consul-index")
    );
    assert_eq!(header(&r, "x-consul-knownleader"), "true");
    // A missing key: 404 with the index headers, as on the leader.
    let r = get(c.url(f), "ri/missing", "");
    assert_eq!(r.status(), 404);
    assert_eq!(header(&r, "x-consul-knownleader"), "true");
    assert!(!header(&r, "x-consul-index").is_empty());
    // Listings and the catalog are answered the same way.
    let keys: Vec<String> = client()
        .get(format!("{}/v1/kv/ri/?keys", c.url(f)))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(keys, ["ri/k"]);
    let nodes: serde_json::Value = client()
        .get(format!("{}/v1/catalog/nodes", c.url(f)))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(nodes.as_array().map(Vec::len), Some(3), "{nodes}");

    // ?stale: the follower's own view, its own headers.
    let r = get(c.url(f), "ri/k", "&stale");
    assert_eq!(header(&r, "x-consul-effective-consistency"), "stale");
    assert_eq!(r.text().unwrap(), "v299");

    // A blocking read on a follower still waits for a change and sees it.
    let index: u64 = header(&get(c.url(f), "ri/k", ""), "x-consul-index")
        .parse()
        .unwrap();
    let url = c.url(f).to_string();
    let blocked = thread::spawn(move || {
        let t = Instant::now();
        let r = get(&url, "ri/k", &format!("&index={index}&wait=20s"));
        (t.elapsed(), r.text().unwrap())
    });
    thread::sleep(Duration::from_millis(500));
    assert_eq!(
        put(c.url(l), "ri/k", "after").unwrap().text().unwrap(),
        "true"
    );
    let (took, body) = blocked.join().unwrap();
    assert_eq!(body, "after");
    assert!(took >= Duration::from_millis(400), "it waited: {took:?}");
    for a in &c.servers {
        assert!(!a.log_text().contains("panicked"), "{}", a.log_text());
    }
}

/// A follower that cannot reach a leader (the other two servers stopped)
/// answers a default read with an error within bounds, never the value it
/// holds; `?stale` still answers it. With the leader alone stopped, the
/// two left elect one and the follower answers the newest write.
#[test]
fn cut_off_follower_answers_an_error_not_stale_data() {
    let c = Cluster::start();
    let l = c.wait_leader();
    let (f, g) = ((l + 1) % 3, (l + 2) % 3);
    assert_eq!(
        put(c.url(l), "cut/k", "old").unwrap().text().unwrap(),
        "true"
    );
    assert_eq!(get(c.url(f), "cut/k", "").text().unwrap(), "old");

    // Leader and the other follower stopped: no leader anywhere.
    let stopped = [c.servers[l].child.id(), c.servers[g].child.id()].map(paused);
    for q in ["", "&consistent"] {
        let t = Instant::now();
        let r = get(c.url(f), "cut/k", q);
        let took = t.elapsed();
        let status = r.status();
        let body = r.text().unwrap();
        assert_ne!(
            status, 200,
            "read{q} on a cut-off follower answered {body:?}"
        );
        assert_eq!(status, 500, "read{q}: {body}");
        assert!(body.contains("No cluster leader"), "read{q}: {body}");
        assert!(
            took < Duration::from_secs(12),
            "read{q} answered after {took:?}"
        );
    }
    let r = get(c.url(f), "cut/k", "&stale");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "old");
    drop(stopped);
    let l = c.wait_leader();

    // The leader alone stopped: a new one is elected and takes a write;
    // no default read on the follower answers the old value after that.
    let stopped = paused(c.servers[l].child.id());
    let n = wait_for("a new leader", Duration::from_secs(15), || {
        (0..3)
            .filter(|i| *i != l)
            .find_map(|i| c.leader_of(i).filter(|x| *x != l))
    });
    let f = (0..3).find(|i| *i != l && *i != n).unwrap();
    let r = put(c.url(n), "cut/k", "new").expect("write answered");
    assert_eq!(r.text().unwrap(), "true", "write via the new leader s{n}");
    let t = Instant::now();
    let mut answered = 0;
    while t.elapsed() < Duration::from_secs(2) {
        let r = get(c.url(f), "cut/k", "");
        if r.status() == 200 {
            assert_eq!(r.text().unwrap(), "new", "default read on s{f}");
            answered += 1;
        }
    }
    assert!(
        answered > 0,
        "the follower answered once a new leader was elected"
    );
    drop(stopped);
}
