//! The agent's GeoIP self-location: its City database (optional), the public address the portal tells it
//! (activation reply, the `Welcome` notice after every hello) and the last `location` report, kept in the
//! store so a restart does not look the same address up again.
//!
//! A new report is made when the public address changes, or when the database changes (another file or
//! build date, one added or removed): with a database, the lookup's location or its failure; without one, a
//! `geoip_unavailable` (or `geoip_corrupt`) failure so the portal locates the agent with its own copy. The
//! link re-sends the last report on every connect and after a cleanup (the portal keeps nothing retained
//! and a cleanup wipes its reports). Nothing here fails the agent: a database that cannot be read is a
//! warning and the agent runs without one.
//!
//! The database is in memory only while it is used: read at start to check it, then once per new address
//! for the lookup, and dropped after. A GeoLite2-City file is about 60 MB, far more than a small router
//! should keep resident for a lookup that happens when its public address changes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use outpost_cloud_link::geoip::{
    codes, is_private, GeoIpDb, GeoIpError, LocationReport, LocationSource,
};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::store::{Store, StoreError};

/// What the agent remembers between runs (the store's `geoip` key).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GeoState {
    /// The public address the portal last told.
    #[serde(default)]
    pub public_ip: Option<String>,
    /// The database the last report was made with (`None`: made without one).
    #[serde(default)]
    pub database: Option<String>,
    /// The last report made (its `ip` is the address it is about).
    #[serde(default)]
    pub report: Option<LocationReport>,
}

impl GeoState {
    /// Reads the stored state; an unreadable one is forgotten (the next lookup rewrites it).
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        let Some(raw) = store.geoip()? else {
            return Ok(Self::default());
        };
        Ok(serde_json::from_slice(&raw).unwrap_or_else(|e| {
            warn!(error = %e, "the stored GeoIP state is unreadable; looking the public address up again");
            Self::default()
        }))
    }

    pub fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.set_geoip(&serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Stores the public address from the activation reply (a fresh store: nothing looked up yet).
pub fn remember_activation_address(
    store: &Store,
    public_ip: Option<&str>,
) -> Result<(), StoreError> {
    GeoState {
        public_ip: public_ip.map(str::to_owned),
        ..GeoState::default()
    }
    .save(store)
}

/// Why the agent has no usable database.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Missing {
    NotConfigured,
    Unusable { code: &'static str, message: String },
}

/// The configured database, as checked at start.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checked {
    path: PathBuf,
    /// Its path and build date: a report made with another database is made again.
    identity: String,
}

/// The agent's database and its GeoIP state.
#[derive(Debug)]
pub struct Locator {
    db: Result<Checked, Missing>,
    state: GeoState,
    store: Store,
}

impl Locator {
    /// Opens `database` (`None`: none configured) and loads the stored state. A database that cannot be
    /// read is logged as a warning: the agent runs without one and says so in its hello.
    pub fn open(database: Option<&Path>, store: Store) -> Result<Self, StoreError> {
        let db = match database {
            None => {
                info!("no GeoIP database configured ([geoip] database in agent.toml): the portal locates this agent");
                Err(Missing::NotConfigured)
            }
            Some(path) => match GeoIpDb::open(path) {
                Ok(db) => {
                    info!(path = %path.display(), database = db.database(), built = db.built(), "GeoIP database checked");
                    Ok(Checked {
                        path: path.to_owned(),
                        identity: format!("{} built {}", path.display(), db.built()),
                    })
                }
                Err(e) => {
                    warn!(path = %path.display(), code = e.code(), error = %e, "GeoIP database unusable: running without it (the portal locates this agent)");
                    Err(Missing::Unusable {
                        code: e.code(),
                        message: e.to_string(),
                    })
                }
            },
        };
        let state = GeoState::load(&store)?;
        Ok(Self { db, state, store })
    }

    /// Whether the agent can look addresses up itself (told in the hello).
    pub fn has_db(&self) -> bool {
        self.db.is_ok()
    }

    /// The last report made, to send again (every connect, after a cleanup).
    pub fn report(&self) -> Option<&LocationReport> {
        self.state.report.as_ref()
    }

    /// The public address last told.
    pub fn public_ip(&self) -> Option<&str> {
        self.state.public_ip.as_deref()
    }

    /// What identifies the database a report was made with: its path and build date.
    fn db_identity(&self) -> Option<String> {
        self.db.as_ref().ok().map(|c| c.identity.clone())
    }

    /// A new report when the known public address has not been looked up with this database yet (at
    /// start: the address from the activation reply or the last run).
    pub fn refresh(&mut self) -> Result<Option<LocationReport>, StoreError> {
        let Some(raw) = self.state.public_ip.clone() else {
            return Ok(None);
        };
        let Ok(ip) = raw.parse::<IpAddr>() else {
            warn!(public_ip = %raw, "the stored public address is not an IP address; waiting for the portal to tell it again");
            return Ok(None);
        };
        let database = self.db_identity();
        let done = self.state.report.as_ref().and_then(|r| r.address()) == Some(ip)
            && self.state.database == database;
        if done {
            debug!(%ip, "public address already looked up with this database");
            return Ok(None);
        }
        let report = self.locate(ip);
        self.state.database = database;
        self.state.report = Some(report.clone());
        self.state.save(&self.store)?;
        Ok(Some(report))
    }

    /// The portal told the public address (`None`: it could not tell): remembered, and looked up when it
    /// is new. Returns the report to queue, if one was made.
    pub fn learn(&mut self, public_ip: Option<&str>) -> Result<Option<LocationReport>, StoreError> {
        let Some(raw) = public_ip else {
            debug!("the portal could not tell this agent's public address");
            return Ok(None);
        };
        if raw.parse::<IpAddr>().is_err() {
            warn!(public_ip = %raw, "the portal told a public address that is not an IP address; ignored");
            return Ok(None);
        }
        if self.state.public_ip.as_deref() != Some(raw) {
            info!(public_ip = %raw, previous = ?self.state.public_ip, "public address learned");
            self.state.public_ip = Some(raw.to_owned());
            self.state.save(&self.store)?;
        }
        self.refresh()
    }

    /// Looks `ip` up, reading the database for this lookup only; a failure becomes the report's error (and
    /// a warning).
    fn locate(&self, ip: IpAddr) -> LocationReport {
        let checked = match &self.db {
            Ok(checked) => checked,
            Err(Missing::NotConfigured) => {
                return LocationReport::failure(
                    LocationSource::Agent,
                    Some(ip),
                    codes::UNAVAILABLE,
                    "this agent has no GeoIP database ([geoip] database in agent.toml)",
                )
            }
            Err(Missing::Unusable { code, message }) => {
                return LocationReport::failure(
                    LocationSource::Agent,
                    Some(ip),
                    code,
                    message.clone(),
                )
            }
        };
        // A private address is refused without reading the database. Otherwise the database is dropped at
        // the end of this function: it leaves memory with the lookup.
        let looked_up = if is_private(ip) {
            Err(GeoIpError::PrivateAddress(ip))
        } else {
            GeoIpDb::open(&checked.path).and_then(|db| db.lookup(ip, LocationSource::Agent))
        };
        match looked_up {
            Ok(location) => {
                info!(%ip, country = ?location.country_code, region = ?location.region, city = ?location.city,
                    latitude = location.latitude, longitude = location.longitude, "public address located");
                LocationReport::found(location)
            }
            Err(e) => {
                warn_lookup(ip, &e);
                LocationReport::failed(LocationSource::Agent, Some(ip), &e)
            }
        }
    }
}

fn warn_lookup(ip: IpAddr, e: &GeoIpError) {
    warn!(%ip, code = e.code(), error = %e, "the public address could not be located");
}

#[cfg(test)]
mod tests {
    use super::*;
    use outpost_cloud_link::geoip::testdb::{city_db, Place};

    fn write_db(path: &Path, city: &'static str) {
        let place = Place {
            network: "203.0.113.0/24",
            city,
            region: "Test Region",
            country_code: "NZ",
            country: "New Zealand",
            latitude: 1.5,
            longitude: 2.5,
            accuracy_radius_km: 10,
        };
        std::fs::write(path, city_db("Agent-Test-City", 1_700_000_000, &[place])).unwrap();
    }
    fn city(r: &LocationReport) -> Option<&str> {
        r.location.as_ref().and_then(|l| l.city.as_deref())
    }

    #[test]
    fn an_address_is_looked_up_once_per_address_and_remembered_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("city.mmdb");
        write_db(&db, "Testville");
        let store = Store::open(&dir.path().join("db")).unwrap();
        remember_activation_address(&store, Some("203.0.113.7")).unwrap();

        let mut loc = Locator::open(Some(&db), store.clone()).unwrap();
        assert!(loc.has_db());
        let first = loc
            .refresh()
            .unwrap()
            .expect("the activation address is looked up");
        assert_eq!(city(&first), Some("Testville"));
        assert_eq!(first.source, LocationSource::Agent);
        assert_eq!(
            loc.learn(Some("203.0.113.7")).unwrap(),
            None,
            "same address: no new lookup"
        );
        drop(loc);

        // A restart: the stored report is re-sent, not looked up again.
        let mut loc = Locator::open(Some(&db), store.clone()).unwrap();
        assert_eq!(loc.report(), Some(&first));
        assert_eq!(loc.refresh().unwrap(), None);

        // A new address: looked up (and not in the database).
        let moved = loc
            .learn(Some("198.51.100.1"))
            .unwrap()
            .expect("a new address is looked up");
        assert_eq!(moved.error_code(), Some(codes::NOT_FOUND));
        assert_eq!(loc.public_ip(), Some("198.51.100.1"));
        assert_eq!(GeoState::load(&store).unwrap().report, Some(moved));

        // A private address is a report too, with its code.
        let private = loc.learn(Some("192.168.1.5")).unwrap().unwrap();
        assert_eq!(private.error_code(), Some(codes::PRIVATE_ADDRESS));
        // Garbage from the portal changes nothing.
        assert_eq!(loc.learn(Some("not-an-ip")).unwrap(), None);
        assert_eq!(loc.learn(None).unwrap(), None);
        assert_eq!(loc.public_ip(), Some("192.168.1.5"));
    }

    #[test]
    fn without_a_usable_database_the_report_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut none = Locator::open(None, store.clone()).unwrap();
        assert!(!none.has_db());
        let r = none.learn(Some("203.0.113.7")).unwrap().unwrap();
        assert_eq!(r.error_code(), Some(codes::UNAVAILABLE));
        assert_eq!(r.ip.as_deref(), Some("203.0.113.7"));

        let corrupt = dir.path().join("corrupt.mmdb");
        std::fs::write(&corrupt, b"garbage, not a database").unwrap();
        let mut bad = Locator::open(Some(&corrupt), store.clone()).unwrap();
        assert!(!bad.has_db());
        // Same address, but unusable instead of none: still no database, no new report.
        assert_eq!(bad.refresh().unwrap(), None);

        // A database appears: the same address is looked up with it.
        let good = dir.path().join("city.mmdb");
        write_db(&good, "Newtown");
        let mut with = Locator::open(Some(&good), store.clone()).unwrap();
        let r = with
            .refresh()
            .unwrap()
            .expect("a new database looks the address up again");
        assert_eq!(city(&r), Some("Newtown"));

        let missing = Locator::open(Some(&dir.path().join("missing.mmdb")), store).unwrap();
        assert!(!missing.has_db());
    }

    #[test]
    fn the_database_is_read_again_for_each_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("city.mmdb");
        write_db(&db, "Before");
        let store = Store::open(&dir.path().join("db")).unwrap();
        let mut loc = Locator::open(Some(&db), store).unwrap();
        // The file is replaced (an update) and then damaged after the start: each lookup reads it anew.
        write_db(&db, "After");
        let r = loc.learn(Some("203.0.113.1")).unwrap().unwrap();
        assert_eq!(city(&r), Some("After"));
        std::fs::write(&db, b"damaged").unwrap();
        let r = loc.learn(Some("203.0.113.2")).unwrap().unwrap();
        assert_eq!(r.error_code(), Some(codes::CORRUPT));
        std::fs::remove_file(&db).unwrap();
        let r = loc.learn(Some("203.0.113.3")).unwrap().unwrap();
        assert_eq!(r.error_code(), Some(codes::UNAVAILABLE));
    }

    #[test]
    fn a_corrupt_database_is_reported_with_its_code() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let corrupt = dir.path().join("corrupt.mmdb");
        std::fs::write(&corrupt, b"garbage, not a database").unwrap();
        let mut bad = Locator::open(Some(&corrupt), store).unwrap();
        let r = bad.learn(Some("203.0.113.9")).unwrap().unwrap();
        assert_eq!(r.error_code(), Some(codes::CORRUPT));
        assert!(r.error.unwrap().message.contains("corrupt.mmdb"));
    }
}
