//! GeoIP self-location: a public address looked up in a MaxMind DB City database (GeoLite2-City, DB-IP
//! City Lite), and the `location` report that carries the result (or why there is none) to the portal.
//!
//! The agent looks its own public address up when it has a database; the portal does the same with its own
//! copy for agents that have none. Both read the database with [`GeoIpDb`] and send or store the same
//! [`LocationReport`], whose `source` says who looked it up.
//!
//! Only the GeoIP2 City schema is read (`maxminddb::geoip2::City`): English names, the first subdivision
//! as the region, the location's coordinates and accuracy radius. The whole file is read into memory at
//! open (no memory map): a lookup never touches the disk again.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The report kind of a [`LocationReport`].
pub const LOCATION_REPORT: &str = "location";

/// The machine-readable codes of a failed lookup ([`LocationFailure::code`]).
pub mod codes {
    /// The address is private, local or reserved (RFC 1918, loopback, link-local, CGNAT, multicast...).
    pub const PRIVATE_ADDRESS: &str = "geoip_private_address";
    /// The database has no record for the address.
    pub const NOT_FOUND: &str = "geoip_not_found";
    /// The database's record for the address has no coordinates (a country-level record).
    pub const NO_COORDINATES: &str = "geoip_no_coordinates";
    /// No database to look the address up in (none configured, or it cannot be read).
    pub const UNAVAILABLE: &str = "geoip_unavailable";
    /// The database file is not a readable MaxMind DB.
    pub const CORRUPT: &str = "geoip_corrupt";
}

/// Why an address could not be located.
#[derive(Debug, thiserror::Error)]
pub enum GeoIpError {
    #[error("cannot read the GeoIP database {}: {source}; check the path and its permissions (a GeoLite2-City or DB-IP City Lite .mmdb file)", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a usable MaxMind DB database ({message}); download the GeoLite2-City or DB-IP City Lite .mmdb file again", path.display())]
    Corrupt { path: PathBuf, message: String },
    #[error("{0} is a private, local or reserved address that no GeoIP database can place; only the public address the portal sees can be located")]
    PrivateAddress(IpAddr),
    #[error("{ip} is not in the GeoIP database {database}; a newer database may know it")]
    NotFound { ip: IpAddr, database: String },
    #[error("the GeoIP database knows {ip} but not where it is (no coordinates); a City database (GeoLite2-City, DB-IP City Lite) places it")]
    NoCoordinates { ip: IpAddr },
}

impl GeoIpError {
    /// The stable code of this error ([`codes`]).
    pub fn code(&self) -> &'static str {
        match self {
            GeoIpError::Open { .. } => codes::UNAVAILABLE,
            GeoIpError::Corrupt { .. } => codes::CORRUPT,
            GeoIpError::PrivateAddress(_) => codes::PRIVATE_ADDRESS,
            GeoIpError::NotFound { .. } => codes::NOT_FOUND,
            GeoIpError::NoCoordinates { .. } => codes::NO_COORDINATES,
        }
    }
}

/// Who looked an address up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationSource {
    /// The agent, with its own database.
    #[default]
    Agent,
    /// The portal, with its database, for an agent that has none.
    Portal,
}

impl LocationSource {
    pub fn as_str(self) -> &'static str {
        match self {
            LocationSource::Agent => "agent",
            LocationSource::Portal => "portal",
        }
    }
}

/// Where a public address is, as the database says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    /// The address looked up.
    pub ip: String,
    /// ISO 3166-1 alpha-2 (`US`).
    #[serde(default)]
    pub country_code: Option<String>,
    /// English names.
    #[serde(default)]
    pub country: Option<String>,
    /// The first (largest) subdivision: a state, province or region.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    pub latitude: f64,
    pub longitude: f64,
    /// The radius around the coordinates the address is likely (67 %) to be in.
    #[serde(default)]
    pub accuracy_radius_km: Option<u16>,
    /// The database's type from its metadata (`GeoLite2-City`, `DBIP-City-Lite`).
    pub database: String,
    /// When the database was built, `YYYY-MM-DD` (UTC).
    pub database_built: String,
    pub source: LocationSource,
}

/// Why a `location` report carries no location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocationFailure {
    /// One of [`codes`].
    pub code: String,
    pub message: String,
}

/// The body of a [`LOCATION_REPORT`]: the location of the agent's public address, or why it has none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationReport {
    /// Who looked the address up.
    #[serde(default)]
    pub source: LocationSource,
    /// The public address looked up (absent when it is not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub error: Option<LocationFailure>,
}

impl LocationReport {
    /// A lookup that found the address.
    pub fn found(location: Location) -> Self {
        Self {
            source: location.source,
            ip: Some(location.ip.clone()),
            location: Some(location),
            error: None,
        }
    }

    /// A lookup of `ip` that failed with `error`.
    pub fn failed(source: LocationSource, ip: Option<IpAddr>, error: &GeoIpError) -> Self {
        Self::failure(source, ip, error.code(), error.to_string())
    }

    /// A failure with a code of [`codes`] and a sentence.
    pub fn failure(
        source: LocationSource,
        ip: Option<IpAddr>,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            source,
            ip: ip.map(|ip| ip.to_string()),
            location: None,
            error: Some(LocationFailure {
                code: code.to_owned(),
                message: message.into(),
            }),
        }
    }

    /// The code of the failure, if this report is one.
    pub fn error_code(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.code.as_str())
    }

    /// The address looked up, parsed.
    pub fn address(&self) -> Option<IpAddr> {
        self.ip.as_deref().and_then(|ip| ip.parse().ok())
    }
}

/// An open City database.
pub struct GeoIpDb {
    reader: maxminddb::Reader<Vec<u8>>,
    path: PathBuf,
    built: String,
}

impl std::fmt::Debug for GeoIpDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIpDb")
            .field("path", &self.path)
            .field("database", &self.database())
            .field("built", &self.built)
            .finish()
    }
}

impl GeoIpDb {
    /// Reads the database at `path` into memory and checks its metadata.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GeoIpError> {
        let path = path.as_ref().to_owned();
        let bytes = std::fs::read(&path).map_err(|source| GeoIpError::Open {
            path: path.clone(),
            source,
        })?;
        Self::from_bytes(bytes, path)
    }

    /// A database from its bytes (`path` only names it in errors).
    pub fn from_bytes(bytes: Vec<u8>, path: PathBuf) -> Result<Self, GeoIpError> {
        let reader = maxminddb::Reader::from_source(bytes).map_err(|e| GeoIpError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let built = civil_date(reader.metadata().build_epoch);
        Ok(Self {
            reader,
            path,
            built,
        })
    }

    /// Where the database was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The database's type from its metadata (`GeoLite2-City`, `DBIP-City-Lite`, ...).
    pub fn database(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// When the database was built, `YYYY-MM-DD` (UTC).
    pub fn built(&self) -> &str {
        &self.built
    }

    /// Where `ip` is. Private, local and reserved addresses are refused before the database is asked.
    pub fn lookup(&self, ip: IpAddr, source: LocationSource) -> Result<Location, GeoIpError> {
        if is_private(ip) {
            return Err(GeoIpError::PrivateAddress(ip));
        }
        let not_found = || GeoIpError::NotFound {
            ip,
            database: self.database().to_owned(),
        };
        let corrupt = |e: maxminddb::MaxMindDbError| GeoIpError::Corrupt {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let result = match self.reader.lookup(ip) {
            Ok(r) => r,
            // An IPv6 address asked of an IPv4-only database: the database does not have it.
            Err(maxminddb::MaxMindDbError::InvalidInput { .. }) => return Err(not_found()),
            Err(e) => return Err(corrupt(e)),
        };
        let Some(city) = result
            .decode::<maxminddb::geoip2::City>()
            .map_err(corrupt)?
        else {
            return Err(not_found());
        };
        let (Some(latitude), Some(longitude)) = (city.location.latitude, city.location.longitude)
        else {
            return Err(GeoIpError::NoCoordinates { ip });
        };
        let owned = |s: Option<&str>| s.map(str::to_owned);
        Ok(Location {
            ip: ip.to_string(),
            country_code: owned(city.country.iso_code),
            country: owned(city.country.names.english),
            region: owned(city.subdivisions.first().and_then(|s| s.names.english)),
            city: owned(city.city.names.english),
            latitude,
            longitude,
            accuracy_radius_km: city.location.accuracy_radius,
            database: self.database().to_owned(),
            database_built: self.built.clone(),
            source,
        })
    }
}

/// Whether `ip` is an address no GeoIP database can place: private (RFC 1918 `10/8`, `172.16/12`,
/// `192.168/16`), shared CGNAT space (`100.64/10`), loopback (`127/8`, `::1`), link-local (`169.254/16`,
/// `fe80::/10`), unspecified or "this network" (`0/8`, `::`), multicast (`224/4`, `ff00::/8`), the
/// reserved `240/4` with the broadcast address, IPv6 unique local addresses (`fc00::/7`), and IPv4-mapped
/// IPv6 forms of any of these.
///
/// Documentation ranges (`192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`) are *not*
/// private here: they are public-shaped addresses tests and examples use.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 0
        || ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
        || ip.is_multicast()
        || a >= 240
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_private_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// `YYYY-MM-DD` (proleptic Gregorian, UTC) of a Unix time in seconds.
pub fn civil_date(unix_secs: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (unix_secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Small City databases for tests (feature `test-db`, and this crate's own tests): records in the GeoIP2
/// City schema, written with `mmdb-writer`, the way GeoLite2-City and DB-IP City Lite hold them.
#[cfg(any(test, feature = "test-db"))]
pub mod testdb {
    use std::time::{Duration, UNIX_EPOCH};

    use mmdb_writer::ipnet::IpNet;
    pub use mmdb_writer::Value;
    use mmdb_writer::{IpVersion, Writer};

    /// One network and where it is.
    #[derive(Debug, Clone, Copy)]
    pub struct Place<'a> {
        /// A CIDR, IPv4 or IPv6 (`203.0.113.0/24`).
        pub network: &'a str,
        pub city: &'a str,
        pub region: &'a str,
        pub country_code: &'a str,
        pub country: &'a str,
        pub latitude: f64,
        pub longitude: f64,
        pub accuracy_radius_km: u16,
    }

    fn names(en: &str) -> Value {
        // A second language the reader must not pick.
        Value::map([
            ("en", Value::from(en)),
            ("de", Value::from(format!("{en} (de)"))),
        ])
    }

    /// `place` as a City record: English and German names, its region as the first of two subdivisions,
    /// coordinates and accuracy radius.
    pub fn city_record(place: &Place<'_>) -> Value {
        Value::map([
            ("city", Value::map([("names", names(place.city))])),
            (
                "country",
                Value::map([
                    ("iso_code", Value::from(place.country_code)),
                    ("names", names(place.country)),
                ]),
            ),
            (
                "subdivisions",
                Value::array([
                    Value::map([("names", names(place.region))]),
                    Value::map([("names", names("A smaller subdivision"))]),
                ]),
            ),
            (
                "location",
                Value::map([
                    ("latitude", Value::from(place.latitude)),
                    ("longitude", Value::from(place.longitude)),
                    ("accuracy_radius", Value::from(place.accuracy_radius_km)),
                ]),
            ),
        ])
    }

    /// An IPv6 database (IPv4 networks are reachable as IPv4) of type `database_type`, built at
    /// `built_unix_secs`, holding `records` (CIDR, record).
    ///
    /// # Panics
    /// On a network that is not a CIDR or a record MMDB cannot hold: test input.
    pub fn database(
        database_type: &str,
        built_unix_secs: u64,
        records: &[(&str, Value)],
    ) -> Vec<u8> {
        let mut w = Writer::builder(database_type)
            .ip_version(IpVersion::V6)
            .build_epoch(UNIX_EPOCH + Duration::from_secs(built_unix_secs))
            .build();
        for (network, record) in records {
            let net: IpNet = network
                .parse()
                .unwrap_or_else(|e| panic!("{network:?} is not a CIDR: {e}"));
            w.insert_value(net, record.clone())
                .unwrap_or_else(|e| panic!("cannot write {network}: {e}"));
        }
        w.to_bytes()
            .unwrap_or_else(|e| panic!("cannot write the test database: {e}"))
    }

    /// A City database of `places`.
    pub fn city_db(database_type: &str, built_unix_secs: u64, places: &[Place<'_>]) -> Vec<u8> {
        let records: Vec<(&str, Value)> =
            places.iter().map(|p| (p.network, city_record(p))).collect();
        database(database_type, built_unix_secs, &records)
    }
}

#[cfg(test)]
mod tests {
    use super::testdb::{city_db, city_record, database, Place, Value};
    use super::*;

    /// 2024-02-29 12:00 UTC.
    const BUILT: u64 = 1_709_208_000;

    const WELLINGTON: Place<'static> = Place {
        network: "203.0.113.0/24",
        city: "Wellington",
        region: "Wellington Region",
        country_code: "NZ",
        country: "New Zealand",
        latitude: -41.2866,
        longitude: 174.7756,
        accuracy_radius_km: 20,
    };

    const AUCKLAND: Place<'static> = Place {
        network: "2001:db8:1::/48",
        city: "Auckland",
        region: "Auckland Region",
        country_code: "NZ",
        country: "New Zealand",
        latitude: -36.8485,
        longitude: 174.7633,
        accuracy_radius_km: 5,
    };

    /// Wellington and Auckland, and a country-only record (no coordinates) for 198.51.100.0/24.
    fn small_db() -> GeoIpDb {
        let country_only = Value::map([("country", Value::map([("iso_code", Value::from("NZ"))]))]);
        let bytes = database(
            "Outpost-Test-City",
            BUILT,
            &[
                (WELLINGTON.network, city_record(&WELLINGTON)),
                (AUCKLAND.network, city_record(&AUCKLAND)),
                ("198.51.100.0/24", country_only),
            ],
        );
        GeoIpDb::from_bytes(bytes, PathBuf::from("small.mmdb")).unwrap()
    }

    #[test]
    fn an_ipv4_hit_reads_the_city_schema() {
        let db = small_db();
        assert_eq!(db.database(), "Outpost-Test-City");
        assert_eq!(db.built(), "2024-02-29");
        let loc = db
            .lookup("203.0.113.7".parse().unwrap(), LocationSource::Agent)
            .unwrap();
        assert_eq!(
            loc,
            Location {
                ip: "203.0.113.7".into(),
                country_code: Some("NZ".into()),
                country: Some("New Zealand".into()),
                region: Some("Wellington Region".into()),
                city: Some("Wellington".into()),
                latitude: -41.2866,
                longitude: 174.7756,
                accuracy_radius_km: Some(20),
                database: "Outpost-Test-City".into(),
                database_built: "2024-02-29".into(),
                source: LocationSource::Agent,
            }
        );
    }

    #[test]
    fn an_ipv6_hit_and_the_portal_as_source() {
        let db = small_db();
        let loc = db
            .lookup("2001:db8:1::42".parse().unwrap(), LocationSource::Portal)
            .unwrap();
        assert_eq!(loc.city.as_deref(), Some("Auckland"));
        assert_eq!(loc.region.as_deref(), Some("Auckland Region"));
        assert_eq!((loc.latitude, loc.longitude), (-36.8485, 174.7633));
        assert_eq!(loc.accuracy_radius_km, Some(5));
        assert_eq!(loc.source, LocationSource::Portal);
        let report = LocationReport::found(loc);
        assert_eq!(report.source, LocationSource::Portal);
        assert_eq!(report.ip.as_deref(), Some("2001:db8:1::42"));
    }

    #[test]
    fn an_address_outside_the_database_is_not_found() {
        let db = small_db();
        let err = db
            .lookup("192.0.2.1".parse().unwrap(), LocationSource::Agent)
            .unwrap_err();
        assert!(
            matches!(&err, GeoIpError::NotFound { database, .. } if database == "Outpost-Test-City"),
            "{err:?}"
        );
        assert_eq!(err.code(), codes::NOT_FOUND);
        assert!(err.to_string().contains("192.0.2.1"));
    }

    #[test]
    fn a_record_without_coordinates_says_so() {
        let err = small_db()
            .lookup("198.51.100.4".parse().unwrap(), LocationSource::Agent)
            .unwrap_err();
        assert!(matches!(err, GeoIpError::NoCoordinates { .. }), "{err:?}");
        assert_eq!(err.code(), codes::NO_COORDINATES);
    }

    #[test]
    fn private_addresses_are_refused_before_the_lookup() {
        // Even a database that maps them (as a test one may) does not place them.
        let bytes = city_db(
            "Private-Too",
            BUILT,
            &[Place {
                network: "10.0.0.0/8",
                ..WELLINGTON
            }],
        );
        let db = GeoIpDb::from_bytes(bytes, PathBuf::from("p.mmdb")).unwrap();
        for ip in ["10.1.2.3", "192.168.1.1", "fd00::1", "::ffff:10.0.0.1"] {
            let err = db
                .lookup(ip.parse().unwrap(), LocationSource::Agent)
                .unwrap_err();
            assert!(
                matches!(err, GeoIpError::PrivateAddress(_)),
                "{ip}: {err:?}"
            );
            assert_eq!(err.code(), codes::PRIVATE_ADDRESS);
        }
    }

    #[test]
    fn an_ipv6_address_in_an_ipv4_database_is_not_found() {
        let mut w = mmdb_writer::Writer::builder("V4-Only")
            .ip_version(mmdb_writer::IpVersion::V4)
            .build();
        w.insert_value(
            "203.0.113.0/24"
                .parse::<mmdb_writer::ipnet::IpNet>()
                .unwrap(),
            city_record(&WELLINGTON),
        )
        .unwrap();
        let db = GeoIpDb::from_bytes(w.to_bytes().unwrap(), PathBuf::from("v4.mmdb")).unwrap();
        assert!(db
            .lookup("203.0.113.1".parse().unwrap(), LocationSource::Agent)
            .is_ok());
        let err = db
            .lookup("2001:db8:1::1".parse().unwrap(), LocationSource::Agent)
            .unwrap_err();
        assert!(matches!(err, GeoIpError::NotFound { .. }), "{err:?}");
    }

    #[test]
    fn a_missing_file_and_a_corrupt_one_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.mmdb");
        let err = GeoIpDb::open(&missing).unwrap_err();
        assert!(matches!(err, GeoIpError::Open { .. }), "{err:?}");
        assert_eq!(err.code(), codes::UNAVAILABLE);
        assert!(err.to_string().contains("missing.mmdb"), "{err}");

        let corrupt = dir.path().join("corrupt.mmdb");
        std::fs::write(&corrupt, b"this is not a MaxMind database at all").unwrap();
        let err = GeoIpDb::open(&corrupt).unwrap_err();
        assert!(matches!(err, GeoIpError::Corrupt { .. }), "{err:?}");
        assert_eq!(err.code(), codes::CORRUPT);
        assert!(err.to_string().contains("corrupt.mmdb"), "{err}");

        // A real database cut short loses its metadata: corrupt too.
        let bytes = city_db("Cut", BUILT, &[WELLINGTON]);
        let cut = dir.path().join("cut.mmdb");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(
            GeoIpDb::open(&cut).unwrap_err(),
            GeoIpError::Corrupt { .. }
        ));
        // The whole file opens.
        let whole = dir.path().join("whole.mmdb");
        std::fs::write(&whole, &bytes).unwrap();
        assert_eq!(GeoIpDb::open(&whole).unwrap().path(), whole);
    }

    #[test]
    fn is_private_covers_local_ranges_but_not_documentation_ones() {
        for ip in [
            "0.0.0.0",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.1.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.0.1",
            "224.0.0.251",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip} should be private");
        }
        for ip in [
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.7",
            "2001:db8::1",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip} should be public");
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(BUILT), "2024-02-29");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(1_531_872_000 + 86_399), "2018-07-18");
        assert_eq!(civil_date(4_102_444_800), "2100-01-01");
    }

    #[test]
    fn reports_round_trip_and_a_failure_keeps_its_code() {
        let failed = LocationReport::failed(
            LocationSource::Agent,
            Some("10.0.0.1".parse().unwrap()),
            &GeoIpError::PrivateAddress("10.0.0.1".parse().unwrap()),
        );
        assert_eq!(failed.error_code(), Some(codes::PRIVATE_ADDRESS));
        assert_eq!(failed.address(), Some("10.0.0.1".parse().unwrap()));
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["source"], "agent");
        assert_eq!(json["location"], serde_json::Value::Null);
        assert_eq!(
            serde_json::from_value::<LocationReport>(json).unwrap(),
            failed
        );
        let minimal: LocationReport =
            serde_json::from_str(r#"{"error":{"code":"geoip_unavailable","message":"m"}}"#)
                .unwrap();
        assert_eq!(minimal.source, LocationSource::Agent);
        assert_eq!(minimal.error_code(), Some(codes::UNAVAILABLE));
        assert!(minimal.ip.is_none() && minimal.location.is_none());
    }
}
