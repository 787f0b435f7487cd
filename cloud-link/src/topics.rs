//! The topic layout: one subtree per agent, `agents/<id>/up/<kind>` from the agent, `agents/<id>/down/cmd`
//! (commands) and `agents/<id>/down/notice` (notices) to it.
//!
//! The broker gives each agent a role that may publish only under its own `up/` and subscribe only to its own
//! `down/`; the portal subscribes to [`ALL_UP`]. Nothing here relies on retained messages surviving.

use crate::agent_id::AgentId;

/// Root of every agent's subtree.
pub const ROOT: &str = "agents";
/// What the portal subscribes to: everything every agent sends.
pub const ALL_UP: &str = "agents/+/up/#";

/// What an agent publishes, one topic each under `agents/<id>/up/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpKind {
    Hello,
    Presence,
    Heartbeat,
    Ack,
    Report,
}

impl UpKind {
    pub const ALL: [UpKind; 5] = [
        UpKind::Hello,
        UpKind::Presence,
        UpKind::Heartbeat,
        UpKind::Ack,
        UpKind::Report,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpKind::Hello => "hello",
            UpKind::Presence => "presence",
            UpKind::Heartbeat => "heartbeat",
            UpKind::Ack => "ack",
            UpKind::Report => "report",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// `agents/<id>/up/<kind>`.
pub fn up(agent: &AgentId, kind: UpKind) -> String {
    format!("{ROOT}/{agent}/up/{}", kind.as_str())
}

/// `agents/<id>/down/cmd`: where the portal sends commands.
pub fn commands(agent: &AgentId) -> String {
    format!("{ROOT}/{agent}/down/cmd")
}

/// `agents/<id>/down/notice`: where the portal tells the agent things that are not commands (no id, no
/// acknowledgement), such as the public address it connects from.
pub fn notices(agent: &AgentId) -> String {
    format!("{ROOT}/{agent}/down/notice")
}

/// `agents/<id>/up/#`: the filter an agent's broker role may publish to.
pub fn agent_up_filter(agent: &AgentId) -> String {
    format!("{ROOT}/{agent}/up/#")
}

/// `agents/<id>/down/#`: the filter an agent's broker role may subscribe to.
pub fn agent_down_filter(agent: &AgentId) -> String {
    format!("{ROOT}/{agent}/down/#")
}

/// Splits an `agents/<id>/up/<kind>` topic; `None` for anything else.
pub fn parse_up(topic: &str) -> Option<(AgentId, UpKind)> {
    let mut parts = topic.split('/');
    let (root, id, dir, kind) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if root != ROOT || dir != "up" || parts.next().is_some() {
        return None;
    }
    Some((AgentId::parse(id).ok()?, UpKind::parse(kind)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_topics_round_trip() {
        let id = AgentId::parse("ag-1").unwrap();
        for kind in UpKind::ALL {
            assert_eq!(parse_up(&up(&id, kind)), Some((id.clone(), kind)));
        }
    }

    #[test]
    fn foreign_topics_do_not_parse() {
        assert_eq!(parse_up("agents/ag-1/down/cmd"), None);
        assert_eq!(parse_up("agents/ag-1/up/hello/extra"), None);
        assert_eq!(parse_up("agents/AG/up/hello"), None);
        assert_eq!(parse_up("other/ag-1/up/hello"), None);
        assert_eq!(parse_up("agents/ag-1/up/unknown"), None);
    }

    #[test]
    fn filters_stay_inside_the_agent_subtree() {
        let id = AgentId::parse("ag-1").unwrap();
        assert_eq!(agent_up_filter(&id), "agents/ag-1/up/#");
        assert_eq!(agent_down_filter(&id), "agents/ag-1/down/#");
        assert_eq!(commands(&id), "agents/ag-1/down/cmd");
        assert_eq!(notices(&id), "agents/ag-1/down/notice");
    }

    #[test]
    fn the_down_filter_covers_commands_and_notices() {
        // The agent's broker role may subscribe to its `down/#` only: both topics must be under it.
        let id = AgentId::parse("ag-1").unwrap();
        let filter = agent_down_filter(&id);
        let prefix = filter.trim_end_matches('#');
        assert!(commands(&id).starts_with(prefix));
        assert!(notices(&id).starts_with(prefix));
    }
}
