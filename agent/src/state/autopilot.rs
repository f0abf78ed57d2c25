//! The autopilot configuration, replicated through raft as Consul keeps
//! it (`/v1/operator/autopilot/configuration`, with `?cas`).

use serde::{Deserialize, Serialize};

/// Consul's `AutopilotConfig` (durations in milliseconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotConfig {
    pub cleanup_dead_servers: bool,
    pub last_contact_threshold_ms: u64,
    pub max_trailing_logs: u64,
    pub min_quorum: u64,
    pub server_stabilization_time_ms: u64,
    pub redundancy_zone_tag: String,
    pub disable_upgrade_migration: bool,
    pub upgrade_version_tag: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Default for AutopilotConfig {
    /// Consul's defaults.
    fn default() -> Self {
        Self {
            cleanup_dead_servers: true,
            last_contact_threshold_ms: 200,
            max_trailing_logs: 250,
            min_quorum: 0,
            server_stabilization_time_ms: 10_000,
            redundancy_zone_tag: String::new(),
            disable_upgrade_migration: false,
            upgrade_version_tag: String::new(),
            create_index: 0,
            modify_index: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AutopilotCommand {
    /// Replace the configuration; with `cas`, only if its ModifyIndex is
    /// that (0: only if it was never set), as Consul's `?cas`.
    Set {
        config: AutopilotConfig,
        cas: Option<u64>,
    },
}

/// Apply `cmd` at `index`: whether it was written.
pub fn apply(current: &mut Option<AutopilotConfig>, index: u64, cmd: &AutopilotCommand) -> bool {
    let AutopilotCommand::Set { config, cas } = cmd;
    let now = current.as_ref().map(|c| c.modify_index).unwrap_or(0);
    if cas.is_some_and(|want| want != now) {
        return false;
    }
    let create = current
        .as_ref()
        .map(|c| c.create_index)
        .filter(|i| *i > 0)
        .unwrap_or(index);
    *current = Some(AutopilotConfig {
        create_index: create,
        modify_index: index,
        ..config.clone()
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_as_consul() {
        let mut cur = None;
        let set = |cas| AutopilotCommand::Set {
            config: AutopilotConfig {
                max_trailing_logs: 9,
                ..Default::default()
            },
            cas,
        };
        assert!(!apply(&mut cur, 5, &set(Some(3))));
        assert!(cur.is_none());
        assert!(apply(&mut cur, 5, &set(Some(0))));
        assert_eq!(
            cur.as_ref().map(|c| (c.create_index, c.modify_index)),
            Some((5, 5))
        );
        assert!(!apply(&mut cur, 6, &set(Some(0))));
        assert!(apply(&mut cur, 7, &set(Some(5))));
        assert!(apply(&mut cur, 8, &set(None)));
        let c = cur.unwrap();
        assert_eq!(
            (c.create_index, c.modify_index, c.max_trailing_logs),
            (5, 8, 9)
        );
    }
}
