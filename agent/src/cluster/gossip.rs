//! LAN gossip: SWIM membership (foca) over UDP on `ports.serf_lan`.
//!
//! foca decides who is alive; this module adds what Consul's serf layer
//! adds on top: a member table that remembers `failed` and `left` members
//! (until reaped), leave intents so a graceful leave shows as `left` rather
//! than `failed`, `force-leave`, user events, and a snapshot of peers in the
//! data dir so a restarted agent rejoins on its own.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use foca::{AccumulatingRuntime, BincodeCodec, Codec, Foca, OwnedNotification, Timer};
use parking_lot::RwLock;
use rand09::SeedableRng;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::keyring::{Keyring, KeyringError, OpenError, MAGIC};

#[derive(Debug, thiserror::Error)]
pub enum GossipError {
    #[error("binding gossip on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0:?} is not an address: use ip or ip:port")]
    BadAddress(String),
    #[error("no agent answered at {0}")]
    NoAnswer(String),
    #[error("no agent answered at {0}: {1}")]
    Refused(String, &'static str),
    #[error("{0}")]
    Keyring(#[from] KeyringError),
    #[error("gossip stopped")]
    Stopped,
}

/// Who an agent is, as every member sees it. foca sends identities with its
/// messages, so only what peers need is here.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ident {
    /// Gossip address (foca's `Identity::Addr`).
    pub addr: SocketAddr,
    /// Start time (ms) of this incarnation: a restarted agent wins its old
    /// address over the dead identity.
    pub bump: u64,
    pub name: String,
    pub node_id: String,
    pub dc: String,
    pub server: bool,
    /// Server RPC port (raft, forwarding); 0 on clients.
    pub rpc_port: u16,
    pub raft_id: u64,
    pub bootstrap_expect: u32,
    pub build: String,
}

impl std::fmt::Debug for Ident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}#{}", self.name, self.addr, self.bump)
    }
}

impl Ident {
    /// Where this member's server RPC listens.
    pub fn rpc_addr(&self) -> SocketAddr {
        SocketAddr::new(self.addr.ip(), self.rpc_port)
    }

    /// A stand-in used to announce to an address whose identity is unknown:
    /// foca accepts an announce addressed to any identity with its address.
    fn placeholder(addr: SocketAddr) -> Self {
        Self {
            addr,
            bump: 0,
            name: String::new(),
            node_id: String::new(),
            dc: String::new(),
            server: false,
            rpc_port: 0,
            raft_id: 0,
            bootstrap_expect: 0,
            build: String::new(),
        }
    }
}

impl foca::Identity for Ident {
    type Addr = SocketAddr;
    fn renew(&self) -> Option<Self> {
        Some(Self {
            bump: self.bump.wrapping_add(1),
            ..self.clone()
        })
    }
    fn addr(&self) -> SocketAddr {
        self.addr
    }
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.bump > adversary.bump
    }
}

/// Serf's member states (the numbers are what `/v1/agent/members` shows).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberStatus {
    Alive = 1,
    Leaving = 2,
    Left = 3,
    Failed = 4,
}

impl MemberStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Leaving => "leaving",
            Self::Left => "left",
            Self::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Member {
    pub ident: Ident,
    pub status: MemberStatus,
    pub since: Instant,
}

/// Messages disseminated with foca's custom broadcasts.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Msg {
    /// The member is leaving on purpose: show it as `left`, not `failed`.
    Leave { name: String, bump: u64 },
    /// An operator declared a failed member gone (`force-leave`).
    ForceLeave {
        name: String,
        prune: bool,
        nonce: u64,
    },
    /// A user event (`/v1/event/fire`): opaque to gossip.
    Event { id: u64, payload: Vec<u8> },
    /// A keyring operation every member applies (`tribune keyring`).
    KeyOp { id: u64, op: KeyOp, key: String },
    /// One member's answer to a `KeyOp`: its keys after applying it.
    KeyAck(KeyAck),
}

/// What `tribune keyring` asks of every member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyOp {
    List,
    Install,
    Use,
    Remove,
}

/// A member's answer to a keyring operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyAck {
    pub id: u64,
    pub node: String,
    /// Empty when the operation succeeded there.
    pub error: String,
    pub keys: Vec<String>,
    pub primary: String,
}

/// The answers gathered for one keyring operation.
#[derive(Clone, Debug)]
pub struct KeyringReport {
    /// Alive members when the answers were counted.
    pub num_nodes: usize,
    pub acks: Vec<KeyAck>,
}

impl Msg {
    fn key(&self) -> MsgKey {
        match self {
            Msg::Leave { name, bump } => MsgKey(fnv(&[b"L", name.as_bytes(), &bump.to_le_bytes()])),
            Msg::ForceLeave { name, nonce, .. } => {
                MsgKey(fnv(&[b"F", name.as_bytes(), &nonce.to_le_bytes()]))
            }
            Msg::Event { id, .. } => MsgKey(fnv(&[b"E", &id.to_le_bytes()])),
            Msg::KeyOp { id, .. } => MsgKey(fnv(&[b"K", &id.to_le_bytes()])),
            Msg::KeyAck(a) => MsgKey(fnv(&[b"A", &a.id.to_le_bytes(), a.node.as_bytes()])),
        }
    }
}

fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct MsgKey(u64);

impl foca::Invalidates for MsgKey {
    fn invalidates(&self, other: &Self) -> bool {
        self == other
    }
}

#[derive(Debug, thiserror::Error)]
#[error("bad broadcast: {0}")]
struct BadBroadcast(String);

/// Receives custom broadcasts inside foca; hands new ones to the gossip
/// task, which applies them.
struct Handler {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    inbox: Arc<parking_lot::Mutex<Vec<Msg>>>,
}

impl foca::BroadcastHandler<Ident> for Handler {
    type Key = MsgKey;
    type Error = BadBroadcast;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&Ident>,
    ) -> Result<Option<MsgKey>, BadBroadcast> {
        let (msg, _): (Msg, usize) =
            bincode2::serde::decode_from_slice(data, bincode2::config::standard())
                .map_err(|e| BadBroadcast(e.to_string()))?;
        let key = msg.key();
        if !self.seen.insert(key.0) {
            return Ok(None);
        }
        self.order.push_back(key.0);
        if self.order.len() > 4096 {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.inbox.lock().push(msg);
        Ok(Some(key))
    }
}

enum Input {
    Timer(Timer<Ident>),
    Announce(SocketAddr),
    Broadcast(Msg),
    Leave(oneshot::Sender<()>),
}

pub struct GossipOptions {
    pub bind: SocketAddr,
    /// Address peers reach this agent at (the bind address unless advertised).
    pub advertise: std::net::IpAddr,
    pub ident: Ident,
    /// Where the peer snapshot lives (`<data-dir>/serf/local.snapshot`).
    pub snapshot: Option<PathBuf>,
    pub reconnect_timeout: Duration,
    /// Gossip encryption keys (empty: plaintext).
    pub keyring: Arc<Keyring>,
    /// The port of a join address given without one (8301 LAN, 8302 WAN).
    pub default_port: u16,
    /// Held back before every outgoing packet (a test knob faking WAN
    /// latency; zero otherwise).
    pub send_delay: Duration,
}

/// Why a packet was refused, and from whom (for `join`'s error).
#[derive(Clone, Copy)]
struct Refusal {
    from: SocketAddr,
    at: Instant,
    why: &'static str,
}

/// Handle to the running gossip layer. Cheap to clone.
#[derive(Clone)]
pub struct Gossip {
    tx: mpsc::UnboundedSender<Input>,
    members: Arc<RwLock<BTreeMap<String, Member>>>,
    me: Arc<RwLock<Ident>>,
    version: watch::Receiver<u64>,
    events: Arc<RwLock<Option<mpsc::UnboundedSender<Vec<u8>>>>>,
    snapshot: Option<PathBuf>,
    keyring: Arc<Keyring>,
    /// Answers to this agent's keyring operations in flight, by id.
    key_acks: Arc<parking_lot::Mutex<BTreeMap<u64, Vec<KeyAck>>>>,
    refused: Arc<parking_lot::Mutex<Option<Refusal>>>,
    /// Times direct probes, for network coordinates.
    rtt: Arc<parking_lot::Mutex<super::rtt::RttProbe>>,
    default_port: u16,
}

impl Gossip {
    /// Bind the gossip socket and start the protocol task.
    pub async fn start(opts: GossipOptions, stop: CancellationToken) -> Result<Self, GossipError> {
        let socket = UdpSocket::bind(opts.bind)
            .await
            .map_err(|source| GossipError::Bind {
                addr: opts.bind,
                source,
            })?;
        let bound = socket.local_addr().map_err(|source| GossipError::Bind {
            addr: opts.bind,
            source,
        })?;
        let mut ident = opts.ident;
        ident.addr = SocketAddr::new(opts.advertise, bound.port());
        let mut config = foca::Config::new_lan(NonZeroU32::new(32).expect("non-zero"));
        config.probe_period = Duration::from_millis(1000);
        config.probe_rtt = Duration::from_millis(400);
        config.suspect_to_down_after = Duration::from_millis(2500);
        config.remove_down_after = opts.reconnect_timeout.max(Duration::from_secs(60));
        config.periodic_announce = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(10),
            num_members: NonZeroUsize::new(1).expect("non-zero"),
        });
        config.periodic_announce_to_down_members = Some(foca::PeriodicParams {
            frequency: Duration::from_secs(5),
            num_members: NonZeroUsize::new(2).expect("non-zero"),
        });
        let inbox = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let handler = Handler {
            seen: HashSet::new(),
            order: VecDeque::new(),
            inbox: inbox.clone(),
        };
        let foca = Foca::with_custom_broadcast(
            ident.clone(),
            config,
            rand09::rngs::StdRng::from_os_rng(),
            BincodeCodec(bincode2::config::standard()),
            handler,
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let (vtx, version) = watch::channel(0u64);
        let members = Arc::new(RwLock::new(BTreeMap::from([(
            ident.name.clone(),
            Member {
                ident: ident.clone(),
                status: MemberStatus::Alive,
                since: Instant::now(),
            },
        )])));
        let g = Gossip {
            tx: tx.clone(),
            members: members.clone(),
            me: Arc::new(RwLock::new(ident)),
            version,
            events: Arc::new(RwLock::new(None)),
            snapshot: opts.snapshot,
            keyring: opts.keyring,
            key_acks: Default::default(),
            refused: Default::default(),
            rtt: Default::default(),
            default_port: opts.default_port,
        };
        let socket = Arc::new(socket);
        let delayed = (!opts.send_delay.is_zero()).then(|| {
            let (dtx, drx) = mpsc::channel(MAX_DELAYED);
            tokio::spawn(send_delayed(socket.clone(), opts.send_delay, drx));
            dtx
        });
        let task = Task {
            foca,
            runtime: AccumulatingRuntime::new(),
            socket,
            delayed,
            send_delay: opts.send_delay,
            tx,
            vtx,
            gossip: g.clone(),
            inbox,
            reconnect_timeout: opts.reconnect_timeout,
            last_warning: None,
        };
        tokio::spawn(task.run(rx, stop));
        Ok(g)
    }

    /// Send the round trips of direct probes to `tx` (the coordinate loop).
    pub fn set_rtt_sink(&self, tx: mpsc::Sender<super::rtt::Sample>) {
        self.rtt.lock().set_sink(tx);
    }

    /// This agent's identity (its gossip address is the bound one).
    pub fn me(&self) -> Ident {
        self.me.read().clone()
    }

    /// Every member known, this agent included, by name.
    pub fn members(&self) -> Vec<Member> {
        self.members.read().values().cloned().collect()
    }

    pub fn member(&self, name: &str) -> Option<Member> {
        self.members.read().get(name).cloned()
    }

    /// Alive servers of this datacenter, this agent included when a server.
    pub fn alive_servers(&self) -> Vec<Ident> {
        let dc = self.me.read().dc.clone();
        self.members
            .read()
            .values()
            .filter(|m| m.ident.server && m.status == MemberStatus::Alive && m.ident.dc == dc)
            .map(|m| m.ident.clone())
            .collect()
    }

    /// Changes whenever the member table does.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.clone()
    }

    /// Where received user events go (the event module sets this).
    pub fn set_event_sink(&self, tx: mpsc::UnboundedSender<Vec<u8>>) {
        *self.events.write() = Some(tx);
    }

    /// Disseminate a user event to every agent (this one included).
    pub fn broadcast_event(&self, payload: Vec<u8>) -> Result<(), GossipError> {
        // foca hands our own broadcast to our handler too: that delivers it here.
        let id = rand::random::<u64>();
        self.tx
            .send(Input::Broadcast(Msg::Event { id, payload }))
            .map_err(|_| GossipError::Stopped)
    }

    /// Join the members at `addrs` (`ip` or `ip:port`, default port 8301).
    /// Succeeds when at least one answers within a few seconds; returns how
    /// many did.
    pub async fn join(&self, addrs: &[String]) -> Result<usize, GossipError> {
        let mut targets = Vec::new();
        for a in addrs {
            targets.push(parse_addr_port(a, self.default_port)?);
        }
        let me = self.me().addr;
        let targets: Vec<SocketAddr> = targets.into_iter().filter(|t| *t != me).collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let mut version = self.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut last_announce = None::<tokio::time::Instant>;
        loop {
            let answered = {
                let m = self.members.read();
                targets
                    .iter()
                    .filter(|t| {
                        m.values()
                            .any(|x| x.ident.addr == **t && x.status == MemberStatus::Alive)
                    })
                    .count()
            };
            if answered == targets.len() {
                return Ok(answered);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                if answered > 0 {
                    return Ok(answered);
                }
                return Err(self.no_answer(&targets));
            }
            // UDP may drop an announce: repeat every 500 ms.
            if last_announce.is_none_or(|t| now - t >= Duration::from_millis(500)) {
                for t in &targets {
                    self.tx
                        .send(Input::Announce(*t))
                        .map_err(|_| GossipError::Stopped)?;
                }
                last_announce = Some(now);
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), version.changed()).await;
        }
    }

    /// Why a join found no one: a refused packet from a target says why;
    /// with encryption on, a silent target may hold another key.
    fn no_answer(&self, targets: &[SocketAddr]) -> GossipError {
        let list: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        let list = list.join(", ");
        if let Some(r) = *self.refused.lock() {
            if targets.contains(&r.from) && r.at.elapsed() < Duration::from_secs(30) {
                return GossipError::Refused(list, r.why);
            }
        }
        if self.keyring.enabled() {
            return GossipError::Refused(
                list,
                "if it runs, it may not hold this agent's gossip key (-encrypt): its log says so",
            );
        }
        GossipError::NoAnswer(list)
    }

    /// The gossip keyring of this agent.
    pub fn keyring(&self) -> &Arc<Keyring> {
        &self.keyring
    }

    /// Apply a keyring operation on every member (by gossip) and gather
    /// their answers: until every alive member answered, or 5 s.
    pub async fn keyring_op(&self, op: KeyOp, key: &str) -> Result<KeyringReport, GossipError> {
        if !self.keyring.enabled() {
            return Err(KeyringError::Disabled.into());
        }
        if op != KeyOp::List {
            super::keyring::parse_key(key)?;
        }
        let id = rand::random::<u64>();
        self.key_acks.lock().insert(id, Vec::new());
        let sent = self.tx.send(Input::Broadcast(Msg::KeyOp {
            id,
            op,
            key: key.to_string(),
        }));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let alive = || {
            self.members
                .read()
                .values()
                .filter(|m| m.status == MemberStatus::Alive)
                .count()
        };
        while sent.is_ok() && tokio::time::Instant::now() < deadline {
            let n = self.key_acks.lock().get(&id).map_or(0, Vec::len);
            if n >= alive() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let acks = self.key_acks.lock().remove(&id).unwrap_or_default();
        sent.map_err(|_| GossipError::Stopped)?;
        Ok(KeyringReport {
            num_nodes: alive().max(acks.len()),
            acks,
        })
    }

    /// Apply a keyring operation from gossip here and answer it.
    fn apply_key_op(&self, id: u64, op: KeyOp, key: &str) {
        let r = match op {
            KeyOp::List => Ok(()),
            KeyOp::Install => self.keyring.install(key),
            KeyOp::Use => self.keyring.use_key(key),
            KeyOp::Remove => self.keyring.remove(key),
        };
        match (&r, op) {
            (Err(e), _) => tracing::error!("serf: keyring {op:?} failed: {e}"),
            (Ok(()), KeyOp::List) => {}
            (Ok(()), _) => tracing::info!("serf: Received {op:?} key query: keyring updated"),
        }
        let (keys, primary) = self.keyring.list();
        let ack = KeyAck {
            id,
            node: self.me.read().name.clone(),
            error: r.err().map(|e| e.to_string()).unwrap_or_default(),
            keys,
            primary: primary.unwrap_or_default(),
        };
        let _ = self.tx.send(Input::Broadcast(Msg::KeyAck(ack)));
    }

    /// Leave gracefully: tell the cluster (so it shows `left`), then go quiet.
    pub async fn leave(&self) {
        let me = self.me();
        if let Some(m) = self.members.write().get_mut(&me.name) {
            m.status = MemberStatus::Leaving;
        }
        let _ = self.tx.send(Input::Broadcast(Msg::Leave {
            name: me.name.clone(),
            bump: me.bump,
        }));
        // Let the intent ride a few gossip rounds before declaring ourselves down.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (done, wait) = oneshot::channel();
        if self.tx.send(Input::Leave(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), wait).await;
        }
        if let Some(m) = self.members.write().get_mut(&me.name) {
            m.status = MemberStatus::Left;
        }
        if let Some(p) = &self.snapshot {
            // A left agent does not rejoin on restart unless -rejoin.
            let _ = crate::fsutil::write_atomic(&p.with_extension("left"), b"left\n");
        }
    }

    /// Mark a failed member `left` everywhere (`force-leave`); with `prune`,
    /// forget it entirely.
    pub fn force_leave(&self, name: &str, prune: bool) -> Result<(), GossipError> {
        self.tx
            .send(Input::Broadcast(Msg::ForceLeave {
                name: name.to_string(),
                prune,
                nonce: rand::random(),
            }))
            .map_err(|_| GossipError::Stopped)
    }

    /// Peers remembered from the last run, to rejoin on restart. Empty after
    /// a graceful leave unless `rejoin_after_leave`.
    pub fn snapshot_peers(&self, rejoin_after_leave: bool) -> Vec<String> {
        let Some(p) = &self.snapshot else {
            return vec![];
        };
        if p.with_extension("left").exists() && !rejoin_after_leave {
            return vec![];
        }
        std::fs::read_to_string(p)
            .map(|s| {
                s.lines()
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn apply(&self, msg: Msg) {
        let msg = match msg {
            Msg::KeyOp { id, op, key } => return self.apply_key_op(id, op, &key),
            Msg::KeyAck(a) => {
                if let Some(list) = self.key_acks.lock().get_mut(&a.id) {
                    if !list.iter().any(|x| x.node == a.node) {
                        list.push(a);
                    }
                }
                return;
            }
            other => other,
        };
        let mut m = self.members.write();
        match msg {
            Msg::Leave { name, bump } => {
                if let Some(x) = m.get_mut(&name) {
                    if x.ident.bump == bump && x.status == MemberStatus::Alive {
                        x.status = MemberStatus::Leaving;
                        x.since = Instant::now();
                    }
                }
            }
            Msg::ForceLeave { name, prune, .. } => {
                let me = self.me.read().name.clone();
                if name == me {
                    return;
                }
                if prune {
                    if m.get(&name)
                        .is_some_and(|x| x.status != MemberStatus::Alive)
                    {
                        m.remove(&name);
                    }
                } else if let Some(x) = m.get_mut(&name) {
                    if x.status == MemberStatus::Failed {
                        tracing::info!(
                            "serf: EventMemberLeave (forced): {name} {}",
                            x.ident.addr.ip()
                        );
                        x.status = MemberStatus::Left;
                        x.since = Instant::now();
                    }
                }
            }
            Msg::Event { payload, .. } => {
                drop(m);
                if let Some(sink) = self.events.read().as_ref() {
                    let _ = sink.send(payload);
                }
            }
            Msg::KeyOp { .. } | Msg::KeyAck(_) => {}
        }
    }
}

/// `ip`, `ip:port` or `[v6]:port`; the port defaults to 8301.
pub fn parse_addr(s: &str) -> Result<SocketAddr, GossipError> {
    parse_addr_port(s, 8301)
}

/// [`parse_addr`] with another default port (8302 for the WAN pool).
pub fn parse_addr_port(s: &str, port: u16) -> Result<SocketAddr, GossipError> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<std::net::IpAddr>()
    {
        return Ok(SocketAddr::new(ip, port));
    }
    // A host name: resolve it (first address).
    let with_port = if s.contains(':') {
        s.to_string()
    } else {
        format!("{s}:{port}")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&with_port)
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| GossipError::BadAddress(s.to_string()))
}

/// Packets held back at once under a send delay (beyond: dropped).
const MAX_DELAYED: usize = 1024;

/// Send each queued packet once its time comes (the delay is the same for
/// all, so the queue is in time order). Ends with the gossip task.
async fn send_delayed(
    socket: Arc<UdpSocket>,
    delay: Duration,
    mut rx: mpsc::Receiver<(tokio::time::Instant, SocketAddr, bytes::Bytes)>,
) {
    tracing::debug!(?delay, "gossip: outgoing packets delayed");
    while let Some((at, to, data)) = rx.recv().await {
        tokio::time::sleep_until(at).await;
        if socket.send_to(&data, to).await.is_ok() {
            metrics::counter!("memberlist.udp.sent").increment(data.len() as u64);
        }
    }
}

type FocaT =
    Foca<Ident, BincodeCodec<bincode2::config::Configuration>, rand09::rngs::StdRng, Handler>;

struct Task {
    foca: FocaT,
    runtime: AccumulatingRuntime<Ident>,
    socket: Arc<UdpSocket>,
    /// With a send delay, packets go through [`send_delayed`].
    delayed: Option<mpsc::Sender<(tokio::time::Instant, SocketAddr, bytes::Bytes)>>,
    send_delay: Duration,
    tx: mpsc::UnboundedSender<Input>,
    vtx: watch::Sender<u64>,
    gossip: Gossip,
    inbox: Arc<parking_lot::Mutex<Vec<Msg>>>,
    reconnect_timeout: Duration,
    /// When a refused packet was last logged (at most one line per 10 s).
    last_warning: Option<Instant>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Input>, stop: CancellationToken) {
        let mut buf = vec![0u8; 65536];
        let mut reap = tokio::time::interval(Duration::from_secs(5));
        let socket = self.socket.clone();
        loop {
            tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => {
                        // memberlist's names: bytes, not packets.
                        metrics::counter!("memberlist.udp.received").increment(n as u64);
                        self.receive(&buf[..n], from);
                    }
                    Err(e) => tracing::debug!(error = %e, "gossip receive"),
                },
                input = rx.recv() => {
                    let Some(input) = input else { return };
                    let r = match input {
                        Input::Timer(t) => self.foca.handle_timer(t, &mut self.runtime),
                        Input::Announce(addr) => self.foca.announce(Ident::placeholder(addr), &mut self.runtime),
                        Input::Broadcast(msg) => {
                            match bincode2::serde::encode_to_vec(&msg, bincode2::config::standard()) {
                                Ok(data) => self.foca.add_broadcast(&data).map(|_| ())
                                    .and_then(|_| self.foca.gossip(&mut self.runtime)),
                                Err(e) => { tracing::warn!(error = %e, "encoding broadcast"); Ok(()) }
                            }
                        }
                        Input::Leave(done) => {
                            let r = self.foca.leave_cluster(&mut self.runtime);
                            self.flush().await;
                            let _ = done.send(());
                            r
                        }
                    };
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "gossip");
                    }
                }
                _ = reap.tick() => self.reap(),
                _ = stop.cancelled() => return,
            }
            self.flush().await;
        }
    }

    /// Open a packet (when encryption is on) and hand it to foca. A packet
    /// that does not open is dropped, counted and logged, never parsed.
    fn receive(&mut self, data: &[u8], from: SocketAddr) {
        let ring = self.gossip.keyring.clone();
        let opened;
        let plain = if ring.enabled() {
            match ring.open(data) {
                Ok(p) => {
                    opened = p;
                    &opened[..]
                }
                Err(OpenError::NotSealed) if !ring.verify_incoming => data,
                Err(OpenError::NotSealed) => {
                    return self.refuse(from, "it sent plaintext gossip and this agent requires encryption (encrypt_verify_incoming): give it the cluster's key with -encrypt");
                }
                Err(OpenError::NoKey) => {
                    return self.refuse(from, "No installed keys could decrypt the message: it holds another gossip key (-encrypt)");
                }
            }
        } else {
            data
        };
        self.time_probe(plain, false);
        if let Err(e) = self.foca.handle_data(plain, &mut self.runtime) {
            if !ring.enabled() && data.first() == Some(&MAGIC) {
                return self.refuse(from, "its gossip is encrypted and this agent has no key: start it with -encrypt set to the cluster's key");
            }
            tracing::trace!(error = %e, "gossip packet ignored");
        }
    }

    /// Show direct pings sent and acks received to the probe timer.
    fn time_probe(&self, packet: &[u8], outgoing: bool) {
        let mut rtt = self.gossip.rtt.lock();
        if !rtt.wanted() {
            return;
        }
        let Ok(h) = BincodeCodec(bincode2::config::standard()).decode_header(packet) else {
            return;
        };
        let h: foca::Header<Ident> = h;
        match (outgoing, h.message) {
            (true, foca::Message::Ping(n)) => rtt.ping(&h.dst.name, n),
            (false, foca::Message::Ack(n)) => rtt.ack(&h.src.name, n),
            _ => {}
        }
    }

    fn refuse(&mut self, from: SocketAddr, why: &'static str) {
        metrics::counter!("memberlist.udp.refused").increment(1);
        *self.gossip.refused.lock() = Some(Refusal {
            from,
            at: Instant::now(),
            why,
        });
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.last_warning = Some(Instant::now());
            tracing::error!("memberlist: Decrypt packet failed: packet from={from} dropped: {why}");
        }
    }

    /// Send what foca produced (sealed when encryption is on), schedule its
    /// timers, apply notifications.
    async fn flush(&mut self) {
        while let Some((to, data)) = self.runtime.to_send() {
            self.time_probe(&data, true);
            let data = match self.gossip.keyring.seal(&data) {
                Some(sealed) => bytes::Bytes::from(sealed),
                None => data,
            };
            if let Some(d) = &self.delayed {
                // A full queue drops the packet, as a congested link would.
                let at = tokio::time::Instant::now() + self.send_delay;
                let _ = d.try_send((at, to.addr, data));
                continue;
            }
            if self.socket.send_to(&data, to.addr).await.is_ok() {
                metrics::counter!("memberlist.udp.sent").increment(data.len() as u64);
            }
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = tx.send(Input::Timer(timer));
            });
        }
        let mut changed = false;
        let inbox = std::mem::take(&mut *self.inbox.lock());
        for msg in inbox {
            self.gossip.apply(msg);
            changed = true;
        }
        while let Some(n) = self.runtime.to_notify() {
            changed |= self.notify(n);
        }
        if changed {
            self.vtx.send_modify(|v| *v += 1);
            self.save_snapshot();
        }
    }

    fn notify(&mut self, n: OwnedNotification<Ident>) -> bool {
        let mut m = self.gossip.members.write();
        match n {
            OwnedNotification::MemberUp(id) => {
                // Serf's words, which Consul users know.
                tracing::info!("serf: EventMemberJoin: {} {}", id.name, id.addr.ip());
                metrics::counter!("serf.member.join").increment(1);
                m.insert(
                    id.name.clone(),
                    Member {
                        ident: id,
                        status: MemberStatus::Alive,
                        since: Instant::now(),
                    },
                );
                true
            }
            OwnedNotification::MemberDown(id) => {
                let Some(x) = m.get_mut(&id.name) else {
                    return false;
                };
                if x.ident != id {
                    // An older incarnation went down; the newer one stands.
                    return false;
                }
                x.status = if x.status == MemberStatus::Left {
                    // Forced out already (force-leave): a later word of its
                    // failure does not make it failed again.
                    return false;
                } else if x.status == MemberStatus::Leaving {
                    tracing::info!("serf: EventMemberLeave: {} {}", id.name, id.addr.ip());
                    metrics::counter!("serf.member.left").increment(1);
                    MemberStatus::Left
                } else {
                    tracing::info!("serf: EventMemberFailed: {} {}", id.name, id.addr.ip());
                    metrics::counter!("serf.member.failed").increment(1);
                    MemberStatus::Failed
                };
                x.since = Instant::now();
                true
            }
            OwnedNotification::Rename(old, new) => {
                if let Some(x) = m.get_mut(&old.name) {
                    if x.ident == old {
                        x.ident = new;
                        return true;
                    }
                }
                false
            }
            OwnedNotification::Rejoin(me) => {
                tracing::warn!(
                    "memberlist: Refuting a dead message: rejoined as {} {}",
                    me.name,
                    me.addr
                );
                *self.gossip.me.write() = me.clone();
                if let Some(x) = m.get_mut(&me.name) {
                    x.ident = me;
                    x.status = MemberStatus::Alive;
                }
                true
            }
            _ => false,
        }
    }

    /// Forget failed members after reconnect_timeout and left ones after a day.
    fn reap(&mut self) {
        self.gossip.rtt.lock().reap();
        let me = self.gossip.me.read().name.clone();
        let mut m = self.gossip.members.write();
        let before = m.len();
        m.retain(|name, x| {
            *name == me
                || match x.status {
                    MemberStatus::Failed => x.since.elapsed() < self.reconnect_timeout,
                    MemberStatus::Left => x.since.elapsed() < Duration::from_secs(24 * 3600),
                    _ => true,
                }
        });
        if m.len() != before {
            drop(m);
            self.vtx.send_modify(|v| *v += 1);
        }
    }

    fn save_snapshot(&self) {
        let Some(p) = &self.gossip.snapshot else {
            return;
        };
        let me = self.gossip.me.read().addr;
        let addrs: Vec<String> = self
            .gossip
            .members
            .read()
            .values()
            .filter(|x| x.ident.addr != me && x.status == MemberStatus::Alive)
            .map(|x| x.ident.addr.to_string())
            .collect();
        if addrs.is_empty() {
            return;
        }
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let mut text = addrs.join("\n");
        text.push('\n');
        if let Err(e) = crate::fsutil::write_atomic(p, text.as_bytes()) {
            tracing::debug!(error = %e, "saving gossip snapshot");
        }
    }
}
