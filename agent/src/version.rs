//! The two versions tribune reports, kept in one place.
//!
//! Clients gate features on the Consul version an agent reports (python
//! clients, consul-template, Terraform and Nomad read `/v1/agent/self`
//! `Config.Version`), so that field names the Consul release whose HTTP API
//! and DNS interface tribune follows. tribune's own release number is
//! reported beside it (`Config.TribuneVersion`, `tribune version`).

/// The Consul release whose API tribune implements: the response shapes
/// (`omitempty` fields, `ServiceLocality`, `PeerName`, ...) follow Consul
/// 1.21's structs.
pub const CONSUL_API: &str = "1.21.0";

/// tribune's own version.
pub const TRIBUNE: &str = env!("CARGO_PKG_VERSION");

/// The gossip `build` tag: `<version>:<revision>` in Consul; tribune puts
/// its own version and name where Consul puts the revision.
pub fn build_tag() -> String {
    format!("{TRIBUNE}:tribune")
}
