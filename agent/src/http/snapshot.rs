//! `/v1/snapshot`: `GET` a point-in-time copy of the whole replicated state
//! (a [`crate::snapshot`] file), `PUT` one back to replace the state of the
//! whole cluster.
//!
//! Save is a read: the leader answers (followers and client agents forward
//! to it) unless `?stale`, with `X-Consul-Index` the index the copy was
//! taken at (concurrent saves take turns). Restore runs on the leader: the
//! body is streamed to a temp file in `TMPDIR` (never held in memory,
//! bounded by [`MAX_FILE`]), checked whole — a
//! truncated or corrupt file is refused here and nothing is written — then
//! replicated piece by piece through raft and installed by one last entry on
//! every server (see [`crate::state::restore`]). One restore at a time.

use std::io::{Read, Seek, SeekFrom};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use super::routes::{Endpoint as E, Routes};
use crate::app::Shared;
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;
use crate::snapshot::{self, SnapshotError};
use crate::state::restore::{RestoreCommand, RestoreOutcome, CHUNK, MAX_FILE};
use crate::state::{Command, Outcome};

/// Held while a restore runs.
static RESTORING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Held while a save encodes the state: each copy is a whole state's
/// worth of memory, so concurrent saves take turns.
static SAVING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn routes() -> Routes {
    Routes::new().route("/v1/snapshot", E::get(save).on(Method::PUT, restore))
}

/// Only servers hold the state (a client agent forwards; one that gets
/// here knows no server).
fn server_only(s: &Shared) -> Result<(), ApiError> {
    if s.raft.is_none() {
        return Err(ApiError::Internal(
            "No known servers to take a snapshot from".into(),
        ));
    }
    Ok(())
}

async fn save(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    server_only(&s)?;
    let opts = ctx.read_opts()?;
    s.gate(opts.consistency).await?;
    let store = s.store.clone();
    let dc = s.config.datacenter.clone();
    let _turn = SAVING.lock().await;
    let started = std::time::Instant::now();
    let (bytes, index) = tokio::task::spawn_blocking(move || {
        let t = store.read();
        let h = snapshot::header_for(&t, &dc);
        snapshot::encode(&t, &h, false).map(|b| (b, h.index))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("snapshot task: {e}")))?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(
        index,
        bytes = bytes.len(),
        ms = started.elapsed().as_millis() as u64,
        "snapshot taken"
    );
    let mut resp = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/octet-stream")],
        bytes,
    )
        .into_response();
    s.meta(&mut resp, index, opts.consistency);
    Ok(resp)
}

async fn restore(
    State(s): State<Shared>,
    ctx: RequestCtx,
    req: Request,
) -> Result<Response, ApiError> {
    ctx.check_dc()?;
    if ctx.query.has("stale") {
        return Err(ApiError::bad("stale not allowed for restore"));
    }
    server_only(&s)?;
    if !s.leadership.is_serving_leader() {
        return Err(ApiError::NoLeader);
    }
    let Ok(running) = RESTORING.try_lock() else {
        return Err(ApiError::Internal(
            "a snapshot restore is already in progress".into(),
        ));
    };
    let started = std::time::Instant::now();
    // As Consul's: the temp dir (TMPDIR), not the data dir, which an
    // upload must not fill under raft's feet.
    let dir = std::env::temp_dir();
    let file = tempfile::tempfile_in(&dir)
        .map_err(|e| ApiError::Internal(format!("temp file in {}: {e}", dir.display())))?;
    let (file, size) = receive(req.into_body(), file).await?;
    let (file, summary) = tokio::task::spawn_blocking(move || {
        let mut f = file;
        let summary = rewind(&mut f)
            .map_err(SnapshotError::from)
            .and_then(|()| snapshot::format::verify(std::io::BufReader::new(&mut f)))
            .and_then(|s| snapshot::tables::check_sections(&s).map(|()| s))
            .and_then(|s| rewind(&mut f).map(|()| s).map_err(SnapshotError::from));
        (f, summary)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("snapshot task: {e}")))?;
    let summary = summary.map_err(|e| ApiError::bad(e.to_string()))?;
    tracing::info!(
        bytes = size,
        snapshot = %summary.header.id,
        index = summary.header.index,
        "restoring snapshot: file verified; replicating it"
    );
    // In a task of its own, which holds the lock to its end: a client that
    // hangs up does not leave the servers holding half a restore, nor let
    // another restore start beside it.
    let task = tokio::spawn(async move {
        let _running = running;
        replicate(s, file, size).await
    });
    let keys = task
        .await
        .map_err(|e| ApiError::Internal(format!("restore task: {e}")))??;
    tracing::info!(
        keys,
        ms = started.elapsed().as_millis() as u64,
        "snapshot restore complete"
    );
    Ok(StatusCode::OK.into_response())
}

fn rewind(f: &mut std::fs::File) -> std::io::Result<()> {
    f.seek(SeekFrom::Start(0)).map(|_| ())
}

/// Stream the request body into `file`; its size.
async fn receive(body: Body, file: std::fs::File) -> Result<(std::fs::File, u64), ApiError> {
    let mut out = tokio::fs::File::from_std(file);
    let mut body = body;
    let mut size = 0u64;
    let io = |e: std::io::Error| ApiError::Internal(format!("writing the snapshot to disk: {e}"));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        size += data.len() as u64;
        if size > MAX_FILE {
            return Err(ApiError::TooLarge(format!(
                "Snapshot larger than the maximum of {MAX_FILE} bytes"
            )));
        }
        out.write_all(&data).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    Ok((out.into_std().await, size))
}

/// Send the file through raft, piece by piece, then install it. Gives up
/// (telling the servers to drop the pieces) on the first failed write.
async fn replicate(s: Shared, file: std::fs::File, size: u64) -> Result<u64, ApiError> {
    let id: u64 = rand::random();
    let chunks = size.div_ceil(CHUNK as u64) as u32;
    let mut file = file;
    let result = async {
        for seq in 0..chunks {
            let (f, data) = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; CHUNK];
                let n = read_full(&mut file, &mut buf);
                buf.truncate(n.as_ref().copied().unwrap_or(0));
                (file, n.map(|_| buf))
            })
            .await
            .map_err(|e| ApiError::Internal(format!("snapshot task: {e}")))?;
            file = f;
            let data =
                data.map_err(|e| ApiError::Internal(format!("reading the snapshot: {e}")))?;
            let cmd = Command::Restore(RestoreCommand::Chunk { id, seq, data });
            expect(s.write(cmd).await?.1, |o| {
                matches!(o, RestoreOutcome::Staged)
            })?;
        }
        let cmd = Command::Restore(RestoreCommand::Install { id, chunks, size });
        match s.write(cmd).await?.1 {
            Outcome::Restore(RestoreOutcome::Installed { keys }) => Ok(keys),
            Outcome::Restore(RestoreOutcome::Error(e)) => Err(ApiError::bad(e)),
            other => Err(ApiError::Internal(format!(
                "unexpected restore outcome {other:?}"
            ))),
        }
    }
    .await;
    if result.is_err() {
        let _ = s
            .write(Command::Restore(RestoreCommand::Abort { id }))
            .await;
    }
    result
}

fn expect(o: Outcome, ok: impl Fn(&RestoreOutcome) -> bool) -> Result<(), ApiError> {
    match o {
        Outcome::Restore(r) if ok(&r) => Ok(()),
        Outcome::Restore(RestoreOutcome::Error(e)) => Err(ApiError::Internal(e)),
        other => Err(ApiError::Internal(format!(
            "unexpected restore outcome {other:?}"
        ))),
    }
}

/// Read until `buf` is full or the file ends; bytes read.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
