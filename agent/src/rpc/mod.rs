//! Server RPC on `ports.server` (8300): [`client`] is how an agent calls a
//! server (a leaf every layer may use), with [`write_conn`] the connections
//! of forwarded writes; [`server`] the listener; [`wire`] what both ends
//! agree on (headers, errors).

pub mod client;
pub mod server;
pub mod wire;
pub mod write_conn;
