//! `-metrics-addr`: Prometheus metrics of the renderer, served at
//! `GET /metrics` (through the `metrics` facade and its Prometheus exporter).
//!
//! - `tribune_template_renders_total{template,outcome}`: `changed`,
//!   `unchanged`, `failed` (render or write), `waiting` (data not there yet);
//! - `tribune_template_render_duration_seconds{template}`, and
//!   `tribune_template_command_duration_seconds{kind}` (`check`, `reload`);
//! - `tribune_template_failures_total{template,stage}` (`render`, `write`,
//!   `command`);
//! - `tribune_template_dependency_fetches_total{type,outcome}` (`ok`, `error`);
//! - `tribune_template_data_age_seconds{template}`: seconds since the
//!   template's destination last matched the data (its last render that
//!   wrote or found the file unchanged) — what grows while it is stale.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use parking_lot::Mutex;
use tokio::net::TcpListener;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// When each template last matched its data.
static FRESH: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();

fn fresh() -> &'static Mutex<HashMap<String, Instant>> {
    FRESH.get_or_init(Default::default)
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics recorder: {0}")]
    Recorder(String),
    #[error("metrics listener on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Install the recorder (once per process). Without it every call site
/// is a no-op, so metrics cost nothing unless `-metrics-addr` is given.
pub fn install() -> Result<(), MetricsError> {
    if HANDLE.get().is_some() {
        return Ok(());
    }
    let rec = PrometheusBuilder::new()
        .set_quantiles(&[0.5, 0.9, 0.99])
        .map_err(|e| MetricsError::Recorder(e.to_string()))?
        .build_recorder();
    let handle = rec.handle();
    metrics::set_global_recorder(rec).map_err(|e| MetricsError::Recorder(e.to_string()))?;
    let _ = HANDLE.set(handle);
    Ok(())
}

/// The template's destination matches its data as of now.
pub fn mark_fresh(template: &str) {
    fresh().lock().insert(template.to_string(), Instant::now());
}

/// One render's outcome and, when it rendered, its duration.
pub fn render(template: &str, outcome: &'static str, took: Option<std::time::Duration>) {
    let t = template.to_string();
    metrics::counter!("tribune_template_renders_total", "template" => t.clone(), "outcome" => outcome)
        .increment(1);
    if let Some(d) = took {
        metrics::histogram!("tribune_template_render_duration_seconds", "template" => t)
            .record(d.as_secs_f64());
    }
}

pub fn failure(template: &str, stage: &'static str) {
    metrics::counter!("tribune_template_failures_total", "template" => template.to_string(), "stage" => stage)
        .increment(1);
}

pub fn command(kind: &'static str, took: std::time::Duration) {
    metrics::histogram!("tribune_template_command_duration_seconds", "kind" => kind)
        .record(took.as_secs_f64());
}

pub fn fetch(kind: &'static str, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::counter!("tribune_template_dependency_fetches_total", "type" => kind, "outcome" => outcome)
        .increment(1);
}

/// Bind `addr` now (a taken port is a start-up error), then serve for as
/// long as the runtime runs.
pub async fn serve(addr: SocketAddr) -> Result<(), MetricsError> {
    install()?;
    let listen = |source| MetricsError::Listen { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(listen)?;
    let bound = listener.local_addr().map_err(listen)?;
    tracing::info!(addr = %bound, "serving Prometheus metrics at /metrics");
    let app = Router::new().route(
        "/metrics",
        get(scrape).fallback(|m: Method| async move { not_allowed(m) }),
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    Ok(())
}

async fn scrape() -> Response {
    let Some(h) = HANDLE.get() else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let now = Instant::now();
    for (t, at) in fresh().lock().iter() {
        metrics::gauge!("tribune_template_data_age_seconds", "template" => t.clone())
            .set(now.duration_since(*at).as_secs_f64());
    }
    h.run_upkeep();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        h.render(),
    )
        .into_response()
}

fn not_allowed(m: Method) -> Response {
    let allow = [(header::ALLOW, HeaderValue::from_static("GET, HEAD"))];
    if m == Method::OPTIONS {
        return (StatusCode::OK, allow).into_response();
    }
    (
        StatusCode::METHOD_NOT_ALLOWED,
        allow,
        "method not allowed\n",
    )
        .into_response()
}
