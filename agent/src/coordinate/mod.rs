//! Network coordinates: [`vivaldi`] (serf's model), fed by the round trips
//! of the LAN gossip probes; the agent's loop that sends its coordinate to
//! the servers and keeps its peers' ([`sync`]); the servers' batching of
//! `PUT /v1/coordinate/update` ([`sync::Batcher`]); `?near` sorting
//! ([`near`]); a server's WAN coordinates, from its WAN pool's probes, and
//! the datacenters sorted by distance ([`wan`]). The table is
//! `state::coordinate`, the API `http::coordinate`.

pub mod near;
pub mod sync;
pub mod vivaldi;
pub mod wan;

pub use vivaldi::{Client, Config, Coordinate};
