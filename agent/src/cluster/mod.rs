//! Several agents as one cluster: 3–5 servers on raft, client agents, gossip.
//!
//! - [`gossip`]: SWIM membership (foca) on `ports.serf_lan`; alive / left /
//!   failed members, leave intents, force-leave, user events.
//! - [`router`]: the WAN pool's view — alive servers of every known
//!   datacenter, for requests with another `?dc=`.
//! - [`upstream`]: where requests this agent cannot answer go (the leader,
//!   or any alive server from a client agent).
//! - [`autopilot`]: what servers do about membership — bootstrap once
//!   `bootstrap_expect` servers are known, add new servers as voters, drop
//!   servers that left, and mirror gossip health into `serfHealth` checks.

pub mod autopilot;
pub mod gossip;
pub mod health;
pub mod keyring;
pub mod router;
pub mod rtt;
pub mod transfer;
pub mod upstream;

pub use upstream::Upstream;
