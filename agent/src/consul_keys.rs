//! The key names Consul accepts in its config files, so tribune can tell a
//! typo (an error, as Consul's `invalid config key X`) from a Consul setting
//! tribune does not implement (a warning: an existing Consul config must
//! still load).
//!
//! The lists follow Consul's `agent/config` structs: each key is the
//! `mapstructure` name. Consul matches those ignoring case and also takes a
//! struct field's Go name (`EnableTagOverride` for `enable_tag_override`)
//! and a few `alias` spellings (`scriptargs`); comparing keys lowercased
//! with `_` removed accepts all of those.

use serde_json::Value;

/// Top-level keys of Consul's `Config` and `DeprecatedConfig`.
const TOP_LEVEL: &[&str] = &[
    "acl",
    "addresses",
    "advertise_addr",
    "advertise_addr_ipv4",
    "advertise_addr_ipv6",
    "advertise_addr_wan",
    "advertise_addr_wan_ipv4",
    "advertise_addr_wan_ipv6",
    "advertise_reconnect_timeout",
    "auto_config",
    "autopilot",
    "bind_addr",
    "bootstrap",
    "bootstrap_expect",
    "cache",
    "check",
    "check_output_max_size",
    "check_update_interval",
    "checks",
    "client_addr",
    "cloud",
    "config_entries",
    "coordinate_update_period",
    "auto_encrypt",
    "connect",
    "dns_config",
    "domain",
    "alt_domain",
    "recursors",
    "data_dir",
    "datacenter",
    "default_query_time",
    "disable_anonymous_signature",
    "disable_coordinates",
    "disable_host_node_id",
    "disable_http_unprintable_char_filter",
    "disable_keyring_file",
    "disable_remote_exec",
    "disable_update_check",
    "discard_check_output",
    "discovery_max_stale",
    "enable_agent_tls_for_checks",
    "enable_central_service_config",
    "enable_debug",
    "enable_script_checks",
    "enable_local_script_checks",
    "enable_syslog",
    "encrypt",
    "encrypt_verify_incoming",
    "encrypt_verify_outgoing",
    "gossip_lan",
    "gossip_wan",
    "http_config",
    "leave_on_terminate",
    "license_path",
    "limits",
    "locality",
    "log_level",
    "log_sublevels",
    "log_json",
    "log_file",
    "log_rotate_duration",
    "log_rotate_bytes",
    "log_rotate_max_files",
    "max_query_time",
    "node_id",
    "node_meta",
    "node_name",
    "peering",
    "performance",
    "pid_file",
    "ports",
    "primary_datacenter",
    "primary_gateways",
    "primary_gateways_interval",
    "protocol",
    "raft_protocol",
    "raft_snapshot_threshold",
    "raft_snapshot_interval",
    "raft_trailing_logs",
    "reconnect_timeout",
    "reconnect_timeout_wan",
    "rejoin_after_leave",
    "auto_reload_config",
    "retry_interval",
    "retry_interval_wan",
    "retry_join",
    "retry_max",
    "retry_max_wan",
    "retry_join_wan",
    "serf_lan_allowed_cidrs",
    "serf_wan_allowed_cidrs",
    "serf_lan",
    "serf_wan",
    "server",
    "server_name",
    "service",
    "services",
    "session_ttl_min",
    "skip_leave_on_interrupt",
    "syslog_facility",
    "tls",
    "tagged_addresses",
    "telemetry",
    "translate_wan_addrs",
    "xds",
    "ui",
    "ui_content_path",
    "ui_dir",
    "ui_config",
    "unix_sockets",
    "watches",
    "rpc",
    "raft_logstore",
    "use_streaming_backend",
    "snapshot_agent",
    "ae_interval",
    "check_deregister_interval_min",
    "check_reap_interval",
    "consul",
    "revision",
    "segment_limit",
    "segment_name_limit",
    "sync_coordinate_interval_min",
    "sync_coordinate_rate_target",
    "version",
    "version_prerelease",
    "version_metadata",
    "build_date",
    "audit",
    "read_replica",
    "non_voting_server",
    "segment",
    "segments",
    "partition",
    "license_poll_base_time",
    "license_poll_max_time",
    "license_update_base_time",
    "license_update_max_time",
    "reporting",
    // DeprecatedConfig
    "acl_agent_master_token",
    "acl_agent_token",
    "acl_token",
    "acl_enable_key_list_policy",
    "acl_master_token",
    "acl_replication_token",
    "enable_acl_replication",
    "acl_datacenter",
    "acl_default_policy",
    "acl_down_policy",
    "acl_ttl",
    "acl_enforce_version_8",
    "ca_file",
    "ca_path",
    "cert_file",
    "key_file",
    "tls_cipher_suites",
    "tls_min_version",
    "verify_incoming",
    "verify_incoming_https",
    "verify_incoming_rpc",
    "verify_outgoing",
    "verify_server_hostname",
    "tls_prefer_server_cipher_suites",
    "start_join",
    "start_join_wan",
    "raft_boltdb",
];

/// `ports`.
const PORTS: &[&str] = &[
    "dns",
    "http",
    "https",
    "serf_lan",
    "serf_wan",
    "server",
    "grpc",
    "grpc_tls",
    "sidecar_min_port",
    "sidecar_max_port",
    "expose_min_port",
    "expose_max_port",
];

/// `performance`.
const PERFORMANCE: &[&str] = &[
    "leave_drain_time",
    "raft_multiplier",
    "rpc_hold_timeout",
    "grpc_keepalive_interval",
    "grpc_keepalive_timeout",
];

/// `dns_config`.
const DNS_CONFIG: &[&str] = &[
    "allow_stale",
    "a_record_limit",
    "disable_compression",
    "enable_truncate",
    "max_stale",
    "node_ttl",
    "only_passing",
    "recursor_strategy",
    "recursor_timeout",
    "service_ttl",
    "udp_answer_limit",
    "enable_additional_node_meta_txt",
    "soa",
    "use_cache",
    "cache_max_age",
    "prefer_namespace",
];

/// A service definition (`ServiceDefinition`, Enterprise `namespace` and
/// `partition` included).
const SERVICE: &[&str] = &[
    "kind",
    "id",
    "name",
    "tags",
    "address",
    "tagged_addresses",
    "meta",
    "port",
    "socket_path",
    "check",
    "checks",
    "token",
    "weights",
    "enable_tag_override",
    "proxy",
    "connect",
    "namespace",
    "partition",
];

/// A check definition (`CheckDefinition`), with Consul's aliases.
const CHECK: &[&str] = &[
    "id",
    "name",
    "notes",
    "service_id",
    "token",
    "status",
    "args",
    "script_args",
    "http",
    "header",
    "method",
    "body",
    "disable_redirects",
    "output_max_size",
    "tcp",
    "udp",
    "interval",
    "docker_container_id",
    "shell",
    "grpc",
    "grpc_use_tls",
    "tls_server_name",
    "tls_skip_verify",
    "alias_node",
    "alias_service",
    "timeout",
    "ttl",
    "h2ping",
    "h2ping_use_tls",
    "os_service",
    "success_before_passing",
    "failures_before_warning",
    "failures_before_critical",
    "deregister_critical_service_after",
    "namespace",
    "partition",
];

const WEIGHTS: &[&str] = &["passing", "warning"];
const SERVICE_ADDRESS: &[&str] = &["address", "port"];

/// Lowercase without `_`: how keys are compared.
fn fold(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn known(list: &[&str], key: &str) -> bool {
    let k = fold(key);
    list.iter().any(|x| fold(x) == k)
}

/// Whether Consul knows this top-level config key.
pub fn top_level(key: &str) -> bool {
    known(TOP_LEVEL, key)
}

/// Whether Consul knows `<section>.<key>` for the sections tribune reads
/// key by key (`ports`, `performance`, `dns_config`).
pub fn nested(section: &str, key: &str) -> bool {
    match section {
        "ports" => known(PORTS, key),
        "performance" => known(PERFORMANCE, key),
        "dns_config" => known(DNS_CONFIG, key),
        _ => true,
    }
}

/// A key Consul would not accept, by its full path
/// (`service.checks[1].bogus`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid config key {0}")]
pub struct UnknownKey(pub String);

/// The first key of `v` not in `list`, as `<path>.<key>`.
fn first_unknown(v: &Value, list: &[&str], path: &str) -> Result<(), UnknownKey> {
    let Value::Object(m) = v else {
        return Ok(());
    };
    match m.keys().find(|k| !known(list, k)) {
        Some(k) => Err(UnknownKey(format!("{path}.{k}"))),
        None => Ok(()),
    }
}

/// Check a service definition from a config file: every key, and those of
/// its nested checks, weights and tagged addresses, must be one Consul
/// accepts. The error is the full key path (`service.checks[1].bogus`).
pub fn service_definition(v: &Value, path: &str) -> Result<(), UnknownKey> {
    first_unknown(v, SERVICE, path)?;
    let Value::Object(m) = v else {
        return Ok(());
    };
    for (k, sub) in m {
        match fold(k).as_str() {
            "check" => check_definition(sub, &format!("{path}.{k}"))?,
            "checks" => {
                if let Value::Array(a) = sub {
                    for (i, c) in a.iter().enumerate() {
                        check_definition(c, &format!("{path}.{k}[{i}]"))?;
                    }
                }
            }
            "weights" => first_unknown(sub, WEIGHTS, &format!("{path}.{k}"))?,
            "taggedaddresses" => {
                if let Value::Object(t) = sub {
                    for (name, a) in t {
                        first_unknown(a, SERVICE_ADDRESS, &format!("{path}.{k}.{name}"))?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Check a check definition from a config file (see [`service_definition`]).
pub fn check_definition(v: &Value, path: &str) -> Result<(), UnknownKey> {
    first_unknown(v, CHECK, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Consul's spellings pass, a typo is named with its path.
    #[test]
    fn spellings_and_typos() {
        let ok = json!({"Name": "web", "enable_tag_override": true, "EnableTagOverride": true,
            "TaggedAddresses": {"lan": {"address": "10.0.0.1", "Port": 80}},
            "weights": {"Passing": 2},
            "checks": [{"ScriptArgs": ["x"], "DeregisterCriticalServiceAfter": "1m",
                        "tls_skip_verify": true, "TLSSkipVerify": true, "service_id": "web"}]});
        assert_eq!(service_definition(&ok, "service"), Ok(()));
        assert_eq!(
            service_definition(&json!({"name": "web", "bogus_key": 1}), "service"),
            Err(UnknownKey("service.bogus_key".into()))
        );
        assert_eq!(
            service_definition(
                &json!({"name": "web", "checks": [{"ttl": "5s"}, {"ttl": "5s", "intervall": "1s"}]}),
                "services[0]"
            ),
            Err(UnknownKey("services[0].checks[1].intervall".into()))
        );
        assert_eq!(
            service_definition(&json!({"name": "w", "weights": {"pasing": 1}}), "service"),
            Err(UnknownKey("service.weights.pasing".into()))
        );
        assert!(top_level("node_meta") && top_level("telemetry") && !top_level("datacentre"));
        assert!(nested("ports", "grpc") && !nested("ports", "htp"));
    }
}
