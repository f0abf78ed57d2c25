//! `GET /v1/agent/monitor?loglevel=&logjson`: the agent's log, streamed as
//! it is written (chunked), until the client hangs up or the agent stops.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::routes::{Endpoint as E, Routes};
use crate::app::Shared;
use crate::logging::{self, MonitorBody};
use crate::pipeline::context::RequestCtx;
use crate::pipeline::error::ApiError;

pub fn routes() -> Routes {
    Routes::new().route("/v1/agent/monitor", E::get(monitor))
}

async fn monitor(State(s): State<Shared>, ctx: RequestCtx) -> Result<Response, ApiError> {
    let q = &ctx.query;
    let asked = q
        .get("loglevel")
        .filter(|l| !l.is_empty())
        .unwrap_or("INFO");
    let level = logging::parse_level(asked)
        .ok_or_else(|| ApiError::bad(format!("Unknown log level: {asked}")))?;
    let monitors =
        logging::monitors().ok_or_else(|| ApiError::Internal("Streaming not supported".into()))?;
    let (rx, guard) = monitors.attach(level, q.has("logjson"));
    let body = MonitorBody::new(rx, guard, s.shutdown.clone().cancelled_owned());
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::new(body),
    )
        .into_response())
}
