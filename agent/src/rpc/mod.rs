//! Server RPC on `ports.server` (8300): [`client`] is how an agent calls a
//! server (a leaf every layer may use), [`server`] the listener.

pub mod client;
pub mod server;
