//! A site's configuration, as the technician keeps it per agent: the site owner's contact, the Customer ID
//! and Contract ID, the PSA/ticketing mapping, the physical address and map pin, and a note. Pure: the raw
//! [`SiteInput`] (what a request or a form sends) goes through [`validate`] to a [`SiteConfig`] (what is
//! stored and shown), or to every [`FieldError`] at once, each naming its field in words.
//!
//! Rules: every field is optional and blank text counts as absent; single-line text is trimmed and may not
//! hold control characters; the address and the note may hold newlines (CRLF is stored as LF); lengths are
//! counted in characters ([`MAX_NAME`], [`MAX_ID`], [`MAX_ORG_ID`], [`MAX_ADDRESS`], [`MAX_NOTE`],
//! [`MAX_EMAIL`]); the email is checked by the `email_address` crate (RFC 5321/5322, a domain with a dot,
//! no display name or IP literal); at most [`MAX_PHONES`] phone numbers, each 5–20 digits written with
//! `+ - . ( )` and spaces, `+` only in front, and an optional extension (`x123`, `ext 123`, `ext. 123`,
//! `extension 123`); a map pin needs both latitude (−90..90) and longitude (−180..180); a PSA
//! organization id needs its PSA system.

use std::fmt;
use std::str::FromStr;

use email_address::{EmailAddress, Options};
use serde::{Deserialize, Serialize};

/// Longest first or last name.
pub const MAX_NAME: usize = 100;
/// Longest Customer ID or Contract ID.
pub const MAX_ID: usize = 100;
/// Longest PSA organization/site id.
pub const MAX_ORG_ID: usize = 100;
/// Longest address.
pub const MAX_ADDRESS: usize = 500;
/// Longest note.
pub const MAX_NOTE: usize = 4000;
/// Longest email address (RFC 5321's path limit).
pub const MAX_EMAIL: usize = 254;
/// Most phone numbers per contact.
pub const MAX_PHONES: usize = 5;
/// Digits a phone number (without its extension) holds.
pub const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 5..=20;
/// Digits an extension holds.
const EXTENSION_DIGITS: std::ops::RangeInclusive<usize> = 1..=6;

/// The PSA or ticketing system a site is mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PsaSystem {
    ConnectwiseManage,
    DattoAutotask,
    Syncro,
    Zendesk,
    Freshservice,
    Freshdesk,
    Other,
}

impl PsaSystem {
    pub const ALL: [PsaSystem; 7] = [
        PsaSystem::ConnectwiseManage,
        PsaSystem::DattoAutotask,
        PsaSystem::Syncro,
        PsaSystem::Zendesk,
        PsaSystem::Freshservice,
        PsaSystem::Freshdesk,
        PsaSystem::Other,
    ];

    /// The wire and stored name (`connectwise_manage`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            PsaSystem::ConnectwiseManage => "connectwise_manage",
            PsaSystem::DattoAutotask => "datto_autotask",
            PsaSystem::Syncro => "syncro",
            PsaSystem::Zendesk => "zendesk",
            PsaSystem::Freshservice => "freshservice",
            PsaSystem::Freshdesk => "freshdesk",
            PsaSystem::Other => "other",
        }
    }

    /// The name people know it by.
    pub fn label(self) -> &'static str {
        match self {
            PsaSystem::ConnectwiseManage => "ConnectWise Manage",
            PsaSystem::DattoAutotask => "Datto Autotask",
            PsaSystem::Syncro => "Syncro",
            PsaSystem::Zendesk => "Zendesk",
            PsaSystem::Freshservice => "Freshservice",
            PsaSystem::Freshdesk => "Freshdesk",
            PsaSystem::Other => "Other",
        }
    }

    /// The accepted names, for messages.
    pub fn names() -> String {
        Self::ALL.map(PsaSystem::as_str).join(", ")
    }
}

impl fmt::Display for PsaSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Not a PSA system name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PSA system {name:?}: expected one of {names}", name = .0, names = PsaSystem::names())]
pub struct UnknownPsaSystem(pub String);

impl FromStr for PsaSystem {
    type Err = UnknownPsaSystem;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PsaSystem::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPsaSystem(s.to_owned()))
    }
}

/// The site owner's contact.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phones: Vec<String>,
}

/// The site's organization in a PSA/ticketing system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Psa {
    pub system: PsaSystem,
    pub org_id: Option<String>,
}

/// A point on the map set by hand (overrides the address and the agent's GeoIP location).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pin {
    pub latitude: f64,
    pub longitude: f64,
}

/// A site's configuration, validated: what is stored and what the API answers. The default is the
/// configuration of a site nobody has set up yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteConfig {
    pub contact: Contact,
    pub customer_id: Option<String>,
    pub contract_id: Option<String>,
    pub psa: Option<Psa>,
    /// Free text, may span lines.
    pub address: Option<String>,
    pub pin: Option<Pin>,
    /// Free text, may span lines.
    pub note: Option<String>,
}

impl SiteConfig {
    /// The names of the fields (`contact.email`, `psa.system`, `pin`, …) that differ between `self` and
    /// `other`: what a history line says changed, without the values.
    pub fn changed_fields(&self, other: &SiteConfig) -> Vec<&'static str> {
        let psa_system = |s: &SiteConfig| s.psa.as_ref().map(|p| p.system);
        let psa_org = |s: &SiteConfig| s.psa.as_ref().and_then(|p| p.org_id.clone());
        let checks = [
            ("contact.email", self.contact.email != other.contact.email),
            (
                "contact.first_name",
                self.contact.first_name != other.contact.first_name,
            ),
            (
                "contact.last_name",
                self.contact.last_name != other.contact.last_name,
            ),
            (
                "contact.phones",
                self.contact.phones != other.contact.phones,
            ),
            ("customer_id", self.customer_id != other.customer_id),
            ("contract_id", self.contract_id != other.contract_id),
            ("psa.system", psa_system(self) != psa_system(other)),
            ("psa.org_id", psa_org(self) != psa_org(other)),
            ("address", self.address != other.address),
            ("pin", self.pin != other.pin),
            ("note", self.note != other.note),
        ];
        checks
            .into_iter()
            .filter_map(|(name, changed)| changed.then_some(name))
            .collect()
    }
}

/// The contact as sent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub phones: Vec<String>,
}

/// The PSA mapping as sent: the system by name, so an unknown one is a field error.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PsaInput {
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub org_id: Option<String>,
}

/// The map pin as sent: either coordinate may be missing, which [`validate`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinInput {
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
}

/// A site configuration as a request or a form sends it (the whole document; absent means empty). A
/// [`SiteConfig`] serialized to JSON reads back as an equal input.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteInput {
    #[serde(default)]
    pub contact: Option<ContactInput>,
    #[serde(default)]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub contract_id: Option<String>,
    #[serde(default)]
    pub psa: Option<PsaInput>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub pin: Option<PinInput>,
    #[serde(default)]
    pub note: Option<String>,
}

/// One bad field: its path in the document (`contact.email`, `contact.phones[1]`, `pin.latitude`) and a
/// sentence naming it that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A site configuration that did not pass [`validate`]: every bad field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the site configuration has {} invalid field(s): {}. Correct them and send the whole document again", .0.len(), join(.0))]
pub struct InvalidSite(pub Vec<FieldError>);

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join(". ")
}

/// Collects field errors while validating.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }
}

/// Checks `input` and returns the configuration to store, or every bad field.
pub fn validate(input: &SiteInput) -> Result<SiteConfig, Vec<FieldError>> {
    let mut errors = Errors::default();
    let contact = input.contact.clone().unwrap_or_default();
    let email = line(
        &mut errors,
        "contact.email",
        "The contact's email",
        &contact.email,
        MAX_EMAIL,
    )
    .filter(|email| check_email(&mut errors, email));
    let first_name = line(
        &mut errors,
        "contact.first_name",
        "The contact's first name",
        &contact.first_name,
        MAX_NAME,
    );
    let last_name = line(
        &mut errors,
        "contact.last_name",
        "The contact's last name",
        &contact.last_name,
        MAX_NAME,
    );
    let phones = phones(&mut errors, &contact.phones);
    let customer_id = line(
        &mut errors,
        "customer_id",
        "The Customer ID",
        &input.customer_id,
        MAX_ID,
    );
    let contract_id = line(
        &mut errors,
        "contract_id",
        "The Contract ID",
        &input.contract_id,
        MAX_ID,
    );
    let psa = psa(&mut errors, input.psa.as_ref());
    let address = text(
        &mut errors,
        "address",
        "The address",
        &input.address,
        MAX_ADDRESS,
    );
    let pin = pin(&mut errors, input.pin.as_ref());
    let note = text(&mut errors, "note", "The note", &input.note, MAX_NOTE);
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    Ok(SiteConfig {
        contact: Contact {
            email,
            first_name,
            last_name,
            phones,
        },
        customer_id,
        contract_id,
        psa,
        address,
        pin,
        note,
    })
}

/// A single-line text: trimmed, blank is absent, no control characters, at most `max` characters.
fn line(
    errors: &mut Errors,
    field: &str,
    label: &str,
    raw: &Option<String>,
    max: usize,
) -> Option<String> {
    let value = raw.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
    let mut ok = true;
    if value.chars().any(char::is_control) {
        errors.add(
            field,
            format!(
                "{label} contains control characters (a tab or a line break); type it on one line"
            ),
        );
        ok = false;
    }
    let count = value.chars().count();
    if count > max {
        errors.add(
            field,
            format!("{label} is {count} characters long; shorten it to at most {max}"),
        );
        ok = false;
    }
    ok.then(|| value.to_owned())
}

/// A multi-line text: CRLF and lone CR become LF, trimmed, blank is absent, no control characters other
/// than line breaks, at most `max` characters.
fn text(
    errors: &mut Errors,
    field: &str,
    label: &str,
    raw: &Option<String>,
    max: usize,
) -> Option<String> {
    let normalized = raw.as_deref()?.replace("\r\n", "\n").replace('\r', "\n");
    let value = normalized.trim();
    if value.is_empty() {
        return None;
    }
    let mut ok = true;
    if value.chars().any(|c| c.is_control() && c != '\n') {
        errors.add(
            field,
            format!("{label} contains control characters such as tabs; use plain text and line breaks only"),
        );
        ok = false;
    }
    let count = value.chars().count();
    if count > max {
        errors.add(
            field,
            format!("{label} is {count} characters long; shorten it to at most {max}"),
        );
        ok = false;
    }
    ok.then(|| value.to_owned())
}

fn check_email(errors: &mut Errors, email: &str) -> bool {
    let options = Options::default()
        .with_required_tld()
        .without_domain_literal()
        .without_display_text();
    match EmailAddress::parse_with_options(email, options) {
        Ok(_) => true,
        Err(e) => {
            use email_address::Error as E;
            let why = match e {
                E::MissingSeparator => "has no @",
                E::LocalPartEmpty => "has nothing before the @",
                E::DomainEmpty => "has nothing after the @",
                E::LocalPartTooLong => "has more than 64 characters before the @",
                E::DomainTooFew => "has no domain with a dot after the @ (like example.com)",
                E::UnsupportedDomainLiteral => "uses an IP address instead of a domain",
                E::UnsupportedDisplayName | E::MissingDisplayName | E::MissingEndBracket => {
                    "holds a name or angle brackets besides the address"
                }
                _ => "is not a valid email address",
            };
            errors.add(
                "contact.email",
                format!(
                    "The contact's email {email:?} {why}; give an address like name@example.com"
                ),
            );
            false
        }
    }
}

/// The phone numbers, trimmed, blank ones dropped.
fn phones(errors: &mut Errors, raw: &[String]) -> Vec<String> {
    let given: Vec<&str> = raw
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .collect();
    if given.len() > MAX_PHONES {
        errors.add(
            "contact.phones",
            format!(
                "The contact has {} phone numbers; keep at most {MAX_PHONES}",
                given.len()
            ),
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, phone) in given.into_iter().enumerate() {
        match check_phone(phone) {
            Ok(()) => out.push(phone.to_owned()),
            Err(why) => errors.add(
                format!("contact.phones[{i}]"),
                format!("Phone number {} ({phone:?}) {why}", i + 1),
            ),
        }
    }
    out
}

/// Why a trimmed phone number is not one.
pub fn check_phone(phone: &str) -> Result<(), String> {
    if phone.chars().any(char::is_control) {
        return Err("contains control characters; type it on one line".into());
    }
    let chars = phone.chars().count();
    if chars > 40 {
        return Err(format!(
            "is {chars} characters long; shorten it to at most 40"
        ));
    }
    let (main, extension) = match phone.find(|c: char| c.is_alphabetic()) {
        Some(at) => (&phone[..at], Some(&phone[at..])),
        None => (phone, None),
    };
    if let Some(ext) = extension {
        if !is_extension(ext) {
            return Err(
                "has letters that are not an extension; write an extension as x123 or ext 123 at the end"
                    .into(),
            );
        }
    }
    if let Some(bad) = main
        .chars()
        .find(|c| !(c.is_ascii_digit() || " +-.()".contains(*c)))
    {
        return Err(format!(
            "contains {bad:?}; use digits, spaces and + - . ( ) only, with an optional extension like x123"
        ));
    }
    if main.trim_start().chars().skip(1).any(|c| c == '+') || main.matches('+').count() > 1 {
        return Err("has a + that is not in front; put + only before the country code".into());
    }
    let digits = main.chars().filter(char::is_ascii_digit).count();
    if !PHONE_DIGITS.contains(&digits) {
        return Err(format!(
            "has {digits} digits; a phone number has {} to {} digits (the extension not counted)",
            PHONE_DIGITS.start(),
            PHONE_DIGITS.end()
        ));
    }
    Ok(())
}

/// `x123`, `ext 123`, `ext. 123`, `extension 123` (any case, spaces allowed before the digits).
fn is_extension(raw: &str) -> bool {
    let lower = raw.to_ascii_lowercase();
    let rest = ["extension", "ext.", "ext", "x"]
        .iter()
        .find_map(|prefix| lower.strip_prefix(prefix));
    let Some(rest) = rest else {
        return false;
    };
    let digits = rest.trim_start();
    EXTENSION_DIGITS.contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())
}

fn psa(errors: &mut Errors, raw: Option<&PsaInput>) -> Option<Psa> {
    let raw = raw?;
    let org_id = line(
        errors,
        "psa.org_id",
        "The PSA organization/site ID",
        &raw.org_id,
        MAX_ORG_ID,
    );
    let name = raw
        .system
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match name {
        None if org_id.is_some() => {
            errors.add(
                "psa.system",
                format!(
                    "The PSA system is missing; choose the system the organization ID belongs to ({})",
                    PsaSystem::names()
                ),
            );
            None
        }
        None => None,
        Some(name) => match name.parse::<PsaSystem>() {
            Ok(system) => Some(Psa { system, org_id }),
            Err(_) => {
                errors.add(
                    "psa.system",
                    format!(
                        "The PSA system {name:?} is not one Outpost knows; choose one of {} (\"other\" for any other)",
                        PsaSystem::names()
                    ),
                );
                None
            }
        },
    }
}

fn pin(errors: &mut Errors, raw: Option<&PinInput>) -> Option<Pin> {
    let raw = raw?;
    let mut ok = true;
    let mut coordinate = |field: &str, label: &str, value: Option<f64>, limit: f64| {
        if let Some(v) = value {
            if !v.is_finite() || v < -limit || v > limit {
                errors.add(
                    field,
                    format!("The map pin's {label} {v} is out of range; give a value from -{limit} to {limit}"),
                );
                ok = false;
            }
        }
    };
    coordinate("pin.latitude", "latitude", raw.latitude, 90.0);
    coordinate("pin.longitude", "longitude", raw.longitude, 180.0);
    match (raw.latitude, raw.longitude) {
        (Some(latitude), Some(longitude)) => ok.then_some(Pin {
            latitude,
            longitude,
        }),
        (None, None) => None,
        (Some(_), None) => {
            errors.add(
                "pin.longitude",
                "The map pin has a latitude but no longitude; give both, or clear the pin",
            );
            None
        }
        (None, Some(_)) => {
            errors.add(
                "pin.latitude",
                "The map pin has a longitude but no latitude; give both, or clear the pin",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    fn only_error(input: SiteInput) -> FieldError {
        let errors = validate(&input).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        errors.into_iter().next().unwrap()
    }

    fn with_contact(contact: ContactInput) -> SiteInput {
        SiteInput {
            contact: Some(contact),
            ..SiteInput::default()
        }
    }

    fn email(raw: &str) -> SiteInput {
        with_contact(ContactInput {
            email: Some(raw.into()),
            ..ContactInput::default()
        })
    }

    fn phones(raw: &[&str]) -> SiteInput {
        with_contact(ContactInput {
            phones: raw.iter().map(|p| p.to_string()).collect(),
            ..ContactInput::default()
        })
    }

    fn full() -> SiteInput {
        serde_json::from_value(serde_json::json!({
            "contact": {
                "email": "  jane.doe@example.com ",
                "first_name": " Jane ",
                "last_name": "Doe",
                "phones": ["+1 (555) 010-2030", "", "555.0100 ext. 12"],
            },
            "customer_id": "C-1001",
            "contract_id": "K-7",
            "psa": { "system": "connectwise_manage", "org_id": "  4711 " },
            "address": "1 Main St\r\nSpringfield\r\n",
            "pin": { "latitude": 48.8566, "longitude": 2.3522 },
            "note": "Gate code 1234.\nCall first.",
        }))
        .unwrap()
    }

    #[test]
    fn a_full_document_is_trimmed_and_normalized() {
        let site = validate(&full()).unwrap();
        assert_eq!(site.contact.email.as_deref(), Some("jane.doe@example.com"));
        assert_eq!(site.contact.first_name.as_deref(), Some("Jane"));
        assert_eq!(
            site.contact.phones,
            ["+1 (555) 010-2030", "555.0100 ext. 12"],
            "trimmed, blank entries dropped"
        );
        assert_eq!(
            site.psa,
            Some(Psa {
                system: PsaSystem::ConnectwiseManage,
                org_id: Some("4711".into())
            })
        );
        assert_eq!(
            site.address.as_deref(),
            Some("1 Main St\nSpringfield"),
            "CRLF becomes LF, trailing break trimmed"
        );
        assert_eq!(
            site.pin,
            Some(Pin {
                latitude: 48.8566,
                longitude: 2.3522
            })
        );
        assert_eq!(site.note.as_deref(), Some("Gate code 1234.\nCall first."));
    }

    #[test]
    fn empty_strings_and_absent_fields_are_none() {
        let input: SiteInput = serde_json::from_value(serde_json::json!({
            "contact": { "email": "  ", "first_name": "", "phones": ["  "] },
            "customer_id": "",
            "psa": { "system": "", "org_id": " " },
            "address": "\r\n",
            "pin": { "latitude": null, "longitude": null },
        }))
        .unwrap();
        assert_eq!(validate(&input).unwrap(), SiteConfig::default());
        assert_eq!(
            validate(&SiteInput::default()).unwrap(),
            SiteConfig::default()
        );
    }

    #[test]
    fn a_stored_config_reads_back_as_the_same_input() {
        let site = validate(&full()).unwrap();
        let json = serde_json::to_value(&site).unwrap();
        let again: SiteInput = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(validate(&again).unwrap(), site);
        assert_eq!(json["psa"]["system"], "connectwise_manage");
        let empty = serde_json::to_value(SiteConfig::default()).unwrap();
        let again: SiteInput = serde_json::from_value(empty).unwrap();
        assert_eq!(validate(&again).unwrap(), SiteConfig::default());
    }

    #[test]
    fn unknown_fields_are_refused_by_the_input() {
        let bad =
            serde_json::from_value::<SiteInput>(serde_json::json!({ "contact": { "mail": "x" } }));
        assert!(bad.unwrap_err().to_string().contains("mail"));
    }

    #[test]
    fn emails_are_checked() {
        for good in [
            "a@example.com",
            "first.last+tag@sub.example.co.uk",
            "o'neil@example.org",
        ] {
            let site = validate(&email(good)).unwrap();
            assert_eq!(site.contact.email.as_deref(), Some(good));
        }
        for (bad, why) in [
            ("jane.example.com", "has no @"),
            ("@example.com", "nothing before the @"),
            ("jane@", "nothing after the @"),
            ("jane@localhost", "domain with a dot"),
            ("jane@[192.0.2.1]", "IP address"),
            ("Jane <jane@example.com>", "angle brackets"),
            ("ja ne@example.com", "not a valid email"),
        ] {
            let e = only_error(email(bad));
            assert_eq!(e.field, "contact.email", "{bad}");
            assert!(
                e.message.starts_with("The contact's email"),
                "{}",
                e.message
            );
            assert!(e.message.contains(why), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn an_email_longer_than_the_bound_is_refused() {
        let long = format!("{}@{}.com", "a".repeat(60), "b".repeat(200));
        let e = only_error(email(&long));
        assert_eq!(e.field, "contact.email");
        assert!(e.message.contains("at most 254"), "{}", e.message);
    }

    #[test]
    fn phone_numbers_are_checked() {
        for good in [
            "+1 (555) 010-2030",
            "0049 30 1234567",
            "555.0100",
            "12345",
            "+44 20 7946 0958 x123",
            "555-0100 ext 42",
            "555-0100 EXT. 42",
            "555-0100 extension 7",
            "555-0100x9",
        ] {
            assert_eq!(check_phone(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("1234", "4 digits"),
            ("123456789012345678901", "21 digits"),
            ("555-CALL-NOW", "not an extension"),
            ("555 0100 x", "not an extension"),
            ("555 0100 x1234567", "not an extension"),
            ("555/0100", "'/'"),
            ("555 +0100", "not in front"),
            ("++1 555 0100", "not in front"),
            ("555\t0100", "control characters"),
        ] {
            let e = check_phone(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn each_bad_phone_is_named_by_its_position() {
        let errors = validate(&phones(&["+1 555 0100", "12", "555 0101", "abc"])).unwrap_err();
        assert_eq!(fields(&errors), ["contact.phones[1]", "contact.phones[3]"]);
        assert!(
            errors[0].message.starts_with("Phone number 2 (\"12\")"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn at_most_five_phone_numbers() {
        let five = ["55501001", "55501002", "55501003", "55501004", "55501005"];
        assert_eq!(validate(&phones(&five)).unwrap().contact.phones.len(), 5);
        let mut six = five.to_vec();
        six.push("55501006");
        let e = only_error(phones(&six));
        assert_eq!(e.field, "contact.phones");
        assert!(e.message.contains("at most 5"), "{}", e.message);
    }

    #[test]
    fn lengths_are_bounded_in_characters() {
        type Make = fn(String) -> SiteInput;
        let cases: [(usize, &str, Make); 7] = [
            (MAX_NAME, "contact.first_name", |v| {
                with_contact(ContactInput {
                    first_name: Some(v),
                    ..Default::default()
                })
            }),
            (MAX_NAME, "contact.last_name", |v| {
                with_contact(ContactInput {
                    last_name: Some(v),
                    ..Default::default()
                })
            }),
            (MAX_ID, "customer_id", |v| SiteInput {
                customer_id: Some(v),
                ..Default::default()
            }),
            (MAX_ID, "contract_id", |v| SiteInput {
                contract_id: Some(v),
                ..Default::default()
            }),
            (MAX_ORG_ID, "psa.org_id", |v| SiteInput {
                psa: Some(PsaInput {
                    system: Some("syncro".into()),
                    org_id: Some(v),
                }),
                ..Default::default()
            }),
            (MAX_ADDRESS, "address", |v| SiteInput {
                address: Some(v),
                ..Default::default()
            }),
            (MAX_NOTE, "note", |v| SiteInput {
                note: Some(v),
                ..Default::default()
            }),
        ];
        for (max, field, make) in cases {
            // Multi-byte characters: the bound counts characters, not bytes.
            assert!(validate(&make("é".repeat(max))).is_ok(), "{field} at {max}");
            let e = only_error(make("é".repeat(max + 1)));
            assert_eq!(e.field, field);
            assert!(
                e.message.contains(&format!("at most {max}")),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn control_characters_are_refused_except_newlines_in_address_and_note() {
        let e = only_error(SiteInput {
            customer_id: Some("C-1\n2".into()),
            ..Default::default()
        });
        assert_eq!(e.field, "customer_id");
        assert!(e
            .message
            .starts_with("The Customer ID contains control characters"));
        let e = only_error(with_contact(ContactInput {
            last_name: Some("Doe\u{7}".into()),
            ..Default::default()
        }));
        assert_eq!(e.field, "contact.last_name");
        let ok = validate(&SiteInput {
            address: Some("line 1\nline 2".into()),
            note: Some("a\r\nb\rc".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(ok.note.as_deref(), Some("a\nb\nc"));
        let e = only_error(SiteInput {
            note: Some("a\tb".into()),
            ..Default::default()
        });
        assert_eq!(e.field, "note");
        let e = only_error(SiteInput {
            address: Some("a\u{0}b".into()),
            ..Default::default()
        });
        assert_eq!(e.field, "address");
    }

    #[test]
    fn psa_systems_have_wire_names_and_labels() {
        for system in PsaSystem::ALL {
            assert_eq!(system.as_str().parse::<PsaSystem>(), Ok(system));
            assert_eq!(serde_json::to_value(system).unwrap(), system.as_str());
            assert!(!system.label().is_empty());
        }
        assert_eq!(PsaSystem::DattoAutotask.label(), "Datto Autotask");
        assert!("autotask".parse::<PsaSystem>().is_err());
    }

    #[test]
    fn a_psa_needs_a_known_system() {
        let psa = |system: Option<&str>, org: Option<&str>| SiteInput {
            psa: Some(PsaInput {
                system: system.map(Into::into),
                org_id: org.map(Into::into),
            }),
            ..Default::default()
        };
        let e = only_error(psa(Some("halo"), Some("1")));
        assert_eq!(e.field, "psa.system");
        assert!(e.message.contains("connectwise_manage"), "{}", e.message);
        let e = only_error(psa(None, Some("1")));
        assert_eq!(e.field, "psa.system");
        let site = validate(&psa(Some("zendesk"), None)).unwrap();
        assert_eq!(
            site.psa,
            Some(Psa {
                system: PsaSystem::Zendesk,
                org_id: None
            })
        );
    }

    #[test]
    fn a_pin_needs_both_coordinates_in_range() {
        let pin = |lat: Option<f64>, lon: Option<f64>| SiteInput {
            pin: Some(PinInput {
                latitude: lat,
                longitude: lon,
            }),
            ..Default::default()
        };
        for (lat, lon) in [(90.0, 180.0), (-90.0, -180.0), (0.0, 0.0)] {
            assert!(validate(&pin(Some(lat), Some(lon))).is_ok());
        }
        assert_eq!(only_error(pin(Some(90.5), Some(0.0))).field, "pin.latitude");
        assert_eq!(
            only_error(pin(Some(0.0), Some(-180.01))).field,
            "pin.longitude"
        );
        assert_eq!(only_error(pin(Some(1.0), None)).field, "pin.longitude");
        assert_eq!(only_error(pin(None, Some(1.0))).field, "pin.latitude");
        let both = validate(&pin(Some(-91.0), Some(181.0))).unwrap_err();
        assert_eq!(fields(&both), ["pin.latitude", "pin.longitude"]);
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let input: SiteInput = serde_json::from_value(serde_json::json!({
            "contact": { "email": "nope", "first_name": "x".repeat(101), "phones": ["1"] },
            "customer_id": "a\u{1}",
            "psa": { "system": "halo" },
            "pin": { "latitude": 100.0 },
            "note": "n".repeat(4001),
        }))
        .unwrap();
        let errors = validate(&input).unwrap_err();
        assert_eq!(
            fields(&errors),
            [
                "contact.email",
                "contact.first_name",
                "contact.phones[0]",
                "customer_id",
                "psa.system",
                "pin.latitude",
                "pin.longitude",
                "note"
            ]
        );
    }

    #[test]
    fn changed_fields_name_what_differs() {
        let before = validate(&full()).unwrap();
        assert!(before.changed_fields(&before).is_empty());
        let mut after = before.clone();
        after.contact.phones.pop();
        after.psa = Some(Psa {
            system: PsaSystem::ConnectwiseManage,
            org_id: None,
        });
        after.pin = None;
        after.note = Some("changed".into());
        assert_eq!(
            before.changed_fields(&after),
            ["contact.phones", "psa.org_id", "pin", "note"]
        );
        assert_eq!(
            SiteConfig::default().changed_fields(&before).len(),
            11,
            "every field differs from an empty configuration"
        );
    }
}
