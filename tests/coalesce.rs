//! Issue 18: a client agent merges identical blocking queries into one
//! upstream query. 1 server + 2 client agents on 127.0.0.1 (real
//! processes, HTTP port 0); the server's `consul.rpc.queries_blocking`
//! shows how many blocking queries reached it.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tribune_tests::{client, free_ports, index_of, wait_for, Agent};

/// Start one agent of the cluster (a server when `join` is `None`).
fn spawn(dir: &Path, name: &str, ports: (u16, u16), join: Option<u16>) -> Agent {
    spawn_with(dir, name, ports, join, &[])
}

/// [`spawn`] with `extra` flags last (they win).
fn spawn_with(
    dir: &Path,
    name: &str,
    ports: (u16, u16),
    join: Option<u16>,
    extra: &[String],
) -> Agent {
    let conf = dir.join("conf.json");
    std::fs::write(
        &conf,
        r#"{"performance": {"raft_multiplier": 1},
            "telemetry": {"disable_hostname": true, "prometheus_retention_time": "60s"},
            "limits": {"http_max_conns_per_client": 0}}"#,
    )
    .unwrap();
    let data = dir.join(name);
    let mut args: Vec<String> = vec!["agent".into()];
    if join.is_none() {
        args.extend(["-server", "-bootstrap-expect", "1"].map(String::from));
    }
    args.extend(
        [
            "-node",
            name,
            "-data-dir",
            data.to_str().unwrap(),
            "-http-port",
            "0",
            "-dns-port",
            "-1",
            "-server-port",
            &ports.0.to_string(),
            "-serf-lan-port",
            &ports.1.to_string(),
            "-retry-interval",
            "1s",
            "-config-file",
            conf.to_str().unwrap(),
        ]
        .map(String::from),
    );
    if let Some(serf) = join {
        args.extend(["-retry-join".into(), format!("127.0.0.1:{serf}")]);
    }
    args.extend(extra.iter().cloned());
    let a = Agent::start(&args, Some(data));
    a.wait_leader();
    a
}

/// A gauge's (or counter's) current value, from `/v1/agent/metrics?format=prometheus`
/// (sampled each second; the JSON form shows the last whole 10 s interval).
fn gauge(a: &Agent, name: &str) -> f64 {
    let text = client()
        .get(format!("{}/v1/agent/metrics?format=prometheus", a.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let prom = name.replace('.', "_");
    let total = format!("{prom}_total");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let rest = l
                .strip_prefix(total.as_str())
                .or_else(|| l.strip_prefix(prom.as_str()))?;
            rest.starts_with([' ', '{'])
                .then(|| rest.rsplit(' ').next()?.parse().ok())
                .flatten()
        })
        .unwrap_or(0.0)
}

/// A gauge in the JSON form of `/v1/agent/metrics`.
fn json_gauge(a: &Agent, name: &str) -> Option<f64> {
    let v: Value = client()
        .get(format!("{}/v1/agent/metrics", a.url))
        .send()
        .ok()?
        .json()
        .ok()?;
    v["Gauges"].as_array()?.iter().find(|g| g["Name"] == name)?["Value"].as_f64()
}

fn wait_gauge(a: &Agent, name: &str, want: f64) {
    let mut last = -1.0;
    let ok = tribune_tests::wait_until(Duration::from_secs(20), || {
        last = gauge(a, name);
        last == want
    });
    assert!(ok, "{name}: want {want}, last {last}");
}

/// A blocking GET in a thread: (status, X-Consul-Index, body, how long).
type Waiter = JoinHandle<(u16, u64, String, Duration)>;

fn waiter(http: &Arc<reqwest::blocking::Client>, url: String) -> Waiter {
    let http = http.clone();
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = http.get(&url).send().expect("blocking GET");
        let status = r.status().as_u16();
        let index = index_of(&r);
        (status, index, r.text().unwrap(), t.elapsed())
    })
}

#[test]
fn identical_blocking_queries_share_one_upstream_query() {
    let dir = tempfile::tempdir().unwrap();
    let p = free_ports(6);
    let server = spawn(dir.path(), "s0", (p[0], p[1]), None);
    let c0 = spawn(dir.path(), "c0", (p[2], p[3]), Some(p[1]));
    let c1 = spawn(dir.path(), "c1", (p[4], p[5]), Some(p[1]));
    let http = Arc::new(
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(0)
            .build()
            .unwrap(),
    );
    let put = |k: &str, v: &str| {
        let r = client()
            .put(format!("{}/v1/kv/{k}", server.url))
            .body(v.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    put("co/a", "one");
    let r = client()
        .get(format!("{}/v1/kv/co/a", c0.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = index_of(&r);
    wait_gauge(&server, "consul.rpc.queries_blocking", 0.0);

    // 200 identical blocking queries on c0: one upstream query.
    let queries = gauge(&server, "consul.rpc.query");
    let url = format!("{}/v1/kv/co/a?index={first}", c0.url);
    let many: Vec<Waiter> = (0..200).map(|_| waiter(&http, url.clone())).collect();
    wait_gauge(&c0, "tribune.coalesce.waiters", 200.0);
    wait_gauge(&server, "consul.rpc.queries_blocking", 1.0);
    let served = gauge(&server, "consul.rpc.query") - queries;
    assert!(
        (1.0..20.0).contains(&served),
        "consul.rpc.query grew by {served}"
    );
    // The JSON form shows it too, once its interval is over.
    wait_for(
        "queries_blocking 1 in the JSON form",
        Duration::from_secs(30),
        || (json_gauge(&server, "consul.rpc.queries_blocking") == Some(1.0)).then_some(()),
    );

    // A waiter's own wait ends on time (wait + up to wait/16 of jitter),
    // with the current index, while the shared query keeps waiting.
    let short = waiter(&http, format!("{url}&wait=1s")).join().unwrap();
    assert_eq!((short.0, short.1), (200, first), "{short:?}");
    assert!(
        short.3 >= Duration::from_secs(1) && short.3 < Duration::from_millis(2500),
        "wait=1s answered after {:?}",
        short.3
    );
    assert_eq!(gauge(&server, "consul.rpc.queries_blocking"), 1.0);
    assert_eq!(many.iter().filter(|h| h.is_finished()).count(), 0);

    // Another token, another `tag` filter, another client agent: not merged.
    let tokened = waiter(&http, format!("{url}&token=other-token"));
    let r = client()
        .put(format!("{}/v1/catalog/register", server.url))
        .body(r#"{"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "web", "Tags": ["a", "b"]}}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("{}/v1/health/service/web", c0.url))
        .send()
        .unwrap();
    let web = index_of(&r);
    let health = |tag: &str| {
        format!(
            "{}/v1/health/service/web?tag={tag}&index={web}&wait=10s",
            c0.url
        )
    };
    let tags = [waiter(&http, health("a")), waiter(&http, health("b"))];
    let other = waiter(&http, format!("{}/v1/kv/co/a?index={first}", c1.url));
    wait_gauge(&server, "consul.rpc.queries_blocking", 5.0);
    wait_gauge(&c0, "tribune.coalesce.waiters", 203.0);

    // One change answers them all, each with the change's index.
    put("co/a", "two");
    let changed = wait_for("the change's index", Duration::from_secs(10), || {
        let r = client()
            .get(format!("{}/v1/kv/co/a", server.url))
            .send()
            .ok()?;
        let i = index_of(&r);
        (i > first).then_some(i)
    });
    let two = "\"dHdv\""; // base64("two")
    let mut n = 0;
    for h in many.into_iter().chain([tokened, other]) {
        let (status, index, body, took) = h.join().unwrap();
        assert_eq!((status, index), (200, changed), "{body}");
        assert!(body.contains(two), "{body}");
        assert!(took < Duration::from_secs(60));
        n += 1;
    }
    assert_eq!(n, 202);
    // A waiter whose index is older than the latest answer's gets it at once.
    let old = waiter(&http, url.clone()).join().unwrap();
    assert_eq!((old.0, old.1), (200, changed));
    assert!(old.3 < Duration::from_secs(2), "{:?}", old.3);
    // The tag waiters were not woken by a KV write: they end by their wait.
    for h in tags {
        let (status, index, _, took) = h.join().unwrap();
        assert_eq!((status, index), (200, web));
        assert!(took >= Duration::from_secs(10), "{took:?}");
    }
    wait_gauge(&c0, "tribune.coalesce.waiters", 0.0);
    wait_gauge(&server, "consul.rpc.queries_blocking", 0.0);
}

/// `?cached` (Consul's agent cache) on a client agent: a miss, then hits
/// whose `Age` grows, kept fresh in the background (a prepared query's
/// execute is not); `max-age=0` fetches again; with the server gone, `stale-if-error` answers from the cache
/// and without it the error comes through. DNS with
/// `dns_config.use_cache` answers from the same cache: kept fresh, and
/// still answering with the server gone.
#[test]
fn agent_cache_hits_ages_and_serves_stale_on_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = free_ports(7);
    let mut server = spawn(dir.path(), "s0", (p[0], p[1]), None);
    let c0 = spawn(dir.path(), "c0", (p[2], p[3]), Some(p[1]));
    let use_cache = dir.path().join("dns-cache.json");
    std::fs::write(&use_cache, r#"{"dns_config": {"use_cache": true}}"#).unwrap();
    let dns = p[6].to_string();
    let c1 = spawn_with(
        dir.path(),
        "c1",
        (p[4], p[5]),
        Some(p[1]),
        &[
            "-dns-port".into(),
            dns.clone(),
            "-config-file".into(),
            use_cache.to_str().unwrap().into(),
        ],
    );
    let dig = || {
        let out = std::process::Command::new("dig")
            .args(["@127.0.0.1", "-p", &dns, "+time=2", "+tries=1", "+short"])
            .arg("web.service.consul")
            .output()
            .expect("dig must be installed (test.sh installs dnsutils)");
        let mut ips: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        ips.sort();
        ips
    };
    let register = |node: &str, addr: &str| {
        let r = client()
            .put(format!("{}/v1/catalog/register", server.url))
            .body(format!(
                r#"{{"Node": "{node}", "Address": "{addr}", "Service": {{"Service": "web"}}}}"#
            ))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    register("n1", "10.0.0.1");
    assert_eq!(dig(), ["10.0.0.1"]);
    let get = |path: &str, cc: Option<&str>| {
        let mut rb = client().get(format!("{}{path}", c0.url));
        if let Some(cc) = cc {
            rb = rb.header("Cache-Control", cc);
        }
        let r = rb.send().unwrap();
        let h = |n: &str| {
            r.headers()
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (x, age) = (h("x-cache"), h("age"));
        let status = r.status().as_u16();
        (
            status,
            x,
            age.parse::<u64>().unwrap_or(u64::MAX),
            r.text().unwrap(),
        )
    };
    let web = "/v1/health/service/web?cached";
    let (status, x, age, body) = get(web, None);
    assert_eq!((status, x.as_str(), age), (200, "MISS", 0), "{body}");
    assert!(body.contains("\"n1\""), "{body}");
    let (status, x, _, _) = get(web, None);
    assert_eq!((status, x.as_str()), (200, "HIT"));
    std::thread::sleep(Duration::from_millis(2200));
    let (_, x, age, _) = get(web, None);
    assert_eq!(x, "HIT");
    assert!((2..10).contains(&age), "Age {age}");
    let (status, x, age, _) = get(web, Some("max-age=0"));
    assert_eq!((status, x.as_str(), age), (200, "MISS", 0));
    // The background query brings a change into the entry.
    register("n2", "10.0.0.2");
    wait_for("n2 in the cached answer", Duration::from_secs(10), || {
        let (_, x, _, body) = get(web, None);
        (x == "HIT" && body.contains("\"n2\"")).then_some(())
    });
    wait_for(
        "n2 in the cached DNS answer",
        Duration::from_secs(10),
        || (dig() == ["10.0.0.1", "10.0.0.2"]).then_some(()),
    );
    let (status, x, _, _) = get("/v1/catalog/datacenters?cached", None);
    assert_eq!((status, x.as_str()), (200, "MISS"));
    let (status, x, _, body) = get("/v1/catalog/datacenters?cached", None);
    assert_eq!((status, x.as_str()), (200, "HIT"), "{body}");
    let (_, x, _, _) = get("/v1/catalog/services?cached", None);
    assert_eq!(x, "MISS");

    // A prepared query's execute is cached without a background refresh
    // (as Consul's cache type): a change stays out of the hits until
    // `max-age` asks again.
    let api = |node: &str| {
        let r = client()
            .put(format!("{}/v1/catalog/register", server.url))
            .body(format!(
                r#"{{"Node": "{node}", "Address": "10.0.1.1", "Service": {{"Service": "api", "Port": 9000}}}}"#
            ))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    api("a1");
    let r = client()
        .post(format!("{}/v1/query", c0.url))
        .body(r#"{"Name": "api-q", "Service": {"Service": "api"}}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
    let execute = "/v1/query/api-q/execute?cached";
    let (status, x, _, body) = get(execute, None);
    assert_eq!((status, x.as_str()), (200, "MISS"), "{body}");
    assert!(
        body.contains("\"a1\"") && body.contains("\"Failovers\""),
        "{body}"
    );
    api("a2");
    std::thread::sleep(Duration::from_millis(1500));
    let (status, x, age, body) = get(execute, None);
    assert_eq!((status, x.as_str()), (200, "HIT"), "{body}");
    assert!(age >= 1 && !body.contains("\"a2\""), "Age {age}: {body}");
    let (status, x, _, body) = get(execute, Some("max-age=0"));
    assert_eq!((status, x.as_str()), (200, "MISS"), "{body}");
    assert!(body.contains("\"a2\""), "{body}");
    let (_, x, _, _) = get("/v1/query/api-q/execute?cached&limit=1", None);
    assert_eq!(x, "MISS", "another limit is another entry");

    // Server gone: a hit still answers; a forced fetch fails, unless
    // stale-if-error allows the cached answer.
    server.kill9();
    let (status, x, _, _) = get(execute, None);
    assert_eq!((status, x.as_str()), (200, "HIT"));
    let (status, x, _, body) = get(web, None);
    assert_eq!((status, x.as_str()), (200, "HIT"), "{body}");
    let (status, x, _, body) = get(web, Some("max-age=0, stale-if-error=600"));
    assert_eq!((status, x.as_str()), (200, "HIT"), "{body}");
    assert!(body.contains("\"n2\""), "{body}");
    let (status, _, _, body) = get(web, Some("max-age=0"));
    assert_eq!(status, 500, "{body}");
    // DNS from the cache needs no server.
    assert_eq!(dig(), ["10.0.0.1", "10.0.0.2"], "{}", c1.log_text());
}
