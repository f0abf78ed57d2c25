//! Network coordinates: [`vivaldi`] (serf's model), fed by the round trips
//! of the LAN gossip probes; the agent's loop that sends its coordinate to
//! the servers and keeps its peers' ([`sync`]); the servers' batching of
//! `PUT /v1/coordinate/update` ([`sync::Batcher`]); `?near` sorting
//! ([`near`]). The table is `state::coordinate`, the API `http::coordinate`.

pub mod near;
pub mod sync;
pub mod vivaldi;

pub use vivaldi::{Client, Config, Coordinate};
