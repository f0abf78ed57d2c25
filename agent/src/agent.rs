//! Running an agent: storage and raft, the HTTP listener, graceful shutdown.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::{config_definitions, graceful_leave, reload, AppState, Shared, INTERRUPTED};
use crate::cluster::gossip::{Gossip, GossipError, GossipOptions, Ident};
use crate::cluster::keyring::Keyring;
use crate::cluster::Upstream;
use crate::config::{AgentConfig, Flags};
use crate::http;
use crate::http::serve::{Budget, Gate, Refuse};
use crate::local::sync::{CatalogSource, NodeInfo};
use crate::local::{CheckDef, LocalAgent, ServiceDef, Source};
use crate::raft::leadership::Leadership;
use crate::raft::network::Network;
use crate::raft::node::{RaftNode, RaftOptions, RaftStartError};
use crate::raft::proposer::{Proposer, WriteGate};
use crate::rpc::client::RpcClient;
use crate::state::Store;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Raft(Box<RaftStartError>),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("node id file {path}: {source}")]
    NodeId {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Gossip(#[from] GossipError),
    #[error("-join: {0}")]
    Join(GossipError),
    #[error("a client agent finds servers by gossip: ports.serf_lan must not be -1")]
    NoGossip,
    #[error("{0}")]
    Dns(#[from] crate::dns::DnsError),
    #[error("config: {0}")]
    Definition(String),
    #[error("config: {0}")]
    Definitions(#[from] crate::app::DefinitionError),
    #[error("config: {0}")]
    Watches(#[from] crate::watchplan::ConfigWatchError),
    #[error("HTTP server: {0}")]
    Serve(std::io::Error),
    #[error("{0}")]
    Storage(String),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
}

impl From<RaftStartError> for AgentError {
    fn from(e: RaftStartError) -> Self {
        Self::Raft(Box::new(e))
    }
}

/// Accept backlog: thousands of long-polling clients may connect at once.
const BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.set_nodelay(true)?;
    sock.bind(addr)?;
    sock.listen(BACKLOG)
}

/// The node's UUID: kept in the data dir so it survives restarts.
fn node_id(data_dir: Option<&Path>) -> Result<String, AgentError> {
    let Some(dir) = data_dir else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    let path = dir.join("node-id");
    let err = |source| AgentError::NodeId {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if uuid::Uuid::parse_str(s.trim()).is_ok() => Ok(s.trim().to_string()),
        _ => {
            std::fs::create_dir_all(dir).map_err(err)?;
            let id = uuid::Uuid::new_v4().to_string();
            crate::fsutil::write_atomic(&path, id.as_bytes()).map_err(err)?;
            Ok(id)
        }
    }
}

/// Run the agent until `stop` is cancelled (a signal) or the agent is told
/// to leave over HTTP. On a signal the graceful leave, when configured,
/// runs first, while gossip, RPC and the local agent still work; only then
/// is everything else stopped.
///
/// The start-up steps, in order: identity, the server RPC port, gossip,
/// raft, the shared state, the background tasks, then the listeners (RPC,
/// the cluster join, HTTP, DNS); then wait, and shut down.
pub async fn run(
    config: AgentConfig,
    flags: Flags,
    stop: CancellationToken,
) -> Result<(), AgentError> {
    // Cancelled once the agent is done with the cluster: every task stops.
    let shutdown = CancellationToken::new();
    let config = Arc::new(config);
    crate::telemetry::install(&config.telemetry);
    tokio::spawn(crate::telemetry::runtime::run(shutdown.clone()));
    let (node_id, raft_id) = identity(&config)?;
    let (services, checks) = config_definitions(&config)?;
    let watches = crate::watchplan::parse_config_watches(&config.watch_defs)?;
    let tls = Arc::new(crate::tls::AgentTls::load(&config)?);
    let rpc = RpcClient::with_tls(tls.rpc_client.as_ref().map(|t| t.config()));

    // Never unspecified: the config refuses or resolves 0.0.0.0 / ::.
    let advertise = config.advertise_addr.unwrap_or(config.bind_addr);
    let (rpc_listener, rpc_port) = bind_rpc(&config)?;
    let raft_addr = SocketAddr::new(advertise, rpc_port).to_string();
    let ids = Ids {
        node_id,
        raft_id,
        advertise,
        rpc_port,
        raft_addr,
    };
    let keyring = load_keyring(&config)?;
    let wan = start_wan(&config, &ids, &keyring, &shutdown).await?;
    let gossip = start_gossip(&config, &ids, &keyring, wan.as_ref(), &shutdown).await?;
    let store = Store::new();
    let (raft_node, leadership) =
        start_raft(&config, &ids, &gossip, &store, &rpc, &shutdown).await?;
    let cluster = Cluster {
        gossip,
        wan,
        raft_node,
        leadership,
        rpc,
        tls,
    };
    let state = shared_state(&config, &ids, &cluster, store, flags, &shutdown)?;
    load_definitions(&state, services, checks)?;
    spawn_background(&state, &cluster);

    let mut tasks: JoinSet<Result<(), AgentError>> = JoinSet::new();
    let budget = connection_budget(&config);
    tokio::spawn(http::serve::give_back_memory(
        budget.clone(),
        shutdown.clone(),
    ));
    if let Some(listener) = rpc_listener {
        serve_rpc(&state, listener, &ids.raft_addr, &budget);
    }
    if let Some(g) = &cluster.gossip {
        join_cluster(&state, g).await?;
    }
    join_wan(&state, cluster.wan.as_ref()).await?;
    serve_http(&state, watches, &budget, &mut tasks)?;
    serve_https(&state, &budget, &mut tasks)?;
    serve_dns(&state, &mut tasks).await?;
    tracing::info!("tribune agent running!");
    crate::supervisor::ready();
    wait_and_stop(&state, cluster, stop, tasks).await
}

/// What start-up learns about this agent before anything runs.
struct Ids {
    node_id: String,
    raft_id: crate::raft::NodeId,
    advertise: IpAddr,
    rpc_port: u16,
    /// The server RPC address other servers reach (raft, forwarding).
    raft_addr: String,
}

/// The agent's links to its cluster, made before the shared state.
struct Cluster {
    gossip: Option<Gossip>,
    /// A server's WAN pool (`None` on clients, or `ports.serf_wan` = -1).
    wan: Option<Gossip>,
    raft_node: Option<RaftNode>,
    leadership: Arc<Leadership>,
    rpc: RpcClient,
    tls: Arc<crate::tls::AgentTls>,
}

/// The node UUID (kept in the data dir) and the raft id drawn from it.
fn identity(config: &AgentConfig) -> Result<(String, crate::raft::NodeId), AgentError> {
    let node_id = node_id(config.data_dir.as_deref())?;
    let uuid = uuid::Uuid::parse_str(&node_id).unwrap_or_default();
    // Raft ids are u64; the first half of the node UUID is unique enough and stable.
    let raft_id = u64::from_be_bytes(uuid.as_bytes()[..8].try_into().unwrap_or([0; 8])).max(1);
    Ok((node_id, raft_id))
}

/// Server RPC (raft, forwarding) listens on servers only; its port (0 when
/// none) is announced by gossip.
fn bind_rpc(config: &AgentConfig) -> Result<(Option<TcpListener>, u16), AgentError> {
    if !config.server || config.ports.server < 0 {
        return Ok((None, 0));
    }
    let addr = SocketAddr::new(config.bind_addr, config.ports.server as u16);
    let listener = listen(addr).map_err(|source| AgentError::Bind {
        what: "server RPC",
        addr,
        source,
    })?;
    let port = listener.local_addr().map_err(AgentError::Serve)?.port();
    Ok((Some(listener), port))
}

/// Gossip (LAN) membership, unless `ports.serf_lan` is -1; the banner is
/// printed once its port is known.
async fn start_gossip(
    config: &AgentConfig,
    ids: &Ids,
    keyring: &Arc<Keyring>,
    wan: Option<&Gossip>,
    shutdown: &CancellationToken,
) -> Result<Option<Gossip>, AgentError> {
    let gossip = if config.ports.serf_lan >= 0 {
        let bind = SocketAddr::new(config.bind_addr, config.ports.serf_lan as u16);
        let ident = Ident {
            addr: bind,
            bump: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            name: config.node_name.clone(),
            node_id: ids.node_id.clone(),
            dc: config.datacenter.clone(),
            server: config.server,
            rpc_port: ids.rpc_port,
            raft_id: if config.server { ids.raft_id } else { 0 },
            bootstrap_expect: config.bootstrap_expect.unwrap_or(0),
            build: format!("{}:tribune", env!("CARGO_PKG_VERSION")),
        };
        let options = GossipOptions {
            bind,
            advertise: ids.advertise,
            keyring: keyring.clone(),
            default_port: 8301,
            ident,
            snapshot: config
                .data_dir
                .as_ref()
                .map(|d| d.join("serf").join("local.snapshot")),
            reconnect_timeout: config.reconnect_timeout,
            send_delay: Duration::ZERO,
        };
        Some(Gossip::start(options, shutdown.clone()).await?)
    } else {
        None
    };
    let serf_lan = gossip
        .as_ref()
        .map_or(-1, |g| i32::from(g.me().addr.port()));
    crate::banner::print(
        config,
        &ids.node_id,
        &crate::banner::Addrs {
            advertise: ids.advertise,
            serf_lan,
            serf_wan: wan.map_or(config.ports.serf_wan, |w| i32::from(w.me().addr.port())),
            gossip_encrypted: gossip.as_ref().is_some_and(|g| g.keyring().enabled()),
        },
    );
    if let Some(g) = &gossip {
        let encrypted = if g.keyring().enabled() {
            ", encrypted"
        } else {
            ""
        };
        tracing::info!("gossip (LAN) listening on {}{encrypted}", g.me().addr);
    }
    if let Some(w) = wan {
        let encrypted = if w.keyring().enabled() {
            ", encrypted"
        } else {
            ""
        };
        tracing::info!("gossip (WAN) listening on {}{encrypted}", w.me().addr);
        // Parsed (and refused if bad) when the pool started.
        let delay = test_wan_delay(std::env::var_os(TEST_WAN_DELAY).as_deref()).unwrap_or_default();
        if !delay.is_zero() {
            tracing::warn!(
                "{TEST_WAN_DELAY}={}: every outgoing WAN gossip packet is held back {delay:?} (a test knob that fakes WAN latency; never set it in production)",
                delay.as_millis()
            );
        }
    }
    if !config.server && gossip.is_none() {
        return Err(AgentError::NoGossip);
    }
    Ok(gossip)
}

/// The gossip encryption keys, shared by the LAN and WAN pools (as
/// Consul's `-encrypt` is).
fn load_keyring(config: &AgentConfig) -> Result<Arc<Keyring>, AgentError> {
    let sec = &config.security;
    let keyring = Keyring::load(
        sec.encrypt.as_deref(),
        config
            .data_dir
            .as_ref()
            .map(|d| d.join("serf").join("local.keyring")),
        sec.encrypt_verify_incoming,
        sec.encrypt_verify_outgoing,
    )
    .map_err(GossipError::from)?;
    Ok(Arc::new(keyring))
}

/// A server's WAN pool on `ports.serf_wan` (unless -1), its members named
/// `<node>.<dc>` (Consul's server_serf), carrying the datacenter and the
/// server RPC port other datacenters forward to.
async fn start_wan(
    config: &AgentConfig,
    ids: &Ids,
    keyring: &Arc<Keyring>,
    shutdown: &CancellationToken,
) -> Result<Option<Gossip>, AgentError> {
    if !config.server || config.ports.serf_wan < 0 || ids.rpc_port == 0 {
        return Ok(None);
    }
    let bind = SocketAddr::new(config.bind_addr, config.ports.serf_wan as u16);
    let ident = Ident {
        addr: bind,
        bump: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        name: crate::cluster::router::wan_name(&config.node_name, &config.datacenter),
        node_id: ids.node_id.clone(),
        dc: config.datacenter.clone(),
        server: true,
        rpc_port: ids.rpc_port,
        raft_id: ids.raft_id,
        bootstrap_expect: config.bootstrap_expect.unwrap_or(0),
        build: format!("{}:tribune", env!("CARGO_PKG_VERSION")),
    };
    let options = GossipOptions {
        bind,
        advertise: ids.advertise,
        keyring: keyring.clone(),
        default_port: 8302,
        ident,
        snapshot: config
            .data_dir
            .as_ref()
            .map(|d| d.join("serf").join("remote.snapshot")),
        reconnect_timeout: config.reconnect_timeout,
        send_delay: test_wan_delay(std::env::var_os(TEST_WAN_DELAY).as_deref())?,
    };
    // Logged once the banner is out (the log stream starts after it).
    Ok(Some(Gossip::start(options, shutdown.clone()).await?))
}

/// The environment variable of `test_wan_delay`.
pub const TEST_WAN_DELAY: &str = "TRIBUNE_TEST_WAN_DELAY_MS";

/// Most [`TEST_WAN_DELAY`] accepted (ms).
const MAX_TEST_WAN_DELAY_MS: u64 = 1000;

/// `TRIBUNE_TEST_WAN_DELAY_MS`: milliseconds every outgoing WAN gossip
/// packet is held back, so tests can give datacenters distinct round trips
/// where `tc netem` is unavailable (the probes, Vivaldi, the coordinate
/// exchange and the sorting all run for real). Off unless set; a decimal
/// integer 0..=1000, anything else refuses to start.
fn test_wan_delay(v: Option<&std::ffi::OsStr>) -> Result<Duration, AgentError> {
    let Some(v) = v else {
        return Ok(Duration::ZERO);
    };
    v.to_str()
        .filter(|s| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|ms| *ms <= MAX_TEST_WAN_DELAY_MS)
        .map(Duration::from_millis)
        .ok_or_else(|| {
            AgentError::Definition(format!(
                "{TEST_WAN_DELAY} must be a whole number of milliseconds from 0 to {MAX_TEST_WAN_DELAY_MS}, got {v:?}"
            ))
        })
}

/// Raft on a server (with its role-change log); a client only follows
/// leadership as its servers report it.
async fn start_raft(
    config: &AgentConfig,
    ids: &Ids,
    gossip: &Option<Gossip>,
    store: &Arc<Store>,
    rpc: &RpcClient,
    shutdown: &CancellationToken,
) -> Result<(Option<RaftNode>, Arc<Leadership>), AgentError> {
    if !config.server {
        return Ok((None, Arc::new(Leadership::default())));
    }
    let node = RaftNode::start(
        RaftOptions {
            id: ids.raft_id,
            addr: ids.raft_addr.clone(),
            data_dir: config.data_dir.clone(),
            raft_multiplier: config.raft_multiplier,
            snapshot_threshold: config.raft_snapshot_threshold,
            bootstrap: config.bootstraps_alone(),
            network: Network::new(rpc.clone()),
        },
        store.clone(),
    )
    .await?;
    crate::telemetry::raft::spawn(node.raft.clone(), shutdown.clone());
    crate::raft::transitions::spawn(
        node.raft.clone(),
        ids.raft_addr.clone(),
        raft_names(gossip.clone(), ids.raft_id, config.node_name.clone()),
    );
    let l = node.leadership.clone();
    Ok((Some(node), l))
}

/// The shared state: the upstream servers, the proposer (raft here, or a
/// server's), the local agent and the event buffer.
fn shared_state(
    config: &Arc<AgentConfig>,
    ids: &Ids,
    cluster: &Cluster,
    store: Arc<Store>,
    flags: Flags,
    shutdown: &CancellationToken,
) -> Result<Shared, AgentError> {
    let leadership = &cluster.leadership;
    let upstream = cluster.gossip.as_ref().map(|g| {
        Upstream::new(
            cluster.rpc.clone(),
            config.server.then(|| leadership.clone()),
            g.clone(),
            ids.raft_addr.clone(),
        )
    });
    let proposer = match (&cluster.raft_node, &upstream) {
        (Some(n), up) => {
            // With ACLs on, the agent's own writes are checked where proposed.
            let gate = config.acl.enabled.then(|| WriteGate {
                store: store.clone(),
                default: config.acl.default_policy,
            });
            Proposer::start(n.raft.clone(), leadership.clone(), up.clone(), gate)
        }
        (None, Some(up)) => Proposer::remote(up.clone()),
        // start_gossip refuses a client without gossip.
        (None, None) => return Err(AgentError::NoGossip),
    };
    let node_info = NodeInfo {
        node: config.node_name.clone(),
        id: ids.node_id.clone(),
        address: ids.advertise.to_string(),
        datacenter: config.datacenter.clone(),
        meta: crate::local::sync::node_meta(&config.node_meta),
        server_port: config.server.then_some(ids.rpc_port),
        own_serf_health: cluster.gossip.is_none(),
    };
    let local = LocalAgent::new(
        config.enable_script_checks,
        config.check_update_interval,
        shutdown.clone(),
    );
    let events = crate::events::Events::new(config.node_name.clone(), local.clone());
    let acl_tokens = crate::acl::config::AgentTokens::from_config(&config.acl);
    if config.acl.enable_token_persistence {
        if let Some(d) = &config.data_dir {
            if let Err(e) = acl_tokens.load_persisted(&d.join("acl-tokens.json")) {
                tracing::warn!(error = %e, "persisted ACL tokens not loaded");
            }
        }
    }
    Ok(Arc::new(AppState {
        config: config.clone(),
        store,
        raft: cluster.raft_node.as_ref().map(|n| n.raft.clone()),
        raft_id: ids.raft_id,
        proposer,
        leadership: leadership.clone(),
        gossip: cluster.gossip.clone(),
        router: crate::cluster::router::Router::start(
            &config.datacenter,
            cluster.wan.clone(),
            shutdown.clone(),
        ),
        upstream,
        rpc: cluster.rpc.clone(),
        leaving: CancellationToken::new(),
        node_id: ids.node_id.clone(),
        node: node_info,
        local,
        events,
        flags,
        acl_tokens,
        acl_fallback: Default::default(),
        shutdown: shutdown.clone(),
        started: Instant::now(),
        tls: cluster.tls.clone(),
        coalesce: Default::default(),
        read_index: Default::default(),
        cache: Default::default(),
        coord_batch: Default::default(),
        wan_coords: Default::default(),
    }))
}

/// The services and checks of the config files.
fn load_definitions(
    state: &Shared,
    services: Vec<ServiceDef>,
    checks: Vec<CheckDef>,
) -> Result<(), AgentError> {
    for s in services {
        state.local.add_service(s, Source::Config, true);
    }
    for c in checks {
        state
            .local
            .add_check(c, Source::Config)
            .map_err(|e| AgentError::Definition(e.to_string()))?;
    }
    Ok(())
}

/// Anti-entropy, SIGHUP reloads, session TTLs, user events (by gossip)
/// and remote exec.
fn spawn_background(state: &Shared, cluster: &Cluster) {
    let source = match (&cluster.raft_node, &state.upstream) {
        (None, Some(up)) => CatalogSource::Remote(up.clone()),
        _ => CatalogSource::Local(state.store.clone()),
    };
    tokio::spawn(crate::local::sync::run(
        state.local.clone(),
        state.node.clone(),
        source,
        state.proposer.clone(),
        {
            let st = state.clone();
            Arc::new(move || st.agent_actor())
        },
        state.leaving.clone(),
    ));
    tokio::spawn(reload_on_sighup(state.clone()));
    tokio::spawn(crate::session_ttl::run(
        state.store.clone(),
        state.leadership.clone(),
        state.proposer.clone(),
        state.shutdown.clone(),
    ));
    if state.config.acl.enabled && state.raft.is_some() {
        tokio::spawn(crate::acl::leader::run(state.clone()));
        tokio::spawn(crate::acl::replication::run(state.clone()));
    }
    if let Some(g) = &cluster.gossip {
        connect_events(&state.events, g);
    }
    crate::coordinate::sync::spawn(state);
    if let (false, Some(w)) = (state.config.coordinates.disabled, state.router.wan()) {
        crate::coordinate::wan::spawn(
            &state.wan_coords,
            w,
            state.rpc.clone(),
            state.shutdown.clone(),
        );
    }
    // The agent cache fetches through the API router.
    state.cache.set_max_bytes(state.config.cache_max_bytes);
    state.cache.set_router(http::router(state.clone()));
    if !state.config.disable_remote_exec {
        let rexec = crate::remote_exec::RemoteExec::new(state.clone(), http::router(state.clone()));
        state
            .events
            .set_remote_exec(Arc::new(move |ev| rexec.handle(ev)));
    }
}

/// The server RPC port: raft, forwarded requests (into the API router),
/// writes and DNS lookups.
fn serve_rpc(state: &Shared, listener: TcpListener, raft_addr: &str, budget: &Arc<Budget>) {
    let config = &state.config;
    let tls = match &state.tls.rpc_server {
        Some(_) if config.security.tls.rpc().verify_incoming == Some(true) => {
            " (mutual TLS: client certificates required)"
        }
        Some(_) => " (TLS)",
        None => "",
    };
    tracing::info!("server RPC listening on {}{tls}", raft_addr);
    let app = crate::rpc::server::router(state.clone(), http::router(state.clone()));
    let gate = Gate::new(
        "server RPC",
        "rpc_max_conns_per_client",
        config.limits.rpc_max_conns_per_client,
        budget.clone(),
        Refuse::Close,
    );
    tokio::spawn(crate::rpc::server::serve(
        listener,
        app,
        gate,
        config.limits.rpc_handshake_timeout,
        state.tls.rpc_server.clone(),
        state.shutdown.clone(),
    ));
}

/// Autopilot on servers; `-join` (which must succeed), the remembered
/// peers, and `-retry-join` in the background.
async fn join_cluster(state: &Shared, g: &Gossip) -> Result<(), AgentError> {
    let config = &state.config;
    let shutdown = &state.shutdown;
    if config.server {
        let health_of = state.clone();
        // consul.autopilot.healthy: asked of every server, off autopilot's loop.
        let refresh_health = move || {
            let s = health_of.clone();
            tokio::spawn(async move { crate::cluster::health::collect(&s).await });
        };
        tokio::spawn(crate::cluster::autopilot::run(
            state.autopilot(),
            refresh_health,
            g.clone(),
            config.bootstrap_expect,
            shutdown.clone(),
        ));
    }
    join_pool(
        g,
        "LAN",
        &config.start_join,
        &config.retry_join,
        config.retry_interval,
        state,
    )
    .await
}

/// One pool's joins: `start` (which must succeed), the peers remembered
/// from the last run, and `retry` in the background every `every`.
async fn join_pool(
    g: &Gossip,
    pool: &'static str,
    start: &[String],
    retry: &[String],
    every: Duration,
    state: &Shared,
) -> Result<(), AgentError> {
    if !start.is_empty() {
        let n = g.join(start).await.map_err(AgentError::Join)?;
        tracing::info!(number_of_nodes = n, "({pool}) joined");
    }
    let remembered = g.snapshot_peers(state.config.rejoin_after_leave);
    if !remembered.is_empty() {
        let g = g.clone();
        tokio::spawn(async move {
            match g.join(&remembered).await {
                Ok(n) => tracing::info!("({pool}) rejoined {n} remembered member(s)"),
                Err(e) => tracing::info!("({pool}) rejoining remembered members: {e}"),
            }
        });
    }
    if !retry.is_empty() {
        tokio::spawn(retry_join(
            g.clone(),
            pool,
            retry.to_vec(),
            every,
            state.shutdown.clone(),
        ));
    }
    Ok(())
}

/// `-retry-join` (`pool` "LAN") or `-retry-join-wan` ("WAN"): try every
/// `every` until one join succeeds.
async fn retry_join(
    g: Gossip,
    pool: &'static str,
    list: Vec<String>,
    every: Duration,
    stop: CancellationToken,
) {
    loop {
        match g.join(&list).await {
            Ok(n) => {
                tracing::info!(
                    cluster = pool,
                    num_agents = n,
                    "Join cluster completed. Synced with initial agents"
                );
                return;
            }
            Err(e) => tracing::warn!(
                cluster = pool,
                retry_interval = %gocompat::duration::short(every),
                error = %e,
                "Join cluster failed, will retry"
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// A server's WAN joins: `-join-wan` (which must succeed), the remembered
/// WAN peers, `-retry-join-wan` in the background. A client agent has no
/// WAN pool: its WAN joins are refused with a warning, as Consul's are.
async fn join_wan(state: &Shared, wan: Option<&Gossip>) -> Result<(), AgentError> {
    let config = &state.config;
    let wanted = !config.start_join_wan.is_empty() || !config.retry_join_wan.is_empty();
    let Some(g) = wan else {
        if wanted {
            tracing::warn!("(WAN) couldn't join: Err: Must be a server to join WAN cluster");
        }
        return Ok(());
    };
    join_pool(
        g,
        "WAN",
        &config.start_join_wan,
        &config.retry_join_wan,
        config.retry_interval_wan,
        state,
    )
    .await
}

/// The HTTP API (and the config file's watches, which use it).
fn serve_http(
    state: &Shared,
    watches: Vec<crate::watchplan::ConfigWatch>,
    budget: &Arc<Budget>,
    tasks: &mut JoinSet<Result<(), AgentError>>,
) -> Result<(), AgentError> {
    let config = &state.config;
    if config.ports.http < 0 {
        if !watches.is_empty() {
            tracing::warn!("watches need the HTTP API, which is disabled: not started");
        }
        return Ok(());
    }
    let addr = SocketAddr::new(config.client_addr, config.ports.http as u16);
    let listener = listen(addr).map_err(|source| AgentError::Bind {
        what: "HTTP API",
        addr,
        source,
    })?;
    let bound = listener.local_addr().map_err(AgentError::Serve)?;
    tracing::info!("HTTP API listening on http://{bound}");
    warn_if_exposed(config.client_addr);
    crate::watchplan::spawn_config_watches(watches, bound, state.shutdown.clone());
    let app = http::router(state.clone());
    let gate = Gate::new(
        "HTTP API",
        "http_max_conns_per_client",
        config.limits.http_max_conns_per_client,
        budget.clone(),
        Refuse::Http,
    );
    let timeouts = (&config.limits).into();
    let stop = state.shutdown.clone();
    tasks.spawn(async move {
        http::serve::serve(listener, app, gate, timeouts, stop).await;
        Ok(())
    });
    Ok(())
}

/// The HTTPS API (`ports.https`), with the `tls.https` settings.
fn serve_https(
    state: &Shared,
    budget: &Arc<Budget>,
    tasks: &mut JoinSet<Result<(), AgentError>>,
) -> Result<(), AgentError> {
    let config = &state.config;
    let Some(tls) = state.tls.https.clone() else {
        return Ok(());
    };
    let addr = SocketAddr::new(config.client_addr, config.ports.https as u16);
    let listener = listen(addr).map_err(|source| AgentError::Bind {
        what: "HTTPS API",
        addr,
        source,
    })?;
    let bound = listener.local_addr().map_err(AgentError::Serve)?;
    let client_certs = if config.security.tls.https().verify_incoming == Some(true) {
        " (client certificates required)"
    } else {
        ""
    };
    tracing::info!("HTTPS API listening on https://{bound}{client_certs}");
    let gate = Gate::new(
        "HTTPS API",
        "http_max_conns_per_client",
        config.limits.http_max_conns_per_client,
        budget.clone(),
        Refuse::Close,
    );
    let app = http::router(state.clone());
    let timeouts = (&config.limits).into();
    let handshake = config.limits.https_handshake_timeout;
    let stop = state.shutdown.clone();
    tasks.spawn(async move {
        http::serve::serve_tls(listener, app, gate, timeouts, handshake, tls, stop).await;
        Ok(())
    });
    Ok(())
}

/// The DNS interface: a server answers from its store (asking the leader
/// when it must), a client agent asks a server.
/// DNS answers with the agent's default token; a token that does not
/// resolve (or no server to ask) may see nothing.
fn dns_acl(s: Shared) -> crate::dns::AclCheck {
    Arc::new(move || {
        let s = s.clone();
        Box::pin(async move {
            s.resolve_token(None)
                .await
                .unwrap_or_else(|_| crate::dns::lookup::deny_all())
        })
    })
}

/// A server's DNS runs prepared queries as `/v1/query/<q>/execute` does.
fn dns_queries(s: Shared) -> crate::dns::QueryExec {
    Arc::new(move |name: String, token: Option<String>| {
        let s = s.clone();
        Box::pin(async move { crate::dns::lookup::query(&s, &name, token.as_deref()).await })
    })
}

/// `dns_config.use_cache`: service lookups read `/v1/health/service/<s>`
/// through the agent cache (the agent's default token, as DNS acts with).
fn dns_cache(s: &Shared) -> crate::dns::lookup::CachedServices {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let cache = s.cache.clone();
    let max_age = s.config.dns.cache_max_age;
    Arc::new(move |service: String, tag: Option<String>| {
        let cache = cache.clone();
        Box::pin(async move {
            let mut uri = format!(
                "/v1/health/service/{}",
                utf8_percent_encode(&service, NON_ALPHANUMERIC)
            );
            if let Some(t) = tag {
                uri.push_str(&format!(
                    "?tag={}",
                    utf8_percent_encode(&t, NON_ALPHANUMERIC)
                ));
            }
            cache
                .read_own(&uri, Some(max_age))
                .await
                .map_err(|st| crate::dns::lookup::LookupError::Rpc(format!("agent cache: {st}")))
        })
    })
}

async fn serve_dns(
    state: &Shared,
    tasks: &mut JoinSet<Result<(), AgentError>>,
) -> Result<(), AgentError> {
    let config = &state.config;
    if config.ports.dns < 0 {
        return Ok(());
    }
    let addr = SocketAddr::new(config.client_addr, config.ports.dns as u16);
    let remote = state.upstream.clone().map(|up| {
        let r = crate::dns::lookup::Remote::new(up, config.dns.allow_stale, config.dns.max_stale);
        match config.dns.use_cache && !config.server {
            true => r.with_cache(dns_cache(state)),
            false => r,
        }
    });
    let mode = match (config.server, remote) {
        (false, Some(r)) => crate::dns::Mode::Client(r),
        (_, remote) => crate::dns::Mode::Server {
            leadership: state.leadership.clone(),
            remote,
            queries: dns_queries(state.clone()),
        },
    };
    let mut handler = crate::dns::ConsulDns::new(
        state.store.clone(),
        config.datacenter.clone(),
        config.dns.clone(),
        mode,
    );
    if config.acl.enabled {
        let s = state.clone();
        handler = handler
            .with_acl(dns_acl(state.clone()))
            .with_token(Arc::new(move || {
                s.acl_tokens.default_token().map(|t| t.to_string())
            }));
    }
    if config.server {
        handler = handler.with_wan(state.router.clone(), state.rpc.clone());
    }
    let (bound, task) = crate::dns::serve(addr, handler, state.shutdown.clone()).await?;
    tracing::info!("DNS listening on dns://{bound} (udp and tcp)");
    tasks.spawn(async move {
        let _ = task.await;
        Ok(())
    });
    Ok(())
}

/// Wait for a signal, `PUT /v1/agent/leave` or a storage failure; leave
/// gracefully when configured; stop every task and raft.
async fn wait_and_stop(
    state: &Shared,
    cluster: Cluster,
    stop: CancellationToken,
    mut tasks: JoinSet<Result<(), AgentError>>,
) -> Result<(), AgentError> {
    let shutdown = &state.shutdown;
    let storage = cluster.leadership.storage().clone();
    let fatal = tokio::select! {
        // `PUT /v1/agent/leave` left already.
        _ = shutdown.cancelled() => None,
        _ = stop.cancelled() => {
            if cluster.gossip.is_some() && state.config.leave_on(INTERRUPTED.load(Ordering::Relaxed)) {
                graceful_leave(state).await;
            }
            None
        }
        // Raft storage cannot be trusted: stop (no graceful leave, which
        // would need raft writes) so that a supervisor restarts the agent.
        msg = storage.fatal() => Some(msg),
    };
    shutdown.cancel();
    tracing::info!("Requesting shutdown");
    crate::supervisor::stopping();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Err(e)) => tracing::warn!(error = %e, "listener ended with error"),
            Err(e) => tracing::warn!(error = %e, "listener task failed"),
            Ok(Ok(())) => {}
        }
    }
    if let Some(node) = cluster.raft_node {
        node.shutdown().await;
    }
    if let Some(msg) = fatal.or_else(|| storage.fatal_message()) {
        return Err(AgentError::Storage(msg));
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// The connections all listeners may hold together, from the open-file
/// limit (logged, with a warning when a per-client cap cannot be reached).
fn connection_budget(c: &AgentConfig) -> Arc<Budget> {
    let (budget, limit) = Budget::from_rlimit();
    tracing::info!(
        "connection limit: {} (open-file limit {limit}); per client: HTTP {}, RPC {} (0 = no cap)",
        budget.max(),
        c.limits.http_max_conns_per_client,
        c.limits.rpc_max_conns_per_client
    );
    let per_client = c.limits.http_max_conns_per_client as usize;
    if per_client > budget.max() {
        tracing::warn!(
            "limits.http_max_conns_per_client is {per_client} but the open-file limit {limit} \
             allows only {} connections: raise it (ulimit -n)",
            budget.max()
        );
    }
    budget
}

/// The API answers anyone who can reach `-client`: say so when that is
/// more than this machine.
fn warn_if_exposed(client: IpAddr) {
    if !client.is_loopback() {
        tracing::warn!(
            client_addr = %client,
            "[SECURITY] the HTTP API and DNS listen on a non-loopback address without ACLs: \
             anyone who can reach {client} can read and change all data and register checks; \
             use -client 127.0.0.1 or restrict access to this address"
        );
    }
}

/// Node names of raft ids, as gossip knows them (for the log).
fn raft_names(
    gossip: Option<Gossip>,
    own_id: crate::raft::NodeId,
    own_name: String,
) -> crate::raft::transitions::Names {
    Arc::new(move |id| {
        if id == own_id {
            return Some(own_name.clone());
        }
        let g = gossip.as_ref()?;
        g.members()
            .into_iter()
            .find(|m| m.ident.raft_id == id)
            .map(|m| m.ident.name)
    })
}

/// User events travel by gossip: fired events are broadcast, received ones
/// delivered to the agent's buffer (which dedupes and filters them).
struct GossipEvents(Gossip);

impl crate::events::Broadcast for GossipEvents {
    fn broadcast(&self, ev: &crate::events::UserEvent) -> Result<(), crate::events::EventError> {
        let bytes = bincode::serialize(ev)
            .map_err(|e| crate::events::EventError::Broadcast(e.to_string()))?;
        self.0
            .broadcast_event(bytes)
            .map_err(|e| crate::events::EventError::Broadcast(e.to_string()))
    }
}

fn connect_events(events: &Arc<crate::events::Events>, g: &Gossip) {
    events.set_broadcast(Arc::new(GossipEvents(g.clone())));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    g.set_event_sink(tx);
    let events = events.clone();
    tokio::spawn(async move {
        while let Some(p) = rx.recv().await {
            match bincode::deserialize::<crate::events::UserEvent>(&p) {
                Ok(ev) => {
                    events.deliver(ev);
                }
                Err(e) => tracing::debug!(error = %e, "undecodable user event"),
            }
        }
    });
}

async fn reload_on_sighup(state: Arc<AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            r = hup.recv() => if r.is_none() { return },
            _ = state.shutdown.cancelled() => return,
        }
        tracing::info!(signal = "hangup", "Caught");
        if let Err(e) = reload(&state) {
            tracing::error!(error = %e, "reload failed; configuration unchanged");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_wan_delay_is_strict_and_bounded() {
        let d = |v: &str| test_wan_delay(Some(std::ffi::OsStr::new(v))).ok();
        assert_eq!(test_wan_delay(None).ok(), Some(Duration::ZERO));
        assert_eq!(d("0"), Some(Duration::ZERO));
        assert_eq!(d("40"), Some(Duration::from_millis(40)));
        assert_eq!(d("1000"), Some(Duration::from_secs(1)));
        for bad in [
            "",
            "1001",
            "-1",
            "+5",
            "5ms",
            " 5",
            "5 ",
            "0x10",
            "99999999999999999999",
        ] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }
}
