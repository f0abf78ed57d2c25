//! The lock's session: created with the lock's TTL, lock-delay and
//! behaviour, renewed every TTL/2 while the command runs, destroyed at
//! the end (Consul's `api/lock.go` keeps it alive the same way).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::apiclient::ApiClient;

/// What the session is created with.
pub(super) struct SessionSpec<'a> {
    pub name: &'a str,
    pub ttl: &'a str,
    pub lock_delay: &'a str,
    /// `release` for a lock; `delete` for a semaphore (its contender keys
    /// go with their session).
    pub behavior: &'static str,
}

/// Create the session; its ID, or the text after "failed to create session: ".
pub(super) async fn create(api: &ApiClient, s: &SessionSpec<'_>) -> Result<String, String> {
    let body =
        json!({"Name": s.name, "TTL": s.ttl, "LockDelay": s.lock_delay, "Behavior": s.behavior});
    let created = api
        .call(
            Method::PUT,
            "session/create",
            &[],
            Some(body.to_string().into_bytes()),
        )
        .await
        .and_then(|r| r.json());
    match created {
        Ok(Some(v)) => match v["ID"].as_str() {
            Some(id) => Ok(id.to_string()),
            None => Err("no ID".into()),
        },
        Ok(None) => Err("not found".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The renewal task of a session; [`Renewal::end`] stops it and destroys
/// the session.
pub(super) struct Renewal {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Renewal {
    pub fn start(api: ApiClient, id: String, ttl: Duration) -> Renewal {
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep_session(api, id, ttl, stop.clone()));
        Renewal { stop, task }
    }

    pub async fn end(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// Keep the session alive (renew every TTL/2) until `stop`, then destroy it.
async fn keep_session(api: ApiClient, id: String, ttl: Duration, stop: CancellationToken) {
    let path = format!("session/renew/{id}");
    let mut wait = ttl / 2;
    let mut last_ok = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => break,
        }
        match api.call(Method::PUT, &path, &[], None).await {
            // Gone: invalidated; the lock monitor notices the lost lock.
            Ok(r) if r.status == 404 => {
                stop.cancelled().await;
                break;
            }
            Ok(_) => {
                last_ok = Instant::now();
                wait = ttl / 2;
            }
            Err(_) if last_ok.elapsed() > ttl => {
                stop.cancelled().await;
                break;
            }
            Err(_) => wait = Duration::from_secs(1),
        }
    }
    let _ = api
        .call(Method::PUT, &format!("session/destroy/{id}"), &[], None)
        .await;
}
