//! What the raft leader does for ACLs: create the builtin management
//! policy, the anonymous token and the configured `initial_management`
//! token once it leads (Consul's `initializeACLs`), replicated like any
//! write. Idempotent: a new leader writes only what is missing.

use std::time::Duration;

use crate::app::Shared;
use crate::state::acl::{AclCommand, TokenRec, ANONYMOUS_ACCESSOR, MANAGEMENT_POLICY_ID};
use crate::state::Command;

/// Short: requests with the initial management token wait for it.
const POLL: Duration = Duration::from_millis(100);

/// Until shutdown: whenever this server leads and something is missing,
/// write it.
pub async fn run(s: Shared) {
    loop {
        if s.leadership.ready() && missing(&s) {
            let cmd = Command::Acl(AclCommand::Init {
                initial_management: initial(&s).map(Box::new),
                now: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            });
            match s.proposer.write(cmd).await {
                Ok(_) => tracing::info!("ACL system initialized (builtin policy, anonymous token)"),
                Err(e) => tracing::debug!(error = %e, "ACL initialization not written; retrying"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = s.shutdown.cancelled() => return,
        }
    }
}

fn missing(s: &Shared) -> bool {
    let t = s.store.read();
    let secret = s.config.acl.initial_management.get();
    t.acl.policy(MANAGEMENT_POLICY_ID).is_none()
        || t.acl.token(ANONYMOUS_ACCESSOR).is_none()
        || secret.is_some_and(|x| t.acl.token_by_secret(x).is_none())
}

/// The configured management token. Its accessor is derived from the
/// secret, so every server (and every restart) proposes the same one.
fn initial(s: &Shared) -> Option<TokenRec> {
    let secret = s.config.acl.initial_management.get()?;
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(format!("initial-management:{secret}").as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    let accessor = uuid::Builder::from_random_bytes(b).into_uuid().to_string();
    Some(TokenRec {
        accessor_id: accessor,
        secret_id: secret.to_string(),
        description: "Initial Management Token".into(),
        policies: vec![MANAGEMENT_POLICY_ID.into()],
        roles: vec![],
        local: false,
        create_time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        create_index: 0,
        modify_index: 0,
    })
}
