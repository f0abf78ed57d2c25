//! `tribune exec [-node RE] [-service RE] [-tag RE] [-wait 2s] [-verbose]
//! [-|command...]`: run a command on the agents that match, as Consul's
//! exec does. The job goes in the KV store under `<prefix>/<session>/job`
//! (held by a session of this command); a `_rexec` user event tells the
//! agents, which answer under `<prefix>/<session>/<node>/`: `ack`, output
//! chunks `out/00000`..., and `exit`. The command ends once no agent has
//! answered for `-wait` (twice that while some are still running).

use std::collections::HashSet;
use std::io::Read as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine;
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::common::HttpOpts;
use super::common::{cli_runtime, fail, on_signals};
use crate::apiclient::{key_path, ApiClient, Error as ApiClientError};
use gocompat::duration::parse_duration;

/// The event name and KV prefix Consul uses.
pub const REXEC_EVENT: &str = "_rexec";
const SESSION_TTL: &str = "15s";
const RENEW_EVERY: Duration = Duration::from_secs(5);

#[derive(Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    http: HttpOpts,
    /// Regular expression to filter on node names.
    #[arg(long)]
    node: Option<String>,
    /// Regular expression to filter on service instances.
    #[arg(long)]
    service: Option<String>,
    /// Regular expression to filter on service tags. Must be used with -service.
    #[arg(long)]
    tag: Option<String>,
    /// Prefix in the KV store to use for request data.
    #[arg(long, default_value = REXEC_EVENT)]
    prefix: String,
    /// Use a shell to run the command.
    #[arg(long)]
    shell: bool,
    #[arg(long = "no-shell", hide = true)]
    no_shell: bool,
    /// Period to wait with no responses before terminating execution.
    #[arg(long, default_value = "2s", value_name = "duration")]
    wait: String,
    /// Period to wait for replication before firing event. This is an
    /// optimization to allow stale reads to be performed.
    #[arg(long = "wait-repl", default_value = "200ms", value_name = "duration")]
    wait_repl: String,
    /// Enables verbose output.
    #[arg(long)]
    verbose: bool,
    /// The command, or `-` to read a script from stdin.
    command: Vec<String>,
}

/// What the agents are asked to run (Consul's `rExecSpec`).
struct Job {
    command: String,
    args: Vec<String>,
    script: Vec<u8>,
    wait: Duration,
}

impl Job {
    fn spec(&self) -> Vec<u8> {
        let mut v = serde_json::Map::new();
        if !self.command.is_empty() {
            v.insert("Command".into(), json!(self.command));
        }
        if !self.args.is_empty() {
            v.insert("Args".into(), json!(self.args));
        }
        if !self.script.is_empty() {
            let b64 = base64::engine::general_purpose::STANDARD.encode(&self.script);
            v.insert("Script".into(), json!(b64));
        }
        // A Go time.Duration: nanoseconds.
        v.insert("Wait".into(), json!(self.wait.as_nanos() as u64));
        Value::Object(v).to_string().into_bytes()
    }
}

fn usage() -> String {
    super::common::command_help(&["exec"])
}

/// The job from the arguments, or the message to fail with.
fn job_of(a: &ExecArgs, wait: Duration) -> Result<Job, String> {
    let shell = !a.no_shell;
    let mut job = Job {
        command: a.command.join(" "),
        args: Vec::new(),
        script: Vec::new(),
        wait,
    };
    if job.command == "-" {
        if !shell {
            return Err("Cannot configure -shell=false when reading from stdin".into());
        }
        job.command.clear();
        std::io::stdin()
            .read_to_end(&mut job.script)
            .map_err(|e| format!("Failed to read stdin: {e}\n\n{}", usage()))?;
    } else if !shell {
        job.command.clear();
        job.args = a.command.clone();
    }
    if job.command.is_empty() && job.script.is_empty() && job.args.is_empty() {
        return Err(format!("Must specify a command to execute\n\n{}", usage()));
    }
    let filters = [("node", &a.node), ("service", &a.service), ("tag", &a.tag)];
    for (what, re) in filters {
        if let Some(re) = re.as_deref().filter(|r| !r.is_empty()) {
            if let Err(e) = regex::Regex::new(re) {
                return Err(format!("Failed to compile {what} filter regexp: {e}"));
            }
        }
    }
    let given = |o: &Option<String>| o.as_deref().is_some_and(|s| !s.is_empty());
    if given(&a.tag) && !given(&a.service) {
        return Err("Cannot provide tag filter without service filter.".into());
    }
    Ok(job)
}

pub fn run(a: ExecArgs) -> ExitCode {
    let durations = (parse_duration(&a.wait), parse_duration(&a.wait_repl));
    let (Some(wait), Some(repl)) = durations else {
        return fail("invalid value for -wait or -wait-repl: use a duration like 2s");
    };
    let job = match job_of(&a, wait) {
        Ok(j) => j,
        Err(e) => return fail(e),
    };
    let rt = match cli_runtime() {
        Ok(rt) => rt,
        Err(e) => return fail(e),
    };
    rt.block_on(exec(a, job, repl))
}

/// Lines of `message`, each prefixed with the node (after `==>` for
/// status lines, spaces for output), as Consul's TargetedUI.
fn targeted(node: &str, arrow: bool, message: &str) -> String {
    let arrow = if arrow { "==>" } else { "   " };
    let mut out = String::new();
    for line in message.split('\n') {
        out.push_str(&format!("{arrow} {node}: {line}\n"));
    }
    out.trim_end().to_string()
}

async fn exec(a: ExecArgs, job: Job, repl: Duration) -> ExitCode {
    let api = ApiClient::new(a.http.async_config());
    if let Err(e) = api.call(Method::GET, "agent/self", &[], None).await {
        return fail(format!("Error querying Consul agent: {e}"));
    }
    let session = match create_session(&api).await {
        Ok(id) => id,
        Err(e) => return fail(format!("Failed to create session: {e}")),
    };
    if a.verbose {
        println!("Created remote execution session: {session}");
    }
    let renew = tokio::spawn(renew_session(api.clone(), session.clone()));
    let code = run_job(&api, &a, &job, &session, repl).await;
    renew.abort();
    // The session goes first: an agent can then no longer add results.
    let _ = api
        .call(
            Method::PUT,
            &format!("session/destroy/{session}"),
            &[],
            None,
        )
        .await;
    let dir = format!("{}/{session}", a.prefix.trim_end_matches('/'));
    let _ = api
        .call(
            Method::DELETE,
            &format!("kv/{}", key_path(&dir)),
            &[("recurse", String::new())],
            None,
        )
        .await;
    code
}

async fn create_session(api: &ApiClient) -> Result<String, ApiClientError> {
    let body = json!({"Name": "Remote Exec", "Behavior": "delete", "TTL": SESSION_TTL});
    let r = api
        .call(
            Method::PUT,
            "session/create",
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await?;
    let id = r
        .json()?
        .and_then(|v| v["ID"].as_str().map(str::to_string))
        .ok_or_else(|| ApiClientError::Decode("no session ID in the answer".into()))?;
    Ok(id)
}

async fn renew_session(api: ApiClient, id: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        if let Err(e) = api
            .call(Method::PUT, &format!("session/renew/{id}"), &[], None)
            .await
        {
            eprintln!("Session renew failed: {e}");
            return;
        }
    }
}

/// Upload, fire, and wait for the answers; the exit code.
async fn run_job(
    api: &ApiClient,
    a: &ExecArgs,
    job: &Job,
    session: &str,
    repl: Duration,
) -> ExitCode {
    let stop = on_signals();
    let dir = format!("{}/{session}", a.prefix.trim_end_matches('/'));
    let put = api
        .call(
            Method::PUT,
            &format!("kv/{}", key_path(&format!("{dir}/job"))),
            &[("acquire", session.to_string())],
            Some(job.spec()),
        )
        .await;
    match put {
        Ok(r) if r.body.as_ref() == b"true" => {}
        Ok(_) => {
            return fail(format!(
                "Failed to create job file: failed to acquire key {dir}/job"
            ))
        }
        Err(e) => return fail(format!("Failed to create job file: {e}")),
    }
    if a.verbose {
        println!("Uploaded remote execution spec");
    }
    tokio::select! {
        _ = tokio::time::sleep(repl) => {}
        _ = stop.cancelled() => return ExitCode::from(1),
    }
    let mut q: Vec<(&str, String)> = Vec::new();
    for (k, v) in [("node", &a.node), ("service", &a.service), ("tag", &a.tag)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            q.push((k, v.to_string()));
        }
    }
    let payload = json!({"Prefix": a.prefix, "Session": session}).to_string();
    let fired = api
        .call(
            Method::PUT,
            &format!("event/fire/{REXEC_EVENT}"),
            &q,
            Some(payload.into_bytes()),
        )
        .await;
    let id = match fired.and_then(|r| r.json()) {
        Ok(v) => v
            .and_then(|v| v["ID"].as_str().map(str::to_string))
            .unwrap_or_default(),
        Err(e) => return fail(format!("Failed to fire event: {e}")),
    };
    if a.verbose {
        println!("Fired remote execution event: {id}");
    }
    wait_for_job(api, &dir, job.wait, a.verbose, &stop).await
}

/// What an agent reported under the job's directory.
enum Answer {
    Ack(String),
    Heartbeat(String),
    Output(String, Vec<u8>),
    Exit(String, i64),
    Failed,
}

async fn wait_for_job(
    api: &ApiClient,
    dir: &str,
    wait: Duration,
    verbose: bool,
    stop: &tokio_util::sync::CancellationToken,
) -> ExitCode {
    let start = Instant::now();
    let (tx, mut rx) = mpsc::channel(128);
    let reader = tokio::spawn(stream_results(api.clone(), format!("{dir}/"), wait, tx));
    let (mut acks, mut exits, mut bad) = (0usize, 0usize, 0usize);
    let code = loop {
        let quiet = if acks > exits { wait * 2 } else { wait };
        let answer = tokio::select! {
            a = rx.recv() => a.unwrap_or(Answer::Failed),
            _ = tokio::time::sleep(quiet) => {
                println!("{exits} / {acks} node(s) completed / acknowledged");
                if verbose {
                    println!("Completed in {:.2} seconds", start.elapsed().as_secs_f64());
                }
                if exits < acks {
                    bad += 1;
                }
                break if bad > 0 { 2 } else { 0 };
            }
            _ = stop.cancelled() => break 1,
        };
        match answer {
            Answer::Ack(node) => {
                acks += 1;
                if verbose {
                    println!("{}", targeted(&node, true, "acknowledged"));
                }
            }
            Answer::Heartbeat(node) => {
                if verbose {
                    println!("{}", targeted(&node, true, "heartbeat received"));
                }
            }
            Answer::Output(node, out) => {
                println!("{}", targeted(&node, false, &String::from_utf8_lossy(&out)));
            }
            Answer::Exit(node, code) => {
                exits += 1;
                println!(
                    "{}",
                    targeted(&node, true, &format!("finished with exit code {code}"))
                );
                if code != 0 {
                    bad += 1;
                }
            }
            Answer::Failed => break 1,
        }
    };
    reader.abort();
    ExitCode::from(code)
}

/// Blocking reads of the job's keys; each new key becomes an [`Answer`].
async fn stream_results(api: ApiClient, dir: String, wait: Duration, tx: mpsc::Sender<Answer>) {
    let mut index = 0u64;
    let mut seen: HashSet<String> = HashSet::new();
    let wait_q = format!("{}ms", wait.as_millis().max(1));
    loop {
        let q = [
            ("keys", String::new()),
            ("index", index.to_string()),
            ("wait", wait_q.clone()),
        ];
        let r = match api
            .call(Method::GET, &format!("kv/{}", key_path(&dir)), &q, None)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("Failed to read results: {e}");
                let _ = tx.send(Answer::Failed).await;
                return;
            }
        };
        if r.index == index {
            if index == 0 {
                // No index to block on (not a Consul-compatible answer): pace.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            continue;
        }
        index = r.index;
        let keys: Vec<String> = r
            .json()
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        for full in in_order(keys) {
            if !seen.insert(full.clone()) {
                continue;
            }
            let key = full.strip_prefix(&dir).unwrap_or(&full).to_string();
            if let Some(a) = answer(&api, &full, &key).await {
                if tx.send(a).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// One answer's keys as they are to be told: a node's `exit` sorts before
/// its `out/...` chunks, so when both arrive in one answer the chunks go
/// first (the exit code ends the node's output).
fn in_order(mut keys: Vec<String>) -> Vec<String> {
    keys.sort_by_key(|k| k.ends_with("/exit"));
    keys
}

/// Read the value of a key that carries one.
async fn value(api: &ApiClient, full: &str) -> Option<Vec<u8>> {
    let r = api
        .call(
            Method::GET,
            &format!("kv/{}", key_path(full)),
            &[("raw", String::new())],
            None,
        )
        .await;
    match r {
        Ok(r) if r.status == 200 => Some(r.body.to_vec()),
        Ok(_) => {
            eprintln!("Failed to read key '{full}': <nil>");
            None
        }
        Err(e) => {
            eprintln!("Failed to read key '{full}': {e}");
            None
        }
    }
}

async fn answer(api: &ApiClient, full: &str, key: &str) -> Option<Answer> {
    if key == "job" {
        return None;
    }
    if let Some(node) = key.strip_suffix("/ack") {
        return Some(Answer::Ack(node.to_string()));
    }
    if let Some(node) = key.strip_suffix("/exit") {
        let v = value(api, full).await?;
        let text = String::from_utf8_lossy(&v).to_string();
        return match text.trim().parse::<i64>() {
            Ok(code) => Some(Answer::Exit(node.to_string(), code)),
            Err(e) => {
                eprintln!("Failed to parse exit code '{text}': {e}");
                None
            }
        };
    }
    if let Some(i) = key.rfind("/out/") {
        let node = key[..i].to_string();
        let v = value(api, full).await?;
        return Some(if v.is_empty() {
            Answer::Heartbeat(node)
        } else {
            Answer::Output(node, v)
        });
    }
    eprintln!("Unknown key '{key}', ignoring.");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_come_after_the_output_of_the_same_answer() {
        let keys = [
            "_rexec/s/n1/ack",
            "_rexec/s/n1/exit",
            "_rexec/s/n1/out/00000",
        ];
        let got = in_order(keys.iter().map(|k| k.to_string()).collect());
        assert_eq!(
            got,
            [
                "_rexec/s/n1/ack",
                "_rexec/s/n1/out/00000",
                "_rexec/s/n1/exit"
            ]
        );
    }

    #[test]
    fn output_is_prefixed_by_node() {
        assert_eq!(
            targeted("n1", false, "a\nb\n"),
            "    n1: a\n    n1: b\n    n1:"
        );
        assert_eq!(targeted("n1", true, "acknowledged"), "==> n1: acknowledged");
    }

    #[test]
    fn spec_is_consuls() {
        let j = Job {
            command: "uptime".into(),
            args: vec![],
            script: vec![],
            wait: Duration::from_secs(2),
        };
        let v: Value = serde_json::from_slice(&j.spec()).unwrap();
        assert_eq!(v, json!({"Command": "uptime", "Wait": 2_000_000_000u64}));
    }
}
