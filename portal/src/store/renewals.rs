//! Renewal reminders: how many were mailed for each agent's renewal date and when the last one went
//! (claimed before sending, so two sweeps never send the same one, and given back if no mail went out),
//! and who gets them (the company's admins and the admins of the agent's group and its parent groups).

use chrono::{DateTime, Utc};
use outpost_cloud_link::AgentId;
use sqlx::Row;

use super::{opt_from_ms, to_ms, to_u64, Conn, StoreError};

/// The reminders of one renewal date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reminders {
    pub sent: u64,
    pub last_sent_at: Option<DateTime<Utc>>,
}

/// The reminders recorded for `agent`'s renewal at `renews_at` (none sent: the default).
pub async fn get(
    conn: &mut Conn,
    agent: &AgentId,
    renews_at: DateTime<Utc>,
) -> Result<Reminders, StoreError> {
    let row = sqlx::query(
        "SELECT sent, last_sent_at FROM renewal_reminders WHERE agent_id = ? AND renews_at = ?",
    )
    .bind(agent.as_str())
    .bind(to_ms(renews_at))
    .fetch_optional(conn)
    .await?;
    match row {
        None => Ok(Reminders::default()),
        Some(row) => Ok(Reminders {
            sent: to_u64("sent", row.try_get("sent")?)?,
            last_sent_at: opt_from_ms(row.try_get("last_sent_at")?)?,
        }),
    }
}

/// Takes the next reminder of `agent`'s renewal at `renews_at`, if one is due at `now`: fewer than `most`
/// were sent, and none yet or the last at or before `last_before`. Returns its number (1 for the first),
/// or `None` when none is due. One statement, so two sweeps cannot take the same reminder.
pub async fn claim(
    conn: &mut Conn,
    agent: &AgentId,
    renews_at: DateTime<Utc>,
    now: DateTime<Utc>,
    last_before: DateTime<Utc>,
    most: u32,
) -> Result<Option<u32>, StoreError> {
    let sent: Option<i64> = sqlx::query_scalar(
        "INSERT INTO renewal_reminders (agent_id, renews_at, sent, last_sent_at) VALUES (?, ?, 1, ?) \
         ON CONFLICT (agent_id, renews_at) DO UPDATE SET sent = renewal_reminders.sent + 1, \
         last_sent_at = excluded.last_sent_at \
         WHERE renewal_reminders.sent < ? \
         AND (renewal_reminders.last_sent_at IS NULL OR renewal_reminders.last_sent_at <= ?) \
         RETURNING sent",
    )
    .bind(agent.as_str())
    .bind(to_ms(renews_at))
    .bind(to_ms(now))
    .bind(i64::from(most))
    .bind(to_ms(last_before))
    .fetch_optional(conn)
    .await?;
    sent.map(|n| {
        u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("renewal_reminders.sent {n}")))
    })
    .transpose()
}

/// Gives back reminder `number` taken by [`claim`] (no mail went out): the count and the time of the last
/// one are what they were before.
pub async fn unclaim(
    conn: &mut Conn,
    agent: &AgentId,
    renews_at: DateTime<Utc>,
    number: u32,
    before: &Reminders,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE renewal_reminders SET sent = ?, last_sent_at = ? \
         WHERE agent_id = ? AND renews_at = ? AND sent = ?",
    )
    .bind(i64::from(number.saturating_sub(1)))
    .bind(before.last_sent_at.map(to_ms))
    .bind(agent.as_str())
    .bind(to_ms(renews_at))
    .bind(i64::from(number))
    .execute(conn)
    .await?;
    Ok(())
}

/// The addresses a reminder about `agent` goes to, each once, sorted: the company admins of its company
/// and the group admins assigned to its group or to any group above it, who have an email and have set
/// a password (an invitation not yet accepted gets no reminders). Supervisors and support engineers get
/// none.
pub async fn recipients(conn: &mut Conn, agent: &AgentId) -> Result<Vec<String>, StoreError> {
    let rows = sqlx::query(
        "WITH RECURSIVE up(id) AS ( \
             SELECT group_id FROM agents WHERE id = ? AND group_id IS NOT NULL \
             UNION SELECT g.parent_id FROM groups g JOIN up ON g.id = up.id WHERE g.parent_id IS NOT NULL \
         ) \
         SELECT DISTINCT u.email AS email FROM users u, agents a \
         WHERE a.id = ? AND u.company_id = a.company_id AND u.email IS NOT NULL \
           AND u.password_hash IS NOT NULL \
           AND (u.role = 'company-admin' \
                OR (u.role = 'group-admin' AND u.id IN \
                    (SELECT gu.user_id FROM group_users gu WHERE gu.group_id IN (SELECT id FROM up)))) \
         ORDER BY u.email",
    )
    .bind(agent.as_str())
    .bind(agent.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<String, _>("email")?))
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;
    use crate::store::Store;

    fn t(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap()
    }

    #[tokio::test]
    async fn reminders_are_claimed_at_most_four_times_a_week_apart_and_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.db")).await.unwrap();
        let mut conn = store.conn().await.unwrap();
        let agent: AgentId = "ag-aaaaaaaaaaaa".parse().unwrap();
        let renews = t(31);
        let week = Duration::days(7);
        assert_eq!(
            get(&mut conn, &agent, renews).await.unwrap(),
            Reminders::default()
        );
        let first = claim(&mut conn, &agent, renews, t(1), t(1) - week, 4)
            .await
            .unwrap();
        assert_eq!(first, Some(1));
        assert_eq!(
            claim(&mut conn, &agent, renews, t(7), t(7) - week, 4)
                .await
                .unwrap(),
            None,
            "six days later"
        );
        let before = get(&mut conn, &agent, renews).await.unwrap();
        assert_eq!(
            before,
            Reminders {
                sent: 1,
                last_sent_at: Some(t(1))
            }
        );
        assert_eq!(
            claim(&mut conn, &agent, renews, t(8), t(8) - week, 4)
                .await
                .unwrap(),
            Some(2)
        );
        unclaim(&mut conn, &agent, renews, 2, &before)
            .await
            .unwrap();
        assert_eq!(
            get(&mut conn, &agent, renews).await.unwrap(),
            before,
            "given back"
        );
        for (day, n) in [(8, 2), (15, 3), (22, 4)] {
            assert_eq!(
                claim(&mut conn, &agent, renews, t(day), t(day) - week, 4)
                    .await
                    .unwrap(),
                Some(n)
            );
        }
        assert_eq!(
            claim(&mut conn, &agent, renews, t(30), t(30) - week, 4)
                .await
                .unwrap(),
            None,
            "four is the most"
        );
        // Another renewal date counts on its own.
        assert_eq!(
            claim(&mut conn, &agent, t(30), t(30), t(30) - week, 4)
                .await
                .unwrap(),
            Some(1)
        );
    }
}
