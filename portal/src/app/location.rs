//! Agents' locations, the portal's side of GeoIP self-location: the public address each agent connects
//! from, the `Welcome` notice that tells it, and the stored `location` report (kind
//! [`LOCATION_REPORT`] in the reports table): the agent's own lookup, or the portal's for an agent
//! without a database.
//!
//! ```text
//!  hello ──▶ broker.client_address (Mosquitto's log, ≤ 2 s) ──▶ agents.public_ip ──▶ Welcome{public_ip}
//!              │ hello.geoip = false and the portal has a database (--geoip-db)
//!              └──▶ portal lookup ──▶ location report, source portal (again only when the address changed)
//!  location report from the agent ──┬─ geoip_unavailable / geoip_corrupt + portal database ─▶ portal lookup
//!                                   │  (of the address the portal saw last, else the one in the report)
//!                                   └─ otherwise: stored as sent (source agent)
//! ```
//! The activation reply carries the HTTPS peer address too (`app::activation`), so an agent with a
//! database locates itself before its first hello.

use std::net::IpAddr;
use std::sync::Arc;

use async_trait::async_trait;
use outpost_cloud_link::geoip::{codes, GeoIpDb, LocationReport, LocationSource, LOCATION_REPORT};
use outpost_cloud_link::protocol::{NoticeEnvelope, PortalNotice};
use outpost_cloud_link::AgentId;
use tracing::{debug, info, warn};

use super::{App, OpError, SendError};
use crate::store::agents::AgentRow;
use crate::store::{reports, Conn, StoreError};

/// How the portal tells agents things that are not commands: the MQTT link in production.
#[async_trait]
pub trait NoticeSender: Send + Sync + 'static {
    async fn send_notice(&self, agent: &AgentId, notice: &NoticeEnvelope) -> Result<(), SendError>;
}

#[async_trait]
impl NoticeSender for crate::link::Link {
    async fn send_notice(&self, agent: &AgentId, notice: &NoticeEnvelope) -> Result<(), SendError> {
        crate::link::Link::send_notice(self, agent, notice)
            .await
            .map_err(|e| SendError(e.to_string()))
    }
}

/// What the portal brings to GeoIP: its own City database (optional) and the way to tell agents their
/// public address (none: nothing is told). Cheap to clone.
#[derive(Clone, Default)]
pub struct Locator {
    db: Option<Arc<GeoIpDb>>,
    notices: Option<Arc<dyn NoticeSender>>,
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Locator")
            .field("db", &self.db)
            .field("notices", &self.notices.is_some())
            .finish()
    }
}

impl Locator {
    pub fn new(db: Option<GeoIpDb>, notices: Option<Arc<dyn NoticeSender>>) -> Self {
        Self {
            db: db.map(Arc::new),
            notices,
        }
    }

    /// Sends `notice` to the agent, if the portal has a way to tell agents things; whether it was handed
    /// over (a failure is logged: the caller's next occasion sends it again).
    pub async fn notify(&self, agent: &AgentId, notice: PortalNotice) -> bool {
        let Some(notices) = &self.notices else {
            return false;
        };
        match notices
            .send_notice(agent, &NoticeEnvelope::new(notice))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                warn!(agent = %agent, error = %e, "notice not sent");
                false
            }
        }
    }

    /// Whether the portal can look addresses up itself.
    pub fn has_db(&self) -> bool {
        self.db.is_some()
    }
}

/// Stores the public address the agent was last seen connecting from.
async fn set_public_ip(conn: &mut Conn, agent: &AgentId, ip: &str) -> Result<(), StoreError> {
    // One column of the agent row, written only here; it lives beside the other GeoIP queries rather than
    // in `store::agents` so the agent rows' module keeps one owner.
    sqlx::query("UPDATE agents SET public_ip = ? WHERE id = ?")
        .bind(ip)
        .bind(agent.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

impl App {
    /// The agent's stored location report: its location (or why it has none) and who looked it up.
    pub async fn location(&self, agent: &AgentId) -> Result<Option<LocationReport>, OpError> {
        let mut conn = self.store().conn().await?;
        let Some(row) = reports::get(&mut conn, agent, LOCATION_REPORT).await? else {
            return Ok(None);
        };
        match serde_json::from_value(row.body) {
            Ok(report) => Ok(Some(report)),
            Err(e) => {
                warn!(agent = %agent, error = %e, "stored location report unreadable; shown as none");
                Ok(None)
            }
        }
    }

    /// After a hello: learns the address the agent connects from, stores it, tells the agent (`Welcome`)
    /// and, when the agent cannot look it up itself (`geoip` false in its hello), looks it up with the
    /// portal's database.
    pub async fn welcome(
        &self,
        locator: &Locator,
        agent: &AgentId,
        agent_has_db: bool,
    ) -> Result<(), OpError> {
        // Read now: the hello may have waited in the queue behind a cleanup.
        let row = self.agent(agent).await?;
        let seen = self.broker().client_address(agent).await;
        match seen {
            Some(ip) => {
                let ip_text = ip.to_string();
                if row.public_ip.as_deref() != Some(ip_text.as_str()) {
                    let mut conn = self.store().conn().await?;
                    set_public_ip(&mut conn, agent, &ip_text).await?;
                    info!(agent = %agent, public_ip = %ip, previous = ?row.public_ip, "agent's public address");
                }
            }
            None => debug!(agent = %agent, "the broker cannot tell where this agent connects from"),
        }
        if let Some(notices) = &locator.notices {
            let notice = NoticeEnvelope::new(PortalNotice::Welcome {
                public_ip: seen.map(|ip| ip.to_string()),
            });
            if let Err(e) = notices.send_notice(agent, &notice).await {
                warn!(agent = %agent, error = %e, "could not send the welcome notice; the agent learns its public address at its next hello");
            }
        }
        if agent_has_db {
            return Ok(());
        }
        // Without a fresh address, the one stored (from the activation or an earlier connection).
        let ip = seen.or_else(|| row.public_ip.as_deref().and_then(|ip| ip.parse().ok()));
        self.locate_at_portal(locator, &row, ip).await
    }

    /// A `location` report from the agent (its epoch already checked): stored as sent, unless it says the
    /// agent has no usable database and the portal has one, which then looks the address up instead.
    pub async fn apply_location_report(
        &self,
        locator: &Locator,
        row: &AgentRow,
        mut report: LocationReport,
    ) -> Result<(), OpError> {
        report.source = LocationSource::Agent;
        if let Some(loc) = report.location.as_mut() {
            loc.source = LocationSource::Agent;
        }
        let no_db = matches!(
            report.error_code(),
            Some(codes::UNAVAILABLE) | Some(codes::CORRUPT)
        );
        if no_db && locator.has_db() {
            // The address the portal last saw wins over the one the agent knew when it reported.
            let ip = row
                .public_ip
                .as_deref()
                .and_then(|ip| ip.parse().ok())
                .or_else(|| report.address());
            debug!(agent = %row.id, code = report.error_code().unwrap_or(""), "the agent cannot locate itself; the portal does");
            return self.locate_at_portal(locator, row, ip).await;
        }
        match (&report.location, &report.error) {
            (Some(l), _) => {
                info!(agent = %row.id, ip = %l.ip, country = ?l.country_code, city = ?l.city, "agent located itself")
            }
            (None, Some(e)) => {
                info!(agent = %row.id, ip = ?report.ip, code = %e.code, "agent could not locate itself")
            }
            (None, None) => {}
        }
        self.store_location(&row.id, row.data_epoch, &report).await
    }

    /// Looks `ip` up with the portal's database and stores the result, unless the stored report is
    /// already the portal's for this address. Nothing happens without a database or an address.
    async fn locate_at_portal(
        &self,
        locator: &Locator,
        row: &AgentRow,
        ip: Option<IpAddr>,
    ) -> Result<(), OpError> {
        let (Some(db), Some(ip)) = (&locator.db, ip) else {
            return Ok(());
        };
        if let Some(stored) = self.location(&row.id).await? {
            if stored.source == LocationSource::Portal && stored.address() == Some(ip) {
                debug!(agent = %row.id, %ip, "address already located by the portal");
                return Ok(());
            }
        }
        let report = match db.lookup(ip, LocationSource::Portal) {
            Ok(location) => {
                info!(agent = %row.id, %ip, country = ?location.country_code, city = ?location.city,
                    "agent located by the portal");
                LocationReport::found(location)
            }
            Err(e) => {
                warn!(agent = %row.id, %ip, code = e.code(), error = %e, "the portal could not locate the agent");
                LocationReport::failed(LocationSource::Portal, Some(ip), &e)
            }
        };
        self.store_location(&row.id, row.data_epoch, &report).await
    }

    async fn store_location(
        &self,
        agent: &AgentId,
        epoch: u64,
        report: &LocationReport,
    ) -> Result<(), OpError> {
        let body = serde_json::to_value(report).unwrap_or_default();
        let mut conn = self.store().conn().await?;
        if !reports::upsert(&mut conn, agent, LOCATION_REPORT, epoch, &body, self.now()).await? {
            debug!(agent = %agent, epoch, "location of a data epoch a cleanup just ended dropped");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use chrono::{TimeZone, Utc};
    use outpost_cloud_link::geoip::testdb::{city_db, Place};
    use outpost_cloud_link::geoip::GeoIpDb;
    use outpost_cloud_link::protocol::{CommandEnvelope, Platform};

    use super::*;
    use crate::app::{ActivationRequest, CommandSender, Deps, Settings};
    use crate::broker::{BrokerAdmin, BrokerError};
    use crate::clock::ManualClock;
    use crate::store::Store;

    /// A broker that says nothing but where agents connect from.
    #[derive(Default)]
    struct Broker {
        address: Mutex<Option<IpAddr>>,
    }

    #[async_trait]
    impl BrokerAdmin for Broker {
        async fn create_agent(&self, _: &AgentId, _: &str) -> Result<(), BrokerError> {
            Ok(())
        }
        async fn disable_agent(&self, _: &AgentId) -> Result<(), BrokerError> {
            Ok(())
        }
        async fn enable_agent(&self, _: &AgentId) -> Result<(), BrokerError> {
            Ok(())
        }
        async fn delete_agent(&self, _: &AgentId) -> Result<(), BrokerError> {
            Ok(())
        }
        async fn kick_agent(&self, _: &AgentId) -> Result<(), BrokerError> {
            Ok(())
        }
        async fn rotate_secret(&self, _: &AgentId, _: &str) -> Result<(), BrokerError> {
            Ok(())
        }
        async fn client_address(&self, _: &AgentId) -> Option<IpAddr> {
            *self.address.lock().unwrap()
        }
    }

    struct NoCommands;

    #[async_trait]
    impl CommandSender for NoCommands {
        async fn send_command(&self, _: &AgentId, _: &CommandEnvelope) -> Result<(), SendError> {
            Ok(())
        }
    }

    /// Records the notices sent.
    #[derive(Default)]
    struct Notices(Mutex<Vec<(AgentId, PortalNotice)>>);

    #[async_trait]
    impl NoticeSender for Notices {
        async fn send_notice(&self, agent: &AgentId, n: &NoticeEnvelope) -> Result<(), SendError> {
            self.0
                .lock()
                .unwrap()
                .push((agent.clone(), n.notice.clone()));
            Ok(())
        }
    }

    fn place(network: &'static str, city: &'static str) -> Place<'static> {
        Place {
            network,
            city,
            region: "Region",
            country_code: "NZ",
            country: "New Zealand",
            latitude: -41.0,
            longitude: 174.0,
            accuracy_radius_km: 10,
        }
    }

    struct Setup {
        app: App,
        broker: Arc<Broker>,
        notices: Arc<Notices>,
        locator: Locator,
        clock: Arc<ManualClock>,
        agent: AgentId,
        _dir: tempfile::TempDir,
    }

    /// A portal with a City database (two addresses of TEST-NET-3, and TEST-NET-2 where the agent
    /// activated from) and one agent.
    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("portal.db")).await.unwrap();
        let broker = Arc::new(Broker::default());
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 4, 1, 12, 0, 0).unwrap(),
        ));
        let app = App::new(Deps {
            store,
            broker: broker.clone(),
            sender: Arc::new(NoCommands),
            clock: clock.clone(),
            dev_clock: None,
            settings: Settings {
                broker_address: "127.0.0.1:8883".into(),
                ca_pem: String::new(),
                offline_after: Duration::from_secs(60),
                public_url: "https://portal.test".into(),
            },
            mailer: None,
        });
        let bytes = city_db(
            "Portal-Test-City",
            1_700_000_000,
            &[
                place("203.0.113.7/32", "Wellington"),
                place("203.0.113.8/32", "Auckland"),
                place("198.51.100.0/24", "Christchurch"),
            ],
        );
        let db = GeoIpDb::from_bytes(bytes, "portal.mmdb".into()).unwrap();
        let notices = Arc::new(Notices::default());
        let locator = Locator::new(Some(db), Some(notices.clone() as Arc<dyn NoticeSender>));
        let company = {
            let mut conn = app.store().conn().await.unwrap();
            crate::app::users::company_for(&mut conn, None, app.now())
                .await
                .unwrap()
        };
        let code = app
            .create_code(chrono::Duration::days(1), 1, None, (company, None))
            .await
            .unwrap();
        let done = app
            .activate(
                ActivationRequest {
                    code: code.code.display(),
                    mac: None,
                    hostname: "site-gw".into(),
                    version: "1".into(),
                    local_ip: None,
                    platform: Platform::Router,
                },
                Some("198.51.100.20".into()),
            )
            .await
            .unwrap();
        assert_eq!(done.public_ip.as_deref(), Some("198.51.100.20"));
        Setup {
            app,
            broker,
            notices,
            locator,
            clock,
            agent: done.agent_id,
            _dir: dir,
        }
    }

    impl Setup {
        fn connect_from(&self, ip: Option<&str>) {
            *self.broker.address.lock().unwrap() = ip.map(|ip| ip.parse().unwrap());
        }

        async fn welcome(&self, agent_has_db: bool) {
            self.app
                .welcome(&self.locator, &self.agent, agent_has_db)
                .await
                .unwrap();
        }

        async fn report(&self, locator: &Locator, report: LocationReport) {
            let row = self.app.agent(&self.agent).await.unwrap();
            self.app
                .apply_location_report(locator, &row, report)
                .await
                .unwrap();
        }

        async fn stored(&self) -> LocationReport {
            self.app.location(&self.agent).await.unwrap().unwrap()
        }

        async fn updated_at(&self) -> chrono::DateTime<Utc> {
            let mut conn = self.app.store().conn().await.unwrap();
            reports::get(&mut conn, &self.agent, LOCATION_REPORT)
                .await
                .unwrap()
                .unwrap()
                .updated_at
        }

        fn last_notice(&self) -> PortalNotice {
            let sent = self.notices.0.lock().unwrap();
            let (agent, notice) = sent.last().unwrap().clone();
            assert_eq!(agent, self.agent);
            notice
        }
    }

    fn city(r: &LocationReport) -> Option<&str> {
        r.location.as_ref().and_then(|l| l.city.as_deref())
    }

    #[tokio::test]
    async fn the_portal_locates_an_agent_without_a_database_and_follows_its_address() {
        let s = setup().await;
        assert_eq!(s.app.location(&s.agent).await.unwrap(), None);

        s.connect_from(Some("203.0.113.7"));
        s.welcome(false).await;
        assert_eq!(
            s.last_notice(),
            PortalNotice::Welcome {
                public_ip: Some("203.0.113.7".into())
            }
        );
        let row = s.app.agent(&s.agent).await.unwrap();
        assert_eq!(row.public_ip.as_deref(), Some("203.0.113.7"));
        let first = s.stored().await;
        assert_eq!(first.source, LocationSource::Portal);
        assert_eq!(city(&first), Some("Wellington"));
        assert_eq!(
            first.location.as_ref().unwrap().database,
            "Portal-Test-City"
        );

        // The same address again: not looked up again.
        let at = s.updated_at().await;
        s.clock.advance(chrono::Duration::seconds(60));
        s.welcome(false).await;
        assert_eq!(s.updated_at().await, at);

        // A new address: looked up.
        s.connect_from(Some("203.0.113.8"));
        s.welcome(false).await;
        assert_eq!(city(&s.stored().await), Some("Auckland"));
        assert!(s.updated_at().await > at);

        // The broker cannot tell: the welcome says so, the stored address stays.
        s.connect_from(None);
        s.welcome(false).await;
        assert_eq!(s.last_notice(), PortalNotice::Welcome { public_ip: None });
        let row = s.app.agent(&s.agent).await.unwrap();
        assert_eq!(row.public_ip.as_deref(), Some("203.0.113.8"));
        assert_eq!(city(&s.stored().await), Some("Auckland"));
    }

    #[tokio::test]
    async fn location_reports_go_through_ingest() {
        use crate::ingest::{handle_with, Disposition};
        use outpost_cloud_link::protocol::{AgentMessage, Envelope, Report};
        let s = setup().await;
        let report = |seq: u64, epoch: u64, body: serde_json::Value| {
            Envelope::new(
                seq,
                epoch,
                0,
                AgentMessage::Report(Report {
                    kind: LOCATION_REPORT.into(),
                    body,
                }),
            )
        };
        let bad = report(1, 0, serde_json::json!({ "location": 5 }));
        assert_eq!(
            handle_with(&s.app, &s.locator, &s.agent, bad)
                .await
                .unwrap(),
            Disposition::Malformed
        );
        let failure = LocationReport::failure(
            LocationSource::Agent,
            Some("203.0.113.7".parse().unwrap()),
            codes::UNAVAILABLE,
            "none",
        );
        let body = serde_json::to_value(&failure).unwrap();
        let stale = report(2, 7, body.clone());
        assert_eq!(
            handle_with(&s.app, &s.locator, &s.agent, stale)
                .await
                .unwrap(),
            Disposition::StaleEpoch
        );
        assert_eq!(s.app.location(&s.agent).await.unwrap(), None);
        let fresh = report(3, 0, body);
        assert_eq!(
            handle_with(&s.app, &s.locator, &s.agent, fresh)
                .await
                .unwrap(),
            Disposition::Applied
        );
        // Located by the portal at the address it knows (the activation's).
        let r = s.stored().await;
        assert_eq!(r.source, LocationSource::Portal);
        assert_eq!(city(&r), Some("Christchurch"));
    }

    #[tokio::test]
    async fn without_a_fresh_address_the_activation_address_is_located() {
        let s = setup().await;
        s.connect_from(None);
        s.welcome(false).await;
        let r = s.stored().await;
        assert_eq!(r.ip.as_deref(), Some("198.51.100.20"));
        assert_eq!(city(&r), Some("Christchurch"));
    }

    #[tokio::test]
    async fn an_agent_with_a_database_reports_for_itself() {
        let s = setup().await;
        s.connect_from(Some("203.0.113.7"));
        s.welcome(true).await;
        assert_eq!(
            s.app.location(&s.agent).await.unwrap(),
            None,
            "no portal lookup"
        );

        // Its report is stored as it sent it, and always as the agent's.
        let agent_db = GeoIpDb::from_bytes(
            city_db(
                "Agent-City",
                1_600_000_000,
                &[place("203.0.113.0/24", "Agentville")],
            ),
            "agent.mmdb".into(),
        )
        .unwrap();
        let mut loc = agent_db
            .lookup("203.0.113.7".parse().unwrap(), LocationSource::Agent)
            .unwrap();
        loc.source = LocationSource::Portal;
        let mut claimed = LocationReport::found(loc);
        claimed.source = LocationSource::Portal;
        s.report(&s.locator, claimed).await;
        let stored = s.stored().await;
        assert_eq!(stored.source, LocationSource::Agent);
        assert_eq!(
            stored.location.as_ref().unwrap().source,
            LocationSource::Agent
        );
        assert_eq!(city(&stored), Some("Agentville"));

        // A failed lookup is stored too.
        let private = LocationReport::failed(
            LocationSource::Agent,
            Some("192.168.1.1".parse().unwrap()),
            &outpost_cloud_link::geoip::GeoIpError::PrivateAddress("192.168.1.1".parse().unwrap()),
        );
        s.report(&s.locator, private.clone()).await;
        assert_eq!(s.stored().await, private);
    }

    #[tokio::test]
    async fn an_agent_whose_database_is_unusable_is_located_by_the_portal() {
        let s = setup().await;
        // The hello said it has a database (no portal lookup); the broker saw it come from .8.
        s.connect_from(Some("203.0.113.8"));
        s.welcome(true).await;
        assert_eq!(s.app.location(&s.agent).await.unwrap(), None);
        for code in [codes::UNAVAILABLE, codes::CORRUPT] {
            // The agent still knew an older address: the one the portal saw last wins.
            s.report(
                &s.locator,
                LocationReport::failure(
                    LocationSource::Agent,
                    Some("203.0.113.7".parse().unwrap()),
                    code,
                    "no database",
                ),
            )
            .await;
            let r = s.stored().await;
            assert_eq!(r.source, LocationSource::Portal, "{code}");
            assert_eq!(city(&r), Some("Auckland"));
        }
        // A portal without a database keeps the agent's word for it.
        let unavailable = LocationReport::failure(
            LocationSource::Agent,
            Some("203.0.113.7".parse().unwrap()),
            codes::UNAVAILABLE,
            "no database",
        );
        s.report(&Locator::default(), unavailable.clone()).await;
        assert_eq!(s.stored().await, unavailable);
    }
}
