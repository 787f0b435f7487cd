//! The agents list as CSV: [`agents_csv`] renders list items (pure), [`export_agents`] renders every
//! agent a query matches (what `GET /api/v1/agents.csv` and the web page serve). RFC 4180 through the `csv` crate (a header row, CRLF after every
//! record, fields quoted when they hold a comma, a quote or a line break, quotes doubled), UTF-8 without a
//! byte-order mark. Times are RFC 3339 in UTC with milliseconds and states are their API names, as in the
//! JSON list.
//!
//! Formula-injection safety: a spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` (and some
//! also after a leading tab or carriage return) as a formula. Every cell that starts with one of these
//! six characters is written with a `'` in front ([`safe_cell`]), whatever the column, so a phone number
//! `+1 555 0100` reads `'+1 555 0100` like any other such cell. Cells are otherwise unchanged.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::app::{App, OpError};
use crate::listing::{AgentListItem, AgentQuery};

/// The header row, in column order.
pub const COLUMNS: [&str; 24] = [
    "id",
    "name",
    "status",
    "online",
    "plan",
    "expires_at",
    "due_soon",
    "due_at",
    "customer_id",
    "contract_id",
    "contact_first_name",
    "contact_last_name",
    "contact_email",
    "contact_phones",
    "psa_system",
    "psa_org_id",
    "address",
    "note",
    "public_ip",
    "local_ip",
    "platform",
    "version",
    "last_seen",
    "activated_at",
];

/// Most agents one export holds; a larger export is refused (narrow the filter).
pub const MAX_EXPORT_ROWS: u64 = 100_000;

/// How the phone numbers of a contact are joined in one cell.
pub const PHONE_SEPARATOR: &str = "; ";

/// Writing the CSV failed (only possible if memory runs out).
#[derive(Debug, thiserror::Error)]
#[error("cannot write the CSV export: {0}")]
pub struct ExportError(String);

/// The characters that make a spreadsheet read a cell as a formula when they come first.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// `cell`, with a `'` in front if it starts with a character that would make it a formula.
pub fn safe_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_default()
}

fn text(t: &Option<String>) -> String {
    t.clone().unwrap_or_default()
}

/// One item's cells, unescaped, in [`COLUMNS`] order.
pub fn row(item: &AgentListItem) -> [String; 24] {
    let a = &item.agent;
    let s = &item.site;
    [
        a.id.to_string(),
        a.name.clone(),
        item.display_status.as_str().to_owned(),
        item.online.to_string(),
        a.subscription.plan.as_str().to_owned(),
        opt_time(a.subscription.expires_at),
        item.due_soon().to_string(),
        opt_time(item.due_at),
        text(&s.customer_id),
        text(&s.contract_id),
        text(&s.contact.first_name),
        text(&s.contact.last_name),
        text(&s.contact.email),
        s.contact.phones.join(PHONE_SEPARATOR),
        s.psa
            .as_ref()
            .map(|p| p.system.as_str().to_owned())
            .unwrap_or_default(),
        s.psa
            .as_ref()
            .and_then(|p| p.org_id.clone())
            .unwrap_or_default(),
        text(&s.address),
        text(&s.note),
        text(&a.public_ip),
        text(&a.local_ip),
        text(&a.platform),
        text(&a.version),
        opt_time(a.last_seen),
        time(a.activated_at),
    ]
}

/// The CSV of `items` in their order: the header row, then one record per item.
pub fn agents_csv(items: &[AgentListItem]) -> Result<Vec<u8>, ExportError> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    writer
        .write_record(COLUMNS)
        .map_err(|e| ExportError(e.to_string()))?;
    for item in items {
        let cells = row(item);
        writer
            .write_record(cells.iter().map(|c| safe_cell(c).into_owned()))
            .map_err(|e| ExportError(e.to_string()))?;
    }
    writer
        .into_inner()
        .map_err(|e| ExportError(e.error().to_string()))
}

/// The columns of the history export.
pub const HISTORY_COLUMNS: [&str; 7] = [
    "at",
    "action",
    "actor",
    "details",
    "agent_id",
    "agent_name",
    "address",
];

/// The history lines as CSV (same quoting and formula-injection guard as the agents export).
pub fn history_csv(entries: &[crate::store::history::Entry]) -> Result<Vec<u8>, ExportError> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    writer
        .write_record(HISTORY_COLUMNS)
        .map_err(|e| ExportError(e.to_string()))?;
    for e in entries {
        let cells = [
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            e.action.clone(),
            e.actor.clone(),
            e.details.clone(),
            e.agent_id.clone().unwrap_or_default(),
            e.agent_name.clone(),
            e.address.clone().unwrap_or_default(),
        ];
        writer
            .write_record(cells.iter().map(|c| safe_cell(c).into_owned()))
            .map_err(|e| ExportError(e.to_string()))?;
    }
    writer
        .into_inner()
        .map_err(|e| ExportError(e.error().to_string()))
}

/// The CSV of every agent `query` matches, its page ignored, in its sort ([`App::export_agents`]:
/// refused past [`MAX_EXPORT_ROWS`]).
pub async fn export_agents(
    app: &App,
    query: &AgentQuery,
    scope: &crate::access::Scope,
) -> Result<Vec<u8>, OpError> {
    let items = app.export_agents(query, scope).await?;
    Ok(agents_csv(&items)?)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::lifecycle::{Plan, Status, Subscription};
    use crate::site::{Contact, Psa, PsaSystem, SiteConfig};
    use crate::store::agents::{AgentRow, LinkStats};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn item(name: &str, site: SiteConfig) -> AgentListItem {
        let agent = AgentRow {
            id: "ag-aaaaaaaaaaaa".parse().unwrap(),
            name: name.into(),
            secret_hash: String::new(),
            subscription: Subscription {
                status: Status::Active,
                plan: Plan::Prepaid,
                expires_at: Some(now() + chrono::Duration::days(3)),
                deactivates_at: None,
            },
            activated_at: now() - chrono::Duration::days(30),
            version: Some("0.1.0".into()),
            local_ip: Some("192.0.2.7".into()),
            mac: None,
            public_ip: None,
            platform: Some("box".into()),
            hostname: None,
            online: true,
            last_seen: Some(now()),
            data_epoch: 0,
            link: LinkStats::default(),
            company_id: Some(1),
            group_id: None,
            renewal: Default::default(),
        };
        AgentListItem::new(agent, site, now(), std::time::Duration::from_secs(120))
    }

    fn read(bytes: &[u8]) -> Vec<Vec<String>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes)
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn cells_that_start_a_formula_get_a_quote() {
        for cell in ["=1+1", "+1 555 0100", "-2", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(safe_cell(cell), format!("'{cell}"));
        }
        for cell in ["", "1+1", "a=b", "shop", " =1", "'quoted"] {
            assert_eq!(safe_cell(cell), cell);
        }
    }

    #[test]
    fn the_export_has_a_header_crlf_records_and_every_column() {
        let site = SiteConfig {
            contact: Contact {
                email: Some("jane@example.com".into()),
                first_name: Some("Jane".into()),
                last_name: Some("Doe".into()),
                phones: vec!["555 0100".into(), "+1 555 0101".into()],
            },
            customer_id: Some("C-1".into()),
            psa: Some(Psa {
                system: PsaSystem::Syncro,
                org_id: Some("42".into()),
            }),
            ..SiteConfig::default()
        };
        let bytes = agents_csv(&[item("gw", site)]).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.starts_with("id,name,status,online,plan,expires_at,due_soon,due_at,customer_id,")
        );
        assert!(text.ends_with("\r\n"));
        assert_eq!(
            text.matches("\r\n").count(),
            2,
            "two records, each ended by CRLF"
        );
        let rows = read(&bytes);
        assert_eq!(rows[0], COLUMNS);
        let cell = |name: &str| rows[1][COLUMNS.iter().position(|c| *c == name).unwrap()].clone();
        assert_eq!(cell("status"), "active");
        assert_eq!(cell("online"), "true");
        assert_eq!(cell("plan"), "prepaid");
        assert_eq!(cell("due_soon"), "true");
        assert_eq!(cell("due_at"), cell("expires_at"));
        assert_eq!(cell("expires_at"), "2026-03-04T12:00:00.000Z");
        assert_eq!(
            cell("contact_phones"),
            "555 0100; +1 555 0101",
            "joined; the cell starts with a digit"
        );
        assert_eq!(cell("psa_system"), "syncro");
        assert_eq!(cell("psa_org_id"), "42");
        assert_eq!(cell("contract_id"), "");
    }

    #[test]
    fn commas_quotes_and_line_breaks_are_quoted_and_read_back() {
        let site = SiteConfig {
            address: Some("1 Main St, Suite \"B\"\nSpringfield".into()),
            note: Some("=HYPERLINK(\"http://x\")".into()),
            contact: Contact {
                phones: vec!["+1 555 0100".into()],
                ..Contact::default()
            },
            ..SiteConfig::default()
        };
        let bytes = agents_csv(&[item("a, \"b\"", site)]).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("\"a, \"\"b\"\"\""), "{text}");
        assert!(
            text.contains("\"1 Main St, Suite \"\"B\"\"\nSpringfield\""),
            "{text}"
        );
        let rows = read(&bytes);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][1], "a, \"b\"");
        assert_eq!(rows[1][16], "1 Main St, Suite \"B\"\nSpringfield");
        assert_eq!(rows[1][17], "'=HYPERLINK(\"http://x\")");
        assert_eq!(rows[1][13], "'+1 555 0100");
    }

    #[test]
    fn an_empty_list_is_the_header_alone() {
        let bytes = agents_csv(&[]).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            format!("{}\r\n", COLUMNS.join(","))
        );
    }
}
