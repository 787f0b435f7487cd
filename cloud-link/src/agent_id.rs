//! The agent identifier: lowercase letters, digits and dashes, equal to the broker username and client id.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest accepted agent id; well under MQTT's client-id limits on every broker we target.
pub const MAX_LEN: usize = 64;

/// A validated agent id: 1–64 characters of `[a-z0-9-]`, not starting or ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgentId(String);

/// Why a string is not an agent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentIdError {
    #[error("agent id is empty")]
    Empty,
    #[error("agent id is {0} characters long; at most {MAX_LEN} are allowed")]
    TooLong(usize),
    #[error("agent id {0:?} may only contain lowercase letters, digits and '-'")]
    BadCharacter(String),
    #[error("agent id {0:?} may not start or end with '-'")]
    EdgeDash(String),
}

impl AgentId {
    /// Checks `s` and wraps it.
    pub fn parse(s: &str) -> Result<Self, AgentIdError> {
        if s.is_empty() {
            return Err(AgentIdError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(AgentIdError::TooLong(s.len()));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(AgentIdError::BadCharacter(s.to_owned()));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(AgentIdError::EdgeDash(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for AgentId {
    type Err = AgentIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for AgentId {
    type Error = AgentIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<AgentId> for String {
    fn from(id: AgentId) -> Self {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_digits_and_inner_dashes() {
        assert_eq!(AgentId::parse("ag-7x2k9").unwrap().as_str(), "ag-7x2k9");
    }

    #[test]
    fn rejects_what_a_broker_username_or_topic_level_could_choke_on() {
        assert_eq!(AgentId::parse(""), Err(AgentIdError::Empty));
        assert!(matches!(
            AgentId::parse("Ag1"),
            Err(AgentIdError::BadCharacter(_))
        ));
        assert!(matches!(
            AgentId::parse("a/b"),
            Err(AgentIdError::BadCharacter(_))
        ));
        assert!(matches!(
            AgentId::parse("a+"),
            Err(AgentIdError::BadCharacter(_))
        ));
        assert!(matches!(
            AgentId::parse("#"),
            Err(AgentIdError::BadCharacter(_))
        ));
        assert!(matches!(
            AgentId::parse("-a"),
            Err(AgentIdError::EdgeDash(_))
        ));
        assert!(matches!(
            AgentId::parse(&"a".repeat(65)),
            Err(AgentIdError::TooLong(65))
        ));
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<AgentId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<AgentId>("\"NOT OK\"").is_err());
    }
}
