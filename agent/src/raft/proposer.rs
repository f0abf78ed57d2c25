//! Group commit in front of raft.
//!
//! openraft 0.9 appends and fsyncs one client write at a time, so durable
//! throughput would be one fsync per write. The proposer instead keeps one
//! raft entry in flight; writes that arrive meanwhile are submitted together
//! as the next entry — one fsync for all of them. Each write's index is the
//! raft log index of the entry that carried it (shared within a batch, as the
//! ops of a txn share theirs).
//!
//! Soundness of CAS: a batch never holds two writes to the same key, so an
//! index handed to a client always identifies exactly one value of a key.
//! Txns and recursive deletes touch many keys and travel alone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};

use super::disk::StorageHealth;
use super::leadership::{Hold, Leadership};
use super::Raft;
use crate::cluster::Upstream;
use crate::rpc::wire::RpcError;
use crate::state::{Command, KvCommand, Outcome};

/// Most writes folded into one raft entry, and their total payload bound.
const MAX_BATCH: usize = 1024;
const MAX_BATCH_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum WriteError {
    #[error("No cluster leader")]
    NoLeader,
    /// Raft storage on the leader fails (a full disk): the cause.
    #[error("raft storage error: {0}")]
    Storage(String),
    #[error("raft write failed: {0}")]
    Raft(String),
    #[error("agent is shutting down")]
    Stopped,
    /// The acting token may not make this write (or is unknown): nothing
    /// was applied. Consul's text: `Permission denied` / `ACL not found`.
    #[error("{0}")]
    Denied(String),
}

/// On whose authority a write is made (Consul: the token of the RPC).
#[derive(Clone, Debug)]
pub enum Actor {
    /// The leader's own work (TTL expiry, serfHealth reconcile, autopilot,
    /// ACL builtins): never checked. Forwarded (leadership lost on the
    /// way) it carries no token, so the new leader refuses it under ACLs.
    Leader,
    /// Already authorized where it entered (the API pipeline, or the
    /// `/rpc/write` check): not checked again here, its secret travels on.
    Checked(std::sync::Arc<str>),
    /// The agent's own work (anti-entropy, check status, leave), with its
    /// `agent` token: checked by the server that proposes it.
    Agent(std::sync::Arc<str>),
}

impl Actor {
    /// The secret a forwarded write carries.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Actor::Leader => None,
            Actor::Checked(s) | Actor::Agent(s) => Some(s),
        }
    }
}

/// A server's ACL check on writes it proposes for someone else: the
/// token's authority (from this server's replicated tables) against what
/// the command needs ([`crate::acl::command::permits`]).
#[derive(Clone)]
pub struct WriteGate {
    pub store: Arc<crate::state::Store>,
    pub default: crate::acl::DefaultPolicy,
}

impl WriteGate {
    /// `Ok` when `secret` may have `cmd` applied.
    pub fn check(&self, secret: &str, cmd: &Command) -> Result<(), WriteError> {
        let t = self.store.read();
        let a = t
            .acl
            .resolve(secret, self.default)
            .map_err(|_| WriteError::Denied("ACL not found".into()))?;
        match crate::acl::command::permits(&a, &t, cmd) {
            true => Ok(()),
            false => Err(WriteError::Denied("Permission denied".into())),
        }
    }
}

/// A forwarded write is forwarded at most this many times (no loops while
/// servers disagree about who leads).
const MAX_HOPS: u32 = 3;

struct Pending {
    cmd: Command,
    reply: oneshot::Sender<Result<(u64, Outcome), WriteError>>,
}

/// Submits writes: to the local raft with group commit when this server
/// leads, otherwise over server RPC to the leader (or, from a client agent,
/// to a server). Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    local: Option<(mpsc::UnboundedSender<Pending>, Arc<Leadership>)>,
    upstream: Option<Upstream>,
    /// With ACLs on, a server's check of [`Actor::Agent`] writes.
    gate: Option<WriteGate>,
}

impl Proposer {
    /// A server's proposer.
    pub fn start(
        raft: Raft,
        leadership: Arc<Leadership>,
        upstream: Option<Upstream>,
        gate: Option<WriteGate>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, rx, leadership.storage().clone()));
        Self {
            local: Some((tx, leadership)),
            upstream,
            gate,
        }
    }

    /// A client agent's proposer: every write goes to a server.
    pub fn remote(upstream: Upstream) -> Self {
        Self {
            local: None,
            upstream: Some(upstream),
            gate: None,
        }
    }

    /// Replicate `cmd` as the leader's own work ([`Actor::Leader`]);
    /// returns its raft index and outcome once durable and applied.
    pub async fn write(&self, cmd: Command) -> Result<(u64, Outcome), WriteError> {
        self.write_hops(cmd, 0, &Actor::Leader).await
    }

    /// [`Self::write`] on the authority of `actor`.
    pub async fn write_as(
        &self,
        cmd: Command,
        actor: &Actor,
    ) -> Result<(u64, Outcome), WriteError> {
        self.write_hops(cmd, 0, actor).await
    }

    /// [`Self::write_as`] for a write already forwarded `hops` times.
    pub async fn write_hops(
        &self,
        cmd: Command,
        hops: u32,
        actor: &Actor,
    ) -> Result<(u64, Outcome), WriteError> {
        // Checked before anything is sent or proposed: a refusal applies nothing.
        if let (Some(gate), Actor::Agent(secret)) = (&self.gate, actor) {
            gate.check(secret, &cmd)?;
        }
        let hold = Hold::start();
        loop {
            // Armed before the leader is looked at, so no change is missed.
            let changed = self.local.as_ref().map(|(_, l)| l.leader_changed());
            let mut changed = std::pin::pin!(changed);
            if let Some(c) = changed.as_mut().as_pin_mut() {
                c.enable();
            }
            if let Some((tx, leadership)) = &self.local {
                if leadership.is_leader() {
                    match self.local_write(tx, cmd.clone()).await {
                        Err(WriteError::NoLeader) if !hold.over() => {}
                        r => return r,
                    }
                }
            }
            if let Some(up) = self.upstream.as_ref().filter(|_| hops < MAX_HOPS) {
                for target in up.targets() {
                    let r: Result<Result<(u64, Outcome), WriteError>, _> = up
                        .rpc
                        .call_write(
                            &target,
                            "/rpc/write",
                            &cmd,
                            Duration::from_secs(30),
                            hops,
                            actor.secret(),
                        )
                        .await;
                    match r {
                        Ok(Err(WriteError::NoLeader)) => continue,
                        Ok(r) => {
                            up.good(&target);
                            return r;
                        }
                        Err(e) if e.not_sent() => {
                            up.bad(&target);
                            continue;
                        }
                        // Refused before anything was proposed.
                        Err(RpcError::Status(_, 403, why)) => return Err(WriteError::Denied(why)),
                        // It may have been applied: never retry blindly.
                        Err(e) => return Err(WriteError::Raft(e.to_string())),
                    }
                }
            }
            if hold.over() {
                return Err(WriteError::NoLeader);
            }
            hold.pause(changed.as_pin_mut()).await;
        }
    }

    async fn local_write(
        &self,
        tx: &mpsc::UnboundedSender<Pending>,
        cmd: Command,
    ) -> Result<(u64, Outcome), WriteError> {
        let (reply, rx) = oneshot::channel();
        tx.send(Pending { cmd, reply })
            .map_err(|_| WriteError::Stopped)?;
        rx.await.map_err(|_| WriteError::Stopped)?
    }
}

/// The single key a command writes, if it may share an entry.
fn batch_key(cmd: &Command) -> Option<&str> {
    match cmd {
        Command::Kv(KvCommand::Set { key, .. }) => Some(key),
        Command::Kv(KvCommand::Delete {
            key,
            recurse: false,
            ..
        }) => Some(key),
        _ => None,
    }
}

fn size_of(cmd: &Command) -> usize {
    match cmd {
        Command::Kv(KvCommand::Set { key, value, .. }) => key.len() + value.len(),
        _ => 64,
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Pending>, health: Arc<StorageHealth>) {
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut batch = vec![first];
        if let Some(k) = batch_key(&batch[0].cmd) {
            let mut keys: HashSet<String> = HashSet::from([k.to_string()]);
            let mut bytes = size_of(&batch[0].cmd);
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                let Ok(p) = rx.try_recv() else { break };
                match batch_key(&p.cmd) {
                    Some(k) if keys.insert(k.to_string()) => {
                        bytes += size_of(&p.cmd);
                        batch.push(p);
                    }
                    _ => {
                        carry = Some(p);
                        break;
                    }
                }
            }
        }
        submit(&raft, batch, &health).await;
    }
}

async fn submit(raft: &Raft, batch: Vec<Pending>, health: &StorageHealth) {
    metrics::histogram!("tribune.group_commit.batch_size").record(batch.len() as f64);
    metrics::counter!("raft.apply").increment(batch.len() as u64);
    let _commit = crate::telemetry::timer("raft.commitTime");
    // The commands move into the entry; only the replies stay here.
    let (mut cmds, mut replies): (Vec<Command>, Vec<_>) =
        batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let cmd = match cmds.len() {
        1 => cmds.pop().expect("one pending write"),
        _ => Command::Batch(cmds),
    };
    // While storage fails, raft would queue the entry until the disk has
    // room: refuse instead, naming the cause.
    let result = match health.error() {
        Some(cause) => Err(WriteError::Storage(format!(
            "{cause}; the write was not applied"
        ))),
        None => tokio::select! {
            r = raft.client_write(cmd) => match r {
                Ok(r) => Ok((r.log_id.index, r.data)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                    Err(WriteError::NoLeader)
                }
                Err(e) => Err(WriteError::Raft(e.to_string())),
            },
            // The entry is in the log and is retried with it.
            cause = health.failed() => Err(WriteError::Storage(format!(
                "{cause}; the write is not acknowledged and may still be applied once the \
                 disk has room"
            ))),
        },
    };
    match result {
        Err(e) => {
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
        Ok((index, outcome)) if replies.len() == 1 => {
            let r = replies.pop().expect("one pending write");
            let _ = r.send(Ok((index, outcome)));
        }
        Ok((index, Outcome::Batch(outcomes))) if outcomes.len() == replies.len() => {
            for (r, o) in replies.into_iter().zip(outcomes) {
                let _ = r.send(Ok((index, o)));
            }
        }
        Ok((_, other)) => {
            let e = WriteError::Raft(format!("unexpected outcome for a batch: {other:?}"));
            for r in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
    }
}
