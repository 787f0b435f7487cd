//! What a lost or refused broker connection means, and what the portal's status answer tells the agent to do.
//! Pure decisions; the link loop carries them out.

use rumqttc::ConnectionError;

use crate::portal_api::{AgentStatus, PortalError};

/// Whether a connection error is the broker (or its TLS) turning the agent away, as opposed to the network
/// or the broker being down. Only refusals are worth asking the portal about.
pub fn is_refusal(err: &ConnectionError) -> bool {
    matches!(
        err,
        ConnectionError::ConnectionRefused(_) | ConnectionError::Tls(_)
    )
}

/// What to do after asking the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Active (or deactivation pending): the refusal is passing; reconnect with backoff.
    Retry,
    /// Deactivated or expired: stop connecting, keep data, poll the portal.
    Disabled { status: String },
    /// The portal deleted this agent: wipe the state and exit 3.
    Deleted,
    /// The portal does not know these credentials: log loudly, keep retrying with backoff.
    CredentialsRejected,
    /// The portal answered, but not in a way this agent understands (a 410 without `agent_deleted`, an
    /// unexpected status): log loudly with the status and body, keep the state, keep retrying with backoff.
    Unexplained { reason: String },
    /// No usable answer (portal down, network): keep retrying with backoff.
    NoAnswer { reason: String },
}

/// Decides from `GET /agent/status`.
pub fn verdict(answer: &Result<AgentStatus, PortalError>) -> Verdict {
    match answer {
        Ok(s) => match s.status.as_str() {
            "deactivated" | "expired" => Verdict::Disabled {
                status: s.status.clone(),
            },
            // active, deactivation_pending, or a status this build does not know: keep trying.
            _ => Verdict::Retry,
        },
        Err(PortalError::AgentDeleted) => Verdict::Deleted,
        Err(PortalError::BadCredentials) => Verdict::CredentialsRejected,
        Err(e @ (PortalError::Gone { .. } | PortalError::Unexpected { .. })) => {
            Verdict::Unexplained {
                reason: e.to_string(),
            }
        }
        Err(e) => Verdict::NoAnswer {
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::ConnectReturnCode;

    fn status(s: &str) -> Result<AgentStatus, PortalError> {
        Ok(AgentStatus {
            agent_id: "ag-1".into(),
            name: "n".into(),
            status: s.into(),
            epoch: 0,
        })
    }

    #[test]
    fn portal_answers_map_to_actions() {
        assert_eq!(verdict(&status("active")), Verdict::Retry);
        assert_eq!(verdict(&status("deactivation_pending")), Verdict::Retry);
        assert_eq!(
            verdict(&status("deactivated")),
            Verdict::Disabled {
                status: "deactivated".into()
            }
        );
        assert!(matches!(
            verdict(&status("expired")),
            Verdict::Disabled { .. }
        ));
        assert_eq!(verdict(&Err(PortalError::AgentDeleted)), Verdict::Deleted);
        assert_eq!(
            verdict(&Err(PortalError::BadCredentials)),
            Verdict::CredentialsRejected
        );
        // A 410 that does not say agent_deleted deletes nothing, and is not mistaken for a network problem.
        let gone =
            crate::portal_api::map_error(reqwest::StatusCode::GONE, None, "<html>Gone</html>");
        assert!(
            matches!(verdict(&Err(gone)), Verdict::Unexplained { ref reason } if reason.contains("HTTP 410") && reason.contains("<html>Gone</html>"))
        );
        assert!(matches!(
            verdict(&Err(PortalError::Unexpected {
                status: 502,
                body: "oops".into()
            })),
            Verdict::Unexplained { .. }
        ));
        assert!(matches!(
            verdict(&Err(PortalError::Unreachable {
                url: "u".into(),
                detail: "d".into()
            })),
            Verdict::NoAnswer { .. }
        ));
    }

    #[test]
    fn only_refusals_ask_the_portal() {
        assert!(is_refusal(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::NotAuthorized
        )));
        assert!(is_refusal(&ConnectionError::ConnectionRefused(
            ConnectReturnCode::BadUserNamePassword
        )));
        assert!(!is_refusal(&ConnectionError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!is_refusal(&ConnectionError::NetworkTimeout));
    }
}
