//! Remote execution (`tribune exec`), the agent's side, as Consul's
//! `agent/remote_exec.go`: a `_rexec` user event names a KV prefix and a
//! session; the agent reads the job at `<prefix>/<session>/job`, runs it,
//! and writes `ack`, output chunks (`out/00000`, 4 KiB each, flushed after
//! 500 ms without output; an empty chunk as heartbeat) and `exit` under
//! `<prefix>/<session>/<node>/`, each held by the session so nothing is
//! left once it ends. Off unless `disable_remote_exec = false`.
//!
//! KV access goes through the agent's own HTTP API in-process (the same
//! router, with forwarding), so a client agent reaches the servers exactly
//! as its API callers do.
//!
//! Bounds: at most [`MAX_JOBS`] jobs run at once (more are refused); a
//! job's output is kept to [`MAX_OUTPUT`] bytes; a job whose results can
//! no longer be written (its session ended) is killed.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::{mpsc, Semaphore};
use tower::ServiceExt;

use crate::app::Shared;
use crate::events::UserEvent;

/// The user event that carries a job.
pub const EVENT: &str = crate::events::REMOTE_EXEC_EVENT;
/// Output chunk size and the idle time after which a partial chunk goes.
const CHUNK: usize = 4 * 1024;
const CHUNK_IDLE: Duration = Duration::from_millis(500);
/// Output kept per job; beyond it the rest is discarded.
pub const MAX_OUTPUT: usize = 1024 * 1024;
/// Jobs running at once on one agent.
pub const MAX_JOBS: usize = 8;
/// Largest job specification read.
const MAX_SPEC: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("failed to decode remote exec event: {0}")]
    Event(String),
    #[error("{0}")]
    Api(String),
    #[error("failed to decode remote exec spec: {0}")]
    Spec(String),
    #[error("write failed")]
    WriteFailed,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ExecEvent {
    prefix: String,
    session: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Spec {
    command: String,
    args: Option<Vec<String>>,
    /// base64, as Go encodes `[]byte`.
    script: Option<String>,
    /// Nanoseconds (Go's `time.Duration`).
    wait: u64,
}

/// Runs jobs for one agent.
pub struct RemoteExec {
    state: Shared,
    /// The agent's API router (with the pipeline), called in-process.
    api: Router,
    slots: Arc<Semaphore>,
}

impl RemoteExec {
    pub fn new(state: Shared, api: Router) -> Arc<Self> {
        Arc::new(Self {
            state,
            api,
            slots: Arc::new(Semaphore::new(MAX_JOBS)),
        })
    }

    /// A `_rexec` event passed this agent's filters: run its job.
    pub fn handle(self: &Arc<Self>, ev: UserEvent) {
        tracing::debug!(event_id = %ev.id, "received remote exec event");
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            tracing::warn!(
                event_id = %ev.id,
                "remote exec refused: {MAX_JOBS} jobs already running"
            );
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.run(&ev).await {
                tracing::error!(event_id = %ev.id, error = %e, "remote exec failed");
            }
            drop(permit);
        });
    }

    /// One request to the agent's own API; status and body.
    async fn api(
        &self,
        method: Method,
        uri: String,
        body: Vec<u8>,
    ) -> Result<(StatusCode, Bytes), ExecError> {
        let mut req = Request::builder().method(method).uri(uri);
        // The agent's own work acts with its `agent` token (Consul's).
        if let Some(t) = self.state.acl_tokens.agent_token() {
            req = req.header("x-consul-token", &*t);
        }
        let req = req
            .body(Body::from(body))
            .map_err(|e| ExecError::Api(e.to_string()))?;
        let resp = self
            .api
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| ExecError::Api(e.to_string()))?;
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), MAX_SPEC)
            .await
            .map_err(|e| ExecError::Api(e.to_string()))?;
        Ok((status, body))
    }

    async fn run(&self, ev: &UserEvent) -> Result<(), ExecError> {
        let event: ExecEvent =
            serde_json::from_slice(&ev.payload).map_err(|e| ExecError::Event(e.to_string()))?;
        let Some(spec) = self.spec(&event).await? else {
            tracing::debug!("remote exec aborted, job spec missing");
            return Ok(());
        };
        let job = Job {
            exec: self,
            event,
            node: self.state.config.node_name.clone(),
        };
        job.write("ack", Vec::new()).await?;
        let code = job.execute(spec).await;
        job.write("exit", code.to_string().into_bytes()).await
    }

    /// The job, read stale first (it was written just before the event)
    /// and consistently when that finds nothing.
    async fn spec(&self, ev: &ExecEvent) -> Result<Option<Spec>, ExecError> {
        let key = format!("{}/{}/job", ev.prefix.trim_end_matches('/'), ev.session);
        let path = format!("/v1/kv/{}", crate::apiclient::key_path(&key));
        for q in ["?raw&stale", "?raw"] {
            let (status, body) = self.api(Method::GET, format!("{path}{q}"), vec![]).await?;
            match status {
                StatusCode::OK => {
                    return serde_json::from_slice(&body)
                        .map(Some)
                        .map_err(|e| ExecError::Spec(e.to_string()))
                }
                StatusCode::NOT_FOUND => continue,
                s => return Err(ExecError::Api(format!("reading the job: {s}"))),
            }
        }
        Ok(None)
    }
}

struct Job<'a> {
    exec: &'a RemoteExec,
    event: ExecEvent,
    node: String,
}

impl Job<'_> {
    /// Write `<prefix>/<session>/<node>/<suffix>`, held by the session.
    async fn write(&self, suffix: &str, value: Vec<u8>) -> Result<(), ExecError> {
        let key = format!(
            "{}/{}/{}/{suffix}",
            self.event.prefix.trim_end_matches('/'),
            self.event.session,
            self.node
        );
        let uri = format!(
            "/v1/kv/{}?acquire={}",
            crate::apiclient::key_path(&key),
            crate::apiclient::key_path(&self.event.session)
        );
        let (status, body) = self.exec.api(Method::PUT, uri, value).await?;
        if status == StatusCode::OK && body.as_ref() == b"true" {
            Ok(())
        } else {
            Err(ExecError::WriteFailed)
        }
    }

    /// Run the job, streaming its output; its exit code (255 when it
    /// could not be started or its results not written).
    async fn execute(&self, spec: Spec) -> i32 {
        let script_file = match spec.script.as_deref().filter(|s| !s.is_empty()) {
            Some(b64) => match spill(b64) {
                Ok(f) => Some(f),
                Err(e) => {
                    tracing::debug!(error = %e, "failed to make tmp file");
                    return 255;
                }
            },
            None => None,
        };
        let mut cmd = match (&spec.args, &script_file) {
            (Some(args), None) if !args.is_empty() => {
                let mut c = tokio::process::Command::new(&args[0]);
                c.args(&args[1..]);
                c
            }
            _ => {
                let script = match &script_file {
                    Some(f) => f.display().to_string(),
                    None => spec.command.clone(),
                };
                tracing::info!(script = %script, "remote exec");
                let shell = std::env::var("SHELL")
                    .ok()
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "/bin/sh".into());
                let mut c = tokio::process::Command::new(shell);
                c.arg("-c").arg(script);
                c
            }
        };
        // One pipe for stdout and stderr, so their lines keep their order.
        let spawned = std::io::pipe().and_then(|(reader, writer)| {
            let err = writer.try_clone()?;
            cmd.stdin(std::process::Stdio::null())
                .stdout(writer)
                .stderr(err)
                .process_group(0)
                .kill_on_drop(true);
            let child = cmd.spawn();
            // The parent's copies of the write end go, so the pipe ends with the job.
            drop(cmd);
            Ok((child?, reader))
        });
        let (mut child, output) = match spawned {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "failed to start remote exec");
                return 255;
            }
        };
        let heartbeat = Duration::from_nanos(spec.wait).max(Duration::from_millis(100));
        let chunks = collect_output(output);
        if self.stream(chunks, heartbeat).await.is_err() {
            tracing::error!("failed to write output for remote exec job; stopping it");
            kill_group(&child);
            let _ = child.wait().await;
            return 255;
        }
        match child.wait().await {
            Ok(st) => st.code().unwrap_or_else(|| {
                128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(0)
            }),
            Err(_) => 1,
        }
    }

    /// Write output chunks as they come; an empty one after `heartbeat`
    /// without output.
    async fn stream(
        &self,
        mut chunks: mpsc::Receiver<Vec<u8>>,
        heartbeat: Duration,
    ) -> Result<(), ExecError> {
        let mut num = 0u32;
        loop {
            let chunk = tokio::select! {
                c = chunks.recv() => match c {
                    Some(c) => c,
                    None => return Ok(()),
                },
                _ = tokio::time::sleep(heartbeat) => Vec::new(),
            };
            self.write(&format!("out/{num:05x}"), chunk).await?;
            num = num.wrapping_add(1);
        }
    }
}

/// The script of a job in a private temporary file, executable (and
/// closed: a file open for writing cannot be executed). Removed on drop.
fn spill(b64: &str) -> std::io::Result<tempfile::TempPath> {
    let script = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut f = tempfile::Builder::new().prefix("rexec").tempfile()?;
    std::io::Write::write_all(&mut f, &script)?;
    f.as_file().sync_all()?;
    let path = f.into_temp_path();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750))?;
    Ok(path)
}

fn kill_group(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        gocompat::process::kill_group(pid);
    }
}

/// The job's output (stdout and stderr share the pipe), in chunks of at
/// most [`CHUNK`] bytes, a partial one after [`CHUNK_IDLE`] without more;
/// [`MAX_OUTPUT`] in all. The pipe is read on a thread of its own.
fn collect_output(mut pipe: std::io::PipeReader) -> mpsc::Receiver<Vec<u8>> {
    let (raw_tx, mut raw_rx) = mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = vec![0u8; CHUNK];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if raw_tx.blocking_send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let (tx, rx) = mpsc::channel::<Vec<u8>>(16);
    tokio::spawn(async move {
        let mut pending: Vec<u8> = Vec::new();
        let mut total = 0usize;
        loop {
            let next = tokio::select! {
                r = raw_rx.recv() => r,
                _ = tokio::time::sleep(CHUNK_IDLE), if !pending.is_empty() => {
                    if tx.send(std::mem::take(&mut pending)).await.is_err() { return; }
                    continue;
                }
            };
            let Some(mut data) = next else { break };
            // Past the cap the output is read (so the job is not blocked) and dropped.
            let room = MAX_OUTPUT.saturating_sub(total);
            data.truncate(room);
            total += data.len();
            pending.extend_from_slice(&data);
            while pending.len() >= CHUNK {
                let rest = pending.split_off(CHUNK);
                if tx
                    .send(std::mem::replace(&mut pending, rest))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        if !pending.is_empty() {
            let _ = tx.send(pending).await;
        }
    });
    rx
}
