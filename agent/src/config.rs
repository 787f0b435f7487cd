//! The agent's TOML configuration: raw serde form, validated into ready values, with compiled-in defaults.
//!
//! [`DEFAULT_TOML`] is the documented default file (`outpost-agent print-config` prints it); a missing
//! default config file means these defaults, a missing file named explicitly is an error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use outpost_cloud_link::protocol::Platform;
use serde::Deserialize;

use crate::discovery::sweep::Targets;

/// The documented default configuration, as `print-config` prints it.
pub const DEFAULT_TOML: &str = include_str!("../default-agent.toml");

/// Where `run` looks for its configuration unless `--config` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/outpost/agent.toml";

/// Smallest accepted outbox: a few heartbeats and a hello must fit.
const MIN_OUTBOX_BYTES: u64 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// One `interfaces` entry as written: a bare name, or a table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawInterface {
    Name(String),
    Table(RawInterfaceTable),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInterfaceTable {
    pub name: String,
    #[serde(default)]
    pub vlan: Option<u16>,
    #[serde(default)]
    pub tagged: bool,
    #[serde(default)]
    pub cidr: Option<String>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
}

/// The `[blocking]` table as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlocking {
    #[serde(default = "defaults::repeat_secs")]
    pub repeat_secs: f64,
    #[serde(default = "defaults::restore_replies")]
    pub restore_replies: u32,
    #[serde(default = "defaults::nft")]
    pub nft: String,
}

impl Default for RawBlocking {
    fn default() -> Self {
        Self {
            repeat_secs: defaults::repeat_secs(),
            restore_replies: defaults::restore_replies(),
            nft: defaults::nft(),
        }
    }
}

/// The `[power]` table as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPower {
    #[serde(default = "defaults::power_timeout_secs")]
    pub timeout_secs: f64,
    #[serde(default = "defaults::power_retries")]
    pub retries: u32,
    #[serde(default = "defaults::settle_secs")]
    pub settle_secs: f64,
}

impl Default for RawPower {
    fn default() -> Self {
        Self {
            timeout_secs: defaults::power_timeout_secs(),
            retries: defaults::power_retries(),
            settle_secs: defaults::settle_secs(),
        }
    }
}

/// The `[geoip]` table as written.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGeoIp {
    /// A MaxMind DB City database (GeoLite2-City, DB-IP City Lite); absent or empty: none.
    #[serde(default)]
    pub database: Option<PathBuf>,
}

/// The `[update]` table as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdate {
    /// The folder of the release public keys (`*.pub`) this agent trusts.
    #[serde(default = "defaults::release_keys")]
    pub release_keys: PathBuf,
    /// Bytes per second for downloading an update; 0: no limit.
    #[serde(default)]
    pub max_download_rate: u64,
}

impl Default for RawUpdate {
    fn default() -> Self {
        Self {
            release_keys: defaults::release_keys(),
            max_download_rate: 0,
        }
    }
}

/// The validated `[update]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConfig {
    pub release_keys: PathBuf,
    /// Bytes per second; 0: no limit.
    pub max_download_rate: u64,
}

impl Default for UpdateConfig {
    fn default() -> Self {
        RawUpdate::default().validate().unwrap_or(UpdateConfig {
            release_keys: defaults::release_keys(),
            max_download_rate: 0,
        })
    }
}

impl RawUpdate {
    fn validate(self) -> Result<UpdateConfig, String> {
        if self.release_keys.as_os_str().is_empty() {
            return Err(
                "update.release_keys is empty: name the folder of the trusted release keys (default /etc/outpost/release-keys)".to_owned(),
            );
        }
        if self.max_download_rate != 0 && self.max_download_rate < 1024 {
            return Err(format!(
                "update.max_download_rate = {}: at least 1024 bytes a second, or 0 for no limit",
                self.max_download_rate
            ));
        }
        Ok(UpdateConfig {
            release_keys: self.release_keys,
            max_download_rate: self.max_download_rate,
        })
    }
}

/// The `[discovery]` table as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    #[serde(default = "defaults::sweep_interval_secs")]
    pub sweep_interval_secs: f64,
    #[serde(default)]
    pub rate_pps: u32,
    #[serde(default = "defaults::retries")]
    pub retries: u32,
    #[serde(default = "defaults::probe_interval_secs")]
    pub probe_interval_secs: f64,
    #[serde(default = "defaults::offline_after_missed")]
    pub offline_after_missed: u32,
    #[serde(default = "defaults::yes")]
    pub mdns: bool,
    #[serde(default = "defaults::yes")]
    pub ssdp: bool,
    #[serde(default = "defaults::ssdp_interval_secs")]
    pub ssdp_interval_secs: f64,
    #[serde(default = "defaults::yes")]
    pub reverse_dns: bool,
    #[serde(default)]
    pub dns_server: String,
    #[serde(default = "defaults::report_interval_secs")]
    pub report_interval_secs: f64,
    #[serde(default = "defaults::interface_retry_secs")]
    pub interface_retry_secs: f64,
}

impl Default for RawDiscovery {
    fn default() -> Self {
        Self {
            enabled: true,
            sweep_interval_secs: defaults::sweep_interval_secs(),
            rate_pps: 0,
            retries: defaults::retries(),
            probe_interval_secs: defaults::probe_interval_secs(),
            offline_after_missed: defaults::offline_after_missed(),
            mdns: true,
            ssdp: true,
            ssdp_interval_secs: defaults::ssdp_interval_secs(),
            reverse_dns: true,
            dns_server: String::new(),
            report_interval_secs: defaults::report_interval_secs(),
            interface_retry_secs: defaults::interface_retry_secs(),
        }
    }
}

/// The file as written: plain numbers, checked by [`RawConfig::validate`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub platform: Option<Platform>,
    /// Not set: the interface of the default route; `[]`: none.
    #[serde(default)]
    pub interfaces: Option<Vec<RawInterface>>,
    #[serde(default)]
    pub discovery: RawDiscovery,
    #[serde(default)]
    pub blocking: RawBlocking,
    #[serde(default)]
    pub power: RawPower,
    #[serde(default)]
    pub geoip: RawGeoIp,
    #[serde(default)]
    pub update: RawUpdate,
    /// Settings the portal may not change (`settings::PATHS`).
    #[serde(default)]
    pub pinned: Vec<String>,
    #[serde(default = "defaults::heartbeat_secs")]
    pub heartbeat_secs: f64,
    #[serde(default = "defaults::outbox_max_bytes")]
    pub outbox_max_bytes: u64,
    #[serde(default = "defaults::reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    #[serde(default = "defaults::reconnect_max_secs")]
    pub reconnect_max_secs: f64,
    #[serde(default = "defaults::disabled_poll_secs")]
    pub disabled_poll_secs: f64,
    #[serde(default = "defaults::log_format")]
    pub log_format: LogFormat,
}

mod defaults {
    use super::LogFormat;
    pub fn release_keys() -> std::path::PathBuf {
        outpost_cloud_link::release::DEFAULT_KEYS_DIR.into()
    }
    pub fn heartbeat_secs() -> f64 {
        30.0
    }
    pub fn outbox_max_bytes() -> u64 {
        8 * 1024 * 1024
    }
    pub fn reconnect_initial_ms() -> u64 {
        500
    }
    pub fn reconnect_max_secs() -> f64 {
        60.0
    }
    pub fn disabled_poll_secs() -> f64 {
        60.0
    }
    pub fn log_format() -> LogFormat {
        LogFormat::Text
    }
    pub fn yes() -> bool {
        true
    }
    pub fn sweep_interval_secs() -> f64 {
        300.0
    }
    pub fn retries() -> u32 {
        2
    }
    pub fn probe_interval_secs() -> f64 {
        30.0
    }
    pub fn offline_after_missed() -> u32 {
        3
    }
    pub fn ssdp_interval_secs() -> f64 {
        600.0
    }
    pub fn report_interval_secs() -> f64 {
        2.0
    }
    pub fn interface_retry_secs() -> f64 {
        30.0
    }
    pub fn repeat_secs() -> f64 {
        2.0
    }
    pub fn restore_replies() -> u32 {
        5
    }
    pub fn nft() -> String {
        "nft".to_owned()
    }
    pub fn power_timeout_secs() -> f64 {
        3.0
    }
    pub fn power_retries() -> u32 {
        1
    }
    pub fn settle_secs() -> f64 {
        5.0
    }
}

/// One interface the agent watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub name: String,
    /// The VLAN id of this segment; labels every device seen on it.
    pub vlan: Option<u16>,
    /// A tagged VLAN (a sub-interface of a trunk port) rather than the native LAN.
    pub tagged: bool,
    /// What to sweep instead of the interface's own network (a CIDR of at most /16, or a range `A-B`).
    pub cidr: Option<Targets>,
    /// The segment's IPv4 gateway (box blocking); `None`: the gateway of the default route when that
    /// route leaves through this interface.
    pub gateway: Option<Ipv4Addr>,
}

impl InterfaceConfig {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            vlan: None,
            tagged: false,
            cidr: None,
            gateway: None,
        }
    }
}

/// The validated `[blocking]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockingConfig {
    /// Box: how often the poisoned ARP replies are sent again while a device is blocked.
    pub repeat: Duration,
    /// Box: how many true ARP replies go to each side when a block ends.
    pub restore_replies: u32,
    /// Router: the `nft` program.
    pub nft: String,
}

impl Default for BlockingConfig {
    fn default() -> Self {
        Self {
            repeat: Duration::from_secs(2),
            restore_replies: 5,
            nft: defaults::nft(),
        }
    }
}

/// The validated `[power]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerConfig {
    /// How long one SNMP or HTTP request waits for an answer.
    pub timeout: Duration,
    /// Extra tries of a request that timed out.
    pub retries: u32,
    /// How long an outlet may take to show the state it was switched to.
    pub settle: Duration,
}

impl Default for PowerConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            retries: 1,
            settle: Duration::from_secs(5),
        }
    }
}

impl RawBlocking {
    fn validate(self) -> Result<BlockingConfig, String> {
        if self.restore_replies == 0 || self.restore_replies > 100 {
            return Err(format!(
                "blocking.restore_replies = {}: between 1 and 100",
                self.restore_replies
            ));
        }
        if self.nft.trim().is_empty() {
            return Err("blocking.nft is empty: name the nft program (default \"nft\")".into());
        }
        Ok(BlockingConfig {
            repeat: seconds("blocking.repeat_secs", self.repeat_secs, 100)?,
            restore_replies: self.restore_replies,
            nft: self.nft,
        })
    }
}

impl RawPower {
    fn validate(self) -> Result<PowerConfig, String> {
        if self.retries > 10 {
            return Err(format!("power.retries = {}: at most 10", self.retries));
        }
        Ok(PowerConfig {
            timeout: seconds("power.timeout_secs", self.timeout_secs, 50)?,
            retries: self.retries,
            settle: seconds("power.settle_secs", self.settle_secs, 0)?,
        })
    }
}

/// The validated `[geoip]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GeoIpConfig {
    /// The City database the agent looks its public address up in; `None`: the portal does it.
    pub database: Option<PathBuf>,
}

impl RawGeoIp {
    fn validate(self) -> GeoIpConfig {
        GeoIpConfig {
            database: self.database.filter(|p| !p.as_os_str().is_empty()),
        }
    }
}

/// The validated `[discovery]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscoveryConfig {
    pub enabled: bool,
    pub sweep_interval: Duration,
    /// ARP requests per second; `None`: automatic (scaled to the size of the network).
    pub rate_pps: Option<u32>,
    pub retries: u32,
    pub probe_interval: Duration,
    pub offline_after_missed: u32,
    pub mdns: bool,
    pub ssdp: bool,
    pub ssdp_interval: Duration,
    pub reverse_dns: bool,
    /// `None`: the system resolver (/etc/resolv.conf).
    pub dns_server: Option<SocketAddr>,
    pub report_interval: Duration,
    pub interface_retry: Duration,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sweep_interval: Duration::from_secs(300),
            rate_pps: None,
            retries: 2,
            probe_interval: Duration::from_secs(30),
            offline_after_missed: 3,
            mdns: true,
            ssdp: true,
            ssdp_interval: Duration::from_secs(600),
            reverse_dns: true,
            dns_server: None,
            report_interval: Duration::from_secs(2),
            interface_retry: Duration::from_secs(30),
        }
    }
}

impl RawDiscovery {
    fn validate(self) -> Result<DiscoveryConfig, String> {
        let k = |key: &str| format!("discovery.{key}");
        if self.retries > 10 {
            return Err(format!("{} = {}: at most 10", k("retries"), self.retries));
        }
        if self.offline_after_missed == 0 || self.offline_after_missed > 100 {
            return Err(format!(
                "{} = {}: between 1 and 100 missed probes",
                k("offline_after_missed"),
                self.offline_after_missed
            ));
        }
        if self.rate_pps > 1_000_000 {
            return Err(format!(
                "{} = {}: at most 1000000 (0 means automatic)",
                k("rate_pps"),
                self.rate_pps
            ));
        }
        let dns_server = match self.dns_server.trim() {
            "" => None,
            text => Some(parse_dns_server(text).ok_or_else(|| {
                format!(
                    "{} = {text:?}: expected an address like \"192.168.1.1\" or \"192.168.1.1:53\" (empty: the system resolver)",
                    k("dns_server")
                )
            })?),
        };
        Ok(DiscoveryConfig {
            enabled: self.enabled,
            sweep_interval: seconds(&k("sweep_interval_secs"), self.sweep_interval_secs, 500)?,
            rate_pps: (self.rate_pps > 0).then_some(self.rate_pps),
            retries: self.retries,
            probe_interval: seconds(&k("probe_interval_secs"), self.probe_interval_secs, 100)?,
            offline_after_missed: self.offline_after_missed,
            mdns: self.mdns,
            ssdp: self.ssdp,
            ssdp_interval: seconds(&k("ssdp_interval_secs"), self.ssdp_interval_secs, 500)?,
            reverse_dns: self.reverse_dns,
            dns_server,
            report_interval: seconds(&k("report_interval_secs"), self.report_interval_secs, 50)?,
            interface_retry: seconds(&k("interface_retry_secs"), self.interface_retry_secs, 100)?,
        })
    }
}

fn parse_dns_server(text: &str) -> Option<SocketAddr> {
    text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the agent runs (decides how it blocks); `None`: what `activate --platform` said.
    pub platform: Option<Platform>,
    /// Interfaces the agent watches. `None` (the key not set): the interface of the default route;
    /// an empty list (`interfaces = []`): none, the agent only keeps its link.
    pub interfaces: Option<Vec<InterfaceConfig>>,
    pub discovery: DiscoveryConfig,
    pub blocking: BlockingConfig,
    pub power: PowerConfig,
    pub geoip: GeoIpConfig,
    pub update: UpdateConfig,
    /// Settings the portal may not change (paths of `outpost_cloud_link::settings::PATHS`).
    pub pinned: Vec<String>,
    pub heartbeat: Duration,
    pub outbox_max_bytes: u64,
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
    pub disabled_poll: Duration,
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            platform: None,
            interfaces: None,
            discovery: DiscoveryConfig::default(),
            blocking: BlockingConfig::default(),
            power: PowerConfig::default(),
            geoip: GeoIpConfig::default(),
            update: UpdateConfig::default(),
            pinned: Vec::new(),
            heartbeat: Duration::from_secs(30),
            outbox_max_bytes: defaults::outbox_max_bytes(),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(60),
            disabled_poll: Duration::from_secs(60),
            log_format: LogFormat::Text,
        }
    }
}

/// A positive, finite number of seconds of at least `min_ms` milliseconds.
fn seconds(key: &str, value: f64, min_ms: u64) -> Result<Duration, String> {
    if !value.is_finite() || value <= 0.0 {
        return Err(format!(
            "{key} = {value}: must be a positive number of seconds"
        ));
    }
    if value > 86_400.0 * 30.0 {
        return Err(format!("{key} = {value}: at most 30 days (2592000)"));
    }
    let d = Duration::from_secs_f64(value);
    if d < Duration::from_millis(min_ms) {
        return Err(format!(
            "{key} = {value}: at least {} s",
            min_ms as f64 / 1000.0
        ));
    }
    Ok(d)
}

/// Checks the `interfaces` list: each entry, a name listed twice only with the same settings (kept once),
/// and one interface per VLAN id.
fn interface_list(raw: Vec<RawInterface>) -> Result<Vec<InterfaceConfig>, String> {
    let mut interfaces: Vec<InterfaceConfig> = Vec::with_capacity(raw.len());
    for raw in raw {
        let entry = interface_entry(raw)?;
        if let Some(same) = interfaces.iter().find(|i| i.name == entry.name) {
            if *same != entry {
                return Err(format!(
                    "interfaces: {:?} is listed twice with different settings",
                    entry.name
                ));
            }
            continue;
        }
        if let Some(vlan) = entry.vlan {
            if let Some(other) = interfaces.iter().find(|i| i.vlan == Some(vlan)) {
                return Err(format!(
                    "interfaces: {:?} and {:?} both say vlan = {vlan}; each VLAN is one segment",
                    other.name, entry.name
                ));
            }
        }
        interfaces.push(entry);
    }
    Ok(interfaces)
}

/// Checks one `interfaces` entry.
fn interface_entry(raw: RawInterface) -> Result<InterfaceConfig, String> {
    let table = match raw {
        RawInterface::Name(name) => RawInterfaceTable {
            name,
            vlan: None,
            tagged: false,
            cidr: None,
            gateway: None,
        },
        RawInterface::Table(t) => t,
    };
    let name = table.name;
    // Linux interface names: 1..=15 bytes, no '/', no whitespace.
    if name.is_empty()
        || name.len() > 15
        || name.contains('/')
        || name.chars().any(char::is_whitespace)
    {
        return Err(format!(
            "interfaces: {name:?} is not a network interface name (1-15 characters, no '/' or spaces)"
        ));
    }
    if let Some(vlan) = table.vlan {
        if !(1..=4094).contains(&vlan) {
            return Err(format!(
                "interfaces: {name:?} has vlan = {vlan}: a VLAN id is between 1 and 4094"
            ));
        }
    }
    if table.tagged && table.vlan.is_none() {
        return Err(format!(
            "interfaces: {name:?} is tagged = true without a vlan id: say which VLAN it carries"
        ));
    }
    let cidr = match table.cidr {
        None => None,
        Some(text) => Some(
            text.parse::<Targets>()
                .map_err(|e| format!("interfaces: {name:?} cidr = {text:?}: {e}"))?,
        ),
    };
    Ok(InterfaceConfig {
        name,
        vlan: table.vlan,
        tagged: table.tagged,
        cidr,
        gateway: table.gateway,
    })
}

impl RawConfig {
    /// Parses TOML text (`path` only names the source in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks every value and turns it into what the daemon uses.
    pub fn validate(self, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let heartbeat = seconds("heartbeat_secs", self.heartbeat_secs, 50).map_err(invalid)?;
        let reconnect_max =
            seconds("reconnect_max_secs", self.reconnect_max_secs, 10).map_err(invalid)?;
        let disabled_poll =
            seconds("disabled_poll_secs", self.disabled_poll_secs, 50).map_err(invalid)?;
        if self.reconnect_initial_ms == 0 {
            return Err(invalid(
                "reconnect_initial_ms = 0: must be at least 1".to_owned(),
            ));
        }
        let reconnect_initial = Duration::from_millis(self.reconnect_initial_ms);
        if reconnect_initial > reconnect_max {
            return Err(invalid(format!(
                "reconnect_initial_ms ({} ms) is larger than reconnect_max_secs ({} s)",
                self.reconnect_initial_ms, self.reconnect_max_secs
            )));
        }
        if self.outbox_max_bytes < MIN_OUTBOX_BYTES {
            return Err(invalid(format!(
                "outbox_max_bytes = {}: at least {MIN_OUTBOX_BYTES}",
                self.outbox_max_bytes
            )));
        }
        let interfaces = match self.interfaces {
            None => None,
            Some(list) => Some(interface_list(list).map_err(invalid)?),
        };
        let discovery = self.discovery.validate().map_err(invalid)?;
        let blocking = self.blocking.validate().map_err(invalid)?;
        let power = self.power.validate().map_err(invalid)?;
        let update = self.update.validate().map_err(invalid)?;
        let paths = outpost_cloud_link::settings::PATHS;
        for p in &self.pinned {
            if !paths.contains(&p.as_str()) {
                return Err(invalid(format!(
                    "pinned: {p:?} is not a setting the portal manages; one of {}",
                    paths.join(", ")
                )));
            }
        }
        Ok(Config {
            platform: self.platform,
            interfaces,
            discovery,
            blocking,
            power,
            geoip: self.geoip.validate(),
            update,
            pinned: self.pinned,
            heartbeat,
            outbox_max_bytes: self.outbox_max_bytes,
            reconnect_initial,
            reconnect_max,
            disabled_poll,
            log_format: self.log_format,
        })
    }
}

impl Config {
    /// Parses and validates TOML text.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        RawConfig::parse(text, path)?.validate(path)
    }

    /// Loads `explicit` (which must exist) or else the default path (whose absence means defaults).
    pub fn load(explicit: Option<&Path>) -> Result<Self, ConfigError> {
        crate::settings::LocalFile::load(explicit)?.config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(text, Path::new("test.toml"))
    }

    #[test]
    fn the_documented_default_file_is_the_default() {
        assert_eq!(parse(DEFAULT_TOML).unwrap(), Config::default());
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn fractional_seconds_for_tests() {
        let c = parse("heartbeat_secs = 0.2\ndisabled_poll_secs = 1\nreconnect_initial_ms = 50\nreconnect_max_secs = 0.5\ninterfaces = [\"lan0\", \"lan0\", \"br-lan\"]\nlog_format = \"json\"\n[discovery]\nprobe_interval_secs = 0.2\n").unwrap();
        assert_eq!(c.discovery.probe_interval, Duration::from_millis(200));
        assert_eq!(c.heartbeat, Duration::from_millis(200));
        assert_eq!(c.disabled_poll, Duration::from_secs(1));
        assert_eq!(c.reconnect_initial, Duration::from_millis(50));
        assert_eq!(c.reconnect_max, Duration::from_millis(500));
        assert_eq!(
            c.interfaces,
            Some(vec![
                InterfaceConfig::named("lan0"),
                InterfaceConfig::named("br-lan")
            ])
        );
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn interfaces_as_tables_with_vlans() {
        let c = parse(
            "[[interfaces]]\nname = \"lan0\"\nvlan = 10\ncidr = \"192.168.10.0/24\"\n\
             [[interfaces]]\nname = \"trunk.20\"\nvlan = 20\ntagged = true\n\
             [discovery]\nrate_pps = 5000\ndns_server = \"10.0.0.53\"\nmdns = false\n",
        )
        .unwrap();
        let listed = c.interfaces.as_deref().unwrap_or_default();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].vlan, Some(10));
        assert_eq!(
            listed[0].cidr.map(|t| t.to_string()).as_deref(),
            Some("192.168.10.0/24")
        );
        assert!(listed[1].tagged && !listed[0].tagged);
        assert_eq!(c.discovery.rate_pps, Some(5000));
        assert_eq!(
            c.discovery.dns_server,
            Some("10.0.0.53:53".parse().unwrap())
        );
        assert!(!c.discovery.mdns && c.discovery.ssdp);
        let inline = parse("interfaces = [\"eth1\", {name = \"eth2\", vlan = 30}]").unwrap();
        assert_eq!(
            inline.interfaces.as_deref().unwrap_or_default()[1].vlan,
            Some(30)
        );
    }

    #[test]
    fn no_interfaces_key_means_the_default_route_and_an_empty_list_means_none() {
        assert_eq!(parse("").unwrap().interfaces, None);
        assert_eq!(
            parse("interfaces = []").unwrap().interfaces,
            Some(Vec::new())
        );
    }

    #[test]
    fn the_geoip_database_is_optional() {
        let c = parse("[geoip]\ndatabase = \"/var/lib/GeoIP/GeoLite2-City.mmdb\"\n").unwrap();
        assert_eq!(
            c.geoip.database.as_deref(),
            Some(Path::new("/var/lib/GeoIP/GeoLite2-City.mmdb"))
        );
        assert_eq!(
            parse("[geoip]\ndatabase = \"\"").unwrap().geoip.database,
            None
        );
        assert_eq!(parse("[geoip]").unwrap().geoip.database, None);
        let err = parse("[geoip]\npath = \"x\"").unwrap_err().to_string();
        assert!(err.contains("unknown field `path`"), "{err}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse("heartbeat = 3").unwrap_err().to_string();
        assert!(err.contains("unknown field `heartbeat`"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, key) in [
            ("heartbeat_secs = 0", "heartbeat_secs"),
            ("heartbeat_secs = -1", "heartbeat_secs"),
            ("heartbeat_secs = nan", "heartbeat_secs"),
            ("disabled_poll_secs = 0.001", "disabled_poll_secs"),
            ("outbox_max_bytes = 10", "outbox_max_bytes"),
            ("reconnect_initial_ms = 0", "reconnect_initial_ms"),
            (
                "reconnect_initial_ms = 5000\nreconnect_max_secs = 1",
                "reconnect_initial_ms",
            ),
            ("interfaces = [\"a/b\"]", "interfaces"),
            ("interfaces = [\"\"]", "interfaces"),
            ("[[interfaces]]\nname = \"lan0\"\nvlan = 0", "vlan = 0"),
            ("[[interfaces]]\nname = \"lan0\"\ntagged = true", "tagged"),
            (
                "[[interfaces]]\nname = \"lan0\"\ncidr = \"10.0.0.0/8\"",
                "cidr",
            ),
            (
                "[[interfaces]]\nname = \"a\"\nvlan = 5\n[[interfaces]]\nname = \"b\"\nvlan = 5",
                "both say vlan = 5",
            ),
            (
                "interfaces = [\"a\", {name = \"a\", vlan = 3}]",
                "listed twice",
            ),
            (
                "[discovery]\noffline_after_missed = 0",
                "discovery.offline_after_missed",
            ),
            ("[discovery]\nretries = 11", "discovery.retries"),
            (
                "[discovery]\ndns_server = \"resolver\"",
                "discovery.dns_server",
            ),
            (
                "[discovery]\nprobe_interval_secs = 0",
                "discovery.probe_interval_secs",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{text}: {err}");
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
        assert!(matches!(
            parse("log_format = \"xml\""),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            parse("heartbeat_secs = \"30\""),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            Config::load(Some(&missing)),
            Err(ConfigError::Read { .. })
        ));
        let present = dir.path().join("agent.toml");
        std::fs::write(&present, "heartbeat_secs = 5").unwrap();
        assert_eq!(
            Config::load(Some(&present)).unwrap().heartbeat,
            Duration::from_secs(5)
        );
    }
}
