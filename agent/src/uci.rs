//! OpenWrt's UCI configuration (`/etc/config/outpost`) turned into the agent's TOML configuration: a parser of the UCI text format and a mapping of the `outpost` sections onto `agent.toml`, every value checked by the agent's own [`crate::config`] types, errors naming the UCI section and option.
//!
//! The UCI file (what the OpenWrt package installs; `outpost-agent config-from-uci` converts it):
//!
//! ```text
//! config agent 'agent'              # one at most: the top-level keys of agent.toml
//!     option portal 'https://…'     #   not in agent.toml: the init script names it in its activation hint
//!     option platform 'router'      #   box | router | linux
//!     option heartbeat_secs '30'    #   also outbox_max_bytes, reconnect_initial_ms, reconnect_max_secs,
//!                                   #   disabled_poll_secs, log_format
//! config discovery 'discovery'      # one at most: [discovery] (enabled, sweep_interval_secs, rate_pps, …)
//! config blocking / power / geoip   # one at most each: [blocking], [power], [geoip]
//! config interface 'lan'            # any number: one [[interfaces]] entry each
//!     option device 'br-lan'        #   required: the network device (agent.toml `name`)
//!     option vlan '1'               #   the VLAN label of the segment (1-4094)
//!     option tagged '0'             #   a tagged VLAN sub-interface (needs vlan)
//!     option cidr '192.168.1.0/24'  #   what to sweep instead of the device's own network
//!     option gateway '192.168.1.1'  #   the segment's gateway (box blocking)
//!     option enabled '1'            #   0: keep the section but do not watch it
//! ```
//!
//! Syntax as libuci reads it: `package NAME`, `config TYPE ['NAME']`, `option NAME 'VALUE'`,
//! `list NAME 'VALUE'`; values unquoted, in `'…'` (no escapes) or `"…"` (backslash escapes), adjacent parts
//! joined (`'it'\''s'`), quotes may span lines; `#` starts a comment outside quotes; `;` ends a statement; a
//! backslash at the end of a line continues it. Booleans are `1/0`, `yes/no`, `on/off`, `true/false`,
//! `enabled/disabled`.

use std::fmt;
use std::path::Path;

use toml::{Table, Value};

use crate::config::{Config, ConfigError};

/// A syntax error in the UCI text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// An option's value: `option` (one string) or `list` (strings in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UciValue {
    Single(String),
    List(Vec<String>),
}

/// One `option` or `list` of a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UciOption {
    pub name: String,
    pub value: UciValue,
    /// The line of its (last) statement.
    pub line: usize,
}

/// One `config TYPE ['NAME']` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub kind: String,
    /// `None` for an anonymous section.
    pub name: Option<String>,
    /// Position among the sections of the same type (what `@TYPE[N]` means in `uci show`).
    pub index: usize,
    pub line: usize,
    pub options: Vec<UciOption>,
}

impl Section {
    pub fn get(&self, name: &str) -> Option<&UciOption> {
        self.options.iter().find(|o| o.name == name)
    }
}

/// How a section is named in messages: `interface 'lan'`, or `interface '@interface[1]'` when anonymous.
impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} '{name}'", self.kind),
            None => write!(f, "{} '@{}[{}]'", self.kind, self.kind, self.index),
        }
    }
}

/// A parsed UCI file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Package {
    /// The `package` statement's name, if the file has one.
    pub name: Option<String>,
    pub sections: Vec<Section>,
}

// ---------------------------------------------------------------------------------------------------------
// The parser.

/// One word of a statement: its text and the line it starts on.
struct Word {
    text: String,
    line: usize,
}

/// Splits the text into statements (lists of words), the way libuci's `parse_str` does.
fn statements(text: &str) -> Result<Vec<Vec<Word>>, SyntaxError> {
    let mut out = Vec::new();
    let mut words: Vec<Word> = Vec::new();
    let mut word: Option<Word> = None;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    let finish_word = |word: &mut Option<Word>, words: &mut Vec<Word>| {
        if let Some(w) = word.take() {
            words.push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\n' | ';' => {
                finish_word(&mut word, &mut words);
                if !words.is_empty() {
                    out.push(std::mem::take(&mut words));
                }
                if c == '\n' {
                    line += 1;
                }
            }
            c if c.is_whitespace() => finish_word(&mut word, &mut words),
            '#' => {
                // A comment runs to the end of the line; the newline still ends the statement.
                finish_word(&mut word, &mut words);
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '\'' | '"' => {
                let start = line;
                let w = word.get_or_insert(Word {
                    text: String::new(),
                    line,
                });
                let mut closed = false;
                while let Some(q) = chars.next() {
                    if q == c {
                        closed = true;
                        break;
                    }
                    if q == '\n' {
                        line += 1;
                    }
                    if q == '\\' && c == '"' {
                        match chars.next() {
                            // A backslash before the newline joins the lines.
                            Some('\n') => line += 1,
                            Some(e) => w.text.push(e),
                            None => break,
                        }
                        continue;
                    }
                    w.text.push(q);
                }
                if !closed {
                    return Err(SyntaxError {
                        line: start,
                        message: format!("unterminated {c}…{c} quote: close it with {c}"),
                    });
                }
            }
            '\\' => match chars.next() {
                // Line continuation: the word goes on on the next line.
                Some('\n') => line += 1,
                Some(e) => word
                    .get_or_insert(Word {
                        text: String::new(),
                        line,
                    })
                    .text
                    .push(e),
                None => {
                    return Err(SyntaxError {
                        line,
                        message: "a backslash ends the file: remove it or escape what follows"
                            .into(),
                    })
                }
            },
            c => word
                .get_or_insert(Word {
                    text: String::new(),
                    line,
                })
                .text
                .push(c),
        }
    }
    finish_word(&mut word, &mut words);
    if !words.is_empty() {
        out.push(words);
    }
    Ok(out)
}

/// UCI names (section types and names, option names): letters, digits and `_`.
fn check_name(what: &str, name: &str, line: usize) -> Result<(), SyntaxError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(SyntaxError {
            line,
            message: format!(
                "{what} {name:?} is not a valid UCI name (letters, digits and _ only)"
            ),
        });
    }
    Ok(())
}

/// Parses UCI text (one package, as in a file under `/etc/config`).
pub fn parse(text: &str) -> Result<Package, SyntaxError> {
    let mut package = Package::default();
    for words in statements(text)? {
        let line = words[0].line;
        let keyword = words[0].text.as_str();
        let args: Vec<&str> = words[1..].iter().map(|w| w.text.as_str()).collect();
        let syntax = |message: String| SyntaxError { line, message };
        match keyword {
            "package" => {
                let [name] = args[..] else {
                    return Err(syntax("expected `package NAME`".into()));
                };
                if !package.sections.is_empty() || package.name.is_some() {
                    return Err(syntax(
                        "`package` must come once, before the first section".into(),
                    ));
                }
                package.name = Some(name.to_owned());
            }
            "config" => {
                let (kind, name) = match args[..] {
                    [kind] => (kind, None),
                    [kind, name] => (kind, Some(name)),
                    _ => {
                        return Err(syntax(format!(
                            "expected `config TYPE ['NAME']`, found {} words after `config`",
                            args.len()
                        )))
                    }
                };
                check_name("section type", kind, line)?;
                if let Some(name) = name {
                    check_name("section name", name, line)?;
                    if let Some(same) = package
                        .sections
                        .iter()
                        .find(|s| s.name.as_deref() == Some(name))
                    {
                        return Err(syntax(format!(
                            "section '{name}' is already defined on line {}: give each section its own name",
                            same.line
                        )));
                    }
                }
                let index = package.sections.iter().filter(|s| s.kind == kind).count();
                package.sections.push(Section {
                    kind: kind.to_owned(),
                    name: name.map(str::to_owned),
                    index,
                    line,
                    options: Vec::new(),
                });
            }
            "option" | "list" => {
                let [name, value] = args[..] else {
                    return Err(syntax(format!(
                        "expected `{keyword} NAME 'VALUE'`, found {} words after `{keyword}` (quote values with spaces)",
                        args.len()
                    )));
                };
                check_name("option name", name, line)?;
                let Some(section) = package.sections.last_mut() else {
                    return Err(syntax(format!(
                        "`{keyword} {name}` before any `config` section"
                    )));
                };
                let existing = section.options.iter_mut().find(|o| o.name == name);
                match (keyword, existing) {
                    // A repeated option replaces the earlier one, as in libuci.
                    ("option", Some(o)) => {
                        o.value = UciValue::Single(value.to_owned());
                        o.line = line;
                    }
                    // A list item appends; after an option of the same name, that value becomes the
                    // list's first item (libuci's uci_add_list).
                    ("list", Some(o)) => {
                        let items =
                            match std::mem::replace(&mut o.value, UciValue::List(Vec::new())) {
                                UciValue::Single(v) => vec![v, value.to_owned()],
                                UciValue::List(mut items) => {
                                    items.push(value.to_owned());
                                    items
                                }
                            };
                        o.value = UciValue::List(items);
                        o.line = line;
                    }
                    (_, None) => section.options.push(UciOption {
                        name: name.to_owned(),
                        value: if keyword == "option" {
                            UciValue::Single(value.to_owned())
                        } else {
                            UciValue::List(vec![value.to_owned()])
                        },
                        line,
                    }),
                    _ => unreachable!("keyword is option or list"),
                }
            }
            other => {
                return Err(syntax(format!(
                    "unknown statement `{other}`: expected package, config, option or list"
                )))
            }
        }
    }
    Ok(package)
}

// ---------------------------------------------------------------------------------------------------------
// The mapping onto agent.toml.

/// What an option's text must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    /// A whole number from 0 to the bound.
    Int(u64),
    /// Seconds and other numbers with fractions.
    Float,
    Text,
}

/// Where a section's options go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The top level of agent.toml.
    Top,
    /// A table (`[discovery]`, …).
    Table(&'static str),
    /// One `[[interfaces]]` entry.
    Interface,
}

/// A section type the mapping knows: where it goes, whether it may repeat, and its options
/// (UCI name, agent.toml key, kind). An agent.toml key of `None` is read by the init script, not the agent.
struct Schema {
    kind: &'static str,
    target: Target,
    repeats: bool,
    options: &'static [(&'static str, Option<&'static str>, Kind)],
}

const U16: Kind = Kind::Int(u16::MAX as u64);
const U32: Kind = Kind::Int(u32::MAX as u64);
const U64: Kind = Kind::Int(i64::MAX as u64);

const SCHEMAS: &[Schema] = &[
    Schema {
        kind: "agent",
        target: Target::Top,
        repeats: false,
        options: &[
            ("portal", None, Kind::Text),
            ("platform", Some("platform"), Kind::Text),
            ("heartbeat_secs", Some("heartbeat_secs"), Kind::Float),
            ("outbox_max_bytes", Some("outbox_max_bytes"), U64),
            ("reconnect_initial_ms", Some("reconnect_initial_ms"), U64),
            (
                "reconnect_max_secs",
                Some("reconnect_max_secs"),
                Kind::Float,
            ),
            (
                "disabled_poll_secs",
                Some("disabled_poll_secs"),
                Kind::Float,
            ),
            ("log_format", Some("log_format"), Kind::Text),
        ],
    },
    Schema {
        kind: "discovery",
        target: Target::Table("discovery"),
        repeats: false,
        options: &[
            ("enabled", Some("enabled"), Kind::Bool),
            (
                "sweep_interval_secs",
                Some("sweep_interval_secs"),
                Kind::Float,
            ),
            ("rate_pps", Some("rate_pps"), U32),
            ("retries", Some("retries"), U32),
            (
                "probe_interval_secs",
                Some("probe_interval_secs"),
                Kind::Float,
            ),
            ("offline_after_missed", Some("offline_after_missed"), U32),
            ("mdns", Some("mdns"), Kind::Bool),
            ("ssdp", Some("ssdp"), Kind::Bool),
            (
                "ssdp_interval_secs",
                Some("ssdp_interval_secs"),
                Kind::Float,
            ),
            ("reverse_dns", Some("reverse_dns"), Kind::Bool),
            ("dns_server", Some("dns_server"), Kind::Text),
            (
                "report_interval_secs",
                Some("report_interval_secs"),
                Kind::Float,
            ),
            (
                "interface_retry_secs",
                Some("interface_retry_secs"),
                Kind::Float,
            ),
        ],
    },
    Schema {
        kind: "blocking",
        target: Target::Table("blocking"),
        repeats: false,
        options: &[
            ("repeat_secs", Some("repeat_secs"), Kind::Float),
            ("restore_replies", Some("restore_replies"), U32),
            ("nft", Some("nft"), Kind::Text),
        ],
    },
    Schema {
        kind: "power",
        target: Target::Table("power"),
        repeats: false,
        options: &[
            ("timeout_secs", Some("timeout_secs"), Kind::Float),
            ("retries", Some("retries"), U32),
            ("settle_secs", Some("settle_secs"), Kind::Float),
        ],
    },
    Schema {
        kind: "geoip",
        target: Target::Table("geoip"),
        repeats: false,
        options: &[("database", Some("database"), Kind::Text)],
    },
    Schema {
        kind: "interface",
        target: Target::Interface,
        repeats: true,
        options: &[
            ("device", Some("name"), Kind::Text),
            ("vlan", Some("vlan"), U16),
            ("tagged", Some("tagged"), Kind::Bool),
            ("cidr", Some("cidr"), Kind::Text),
            ("gateway", Some("gateway"), Kind::Text),
            // Not in agent.toml: a disabled interface section is left out.
            ("enabled", None, Kind::Bool),
        ],
    },
];

/// A mapping error: the section (and option) it is about, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("{0}")]
    Syntax(#[from] SyntaxError),
    #[error("line {line}: {section}: {message}")]
    Section {
        line: usize,
        section: String,
        message: String,
    },
    #[error("line {line}: {section}: option {option}: {message}")]
    Option {
        line: usize,
        section: String,
        option: String,
        message: String,
    },
    #[error("{0}")]
    Config(String),
}

/// The result of a conversion.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The agent.toml text (what `--out` writes).
    pub toml: String,
    /// That text, parsed and validated the way `outpost-agent run --config` will.
    pub config: Config,
    /// `agent.portal`: the portal to activate with, for the init script's hint.
    pub portal: Option<String>,
    /// Interface sections left out because `enabled` is 0.
    pub disabled_interfaces: Vec<String>,
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" | "enabled" => Some(true),
        "0" | "no" | "off" | "false" | "disabled" => Some(false),
        _ => None,
    }
}

/// The option's text as the TOML value its kind says.
fn typed(text: &str, kind: Kind) -> Result<Value, String> {
    let text = text.trim();
    match kind {
        Kind::Bool => parse_bool(text).map(Value::Boolean).ok_or_else(|| {
            format!("{text:?} is not a boolean: use '1' or '0' (or yes/no, on/off, true/false)")
        }),
        Kind::Int(max) => match text.parse::<u64>() {
            Ok(n) if n <= max => Ok(Value::Integer(n as i64)),
            _ => Err(format!("{text:?} is not a whole number from 0 to {max}")),
        },
        Kind::Float => match text.parse::<f64>() {
            Ok(x) if x.is_finite() => Ok(Value::Float(x)),
            _ => Err(format!("{text:?} is not a number (e.g. '30' or '0.5')")),
        },
        Kind::Text => Ok(Value::String(text.to_owned())),
    }
}

/// What the agent's configuration says about a TOML document: `Ok` or its own message, without the file
/// name (the TOML here is generated; the UCI file is what the reader knows).
fn agent_verdict(doc: &Table) -> Result<Config, String> {
    let text = toml::to_string(doc).map_err(|e| format!("cannot write TOML: {e}"))?;
    Config::from_toml(&text, Path::new("agent.toml")).map_err(|e| match e {
        ConfigError::Invalid { message, .. } => message,
        ConfigError::Parse { source, .. } => source.message().trim().to_owned(),
        other => other.to_string(),
    })
}

/// A document holding only `key = value` where the schema's target puts it; interfaces get `name` too.
fn fragment(target: Target, device: Option<&str>, entries: &[(&str, Value)]) -> Table {
    let mut table = Table::new();
    for (key, value) in entries {
        table.insert((*key).to_owned(), value.clone());
    }
    let mut doc = Table::new();
    match target {
        Target::Top => doc = table,
        Target::Table(name) => {
            doc.insert(name.to_owned(), Value::Table(table));
        }
        Target::Interface => {
            if let Some(device) = device {
                table.insert("name".into(), Value::String(device.to_owned()));
            }
            doc.insert("interfaces".into(), Value::Array(vec![Value::Table(table)]));
        }
    }
    doc
}

/// The config's message about an interface starts with `interfaces: `; the UCI section says that already.
fn strip_interfaces(message: String) -> String {
    message
        .strip_prefix("interfaces: ")
        .map(str::to_owned)
        .unwrap_or(message)
}

/// Maps a parsed `outpost` package onto the agent's configuration.
pub fn map(package: &Package) -> Result<Converted, MapError> {
    let mut doc = Table::new();
    let mut interfaces: Vec<Value> = Vec::new();
    // (section, device, vlan) of the enabled interface sections, for the checks across sections.
    let mut seen: Vec<(String, String, Option<i64>)> = Vec::new();
    let mut portal = None;
    let mut disabled_interfaces = Vec::new();
    for section in &package.sections {
        let label = section.to_string();
        let section_error = |message: String| MapError::Section {
            line: section.line,
            section: label.clone(),
            message,
        };
        let Some(schema) = SCHEMAS.iter().find(|s| s.kind == section.kind) else {
            let known: Vec<&str> = SCHEMAS.iter().map(|s| s.kind).collect();
            return Err(section_error(format!(
                "unknown section type '{}': known types are {}",
                section.kind,
                known.join(", ")
            )));
        };
        if !schema.repeats {
            if let Some(first) = package
                .sections
                .iter()
                .find(|s| s.kind == section.kind && s.index == 0)
                .filter(|first| first.index != section.index)
            {
                return Err(section_error(format!(
                    "there may be one '{}' section; the first is {first} on line {}: merge them",
                    section.kind, first.line
                )));
            }
        }
        // Each option: its kind, then the agent's verdict on it alone.
        let device = match section.get("device").map(|o| &o.value) {
            Some(UciValue::Single(d)) => Some(d.trim().to_owned()),
            _ => None,
        };
        let mut entries: Vec<(&str, Value)> = Vec::new();
        let mut enabled = true;
        // `device` first: the other interface options are judged with it.
        let mut options: Vec<&UciOption> = section.options.iter().collect();
        options.sort_by_key(|o| o.name != "device");
        for option in options {
            let option_error = |message: String| MapError::Option {
                line: option.line,
                section: label.clone(),
                option: option.name.clone(),
                message,
            };
            let Some(&(_, key, kind)) = schema.options.iter().find(|(n, _, _)| *n == option.name)
            else {
                let known: Vec<&str> = schema.options.iter().map(|(n, _, _)| *n).collect();
                return Err(option_error(format!(
                    "unknown option: a '{}' section knows {}",
                    section.kind,
                    known.join(", ")
                )));
            };
            let UciValue::Single(text) = &option.value else {
                return Err(option_error(format!(
                    "is a list: write one value, `option {} '…'`",
                    option.name
                )));
            };
            let value = typed(text, kind).map_err(&option_error)?;
            let Some(key) = key else {
                match option.name.as_str() {
                    "portal" => {
                        let url = text.trim();
                        if !(url.starts_with("https://") && url.len() > "https://".len()) {
                            return Err(option_error(format!(
                                "{url:?} is not an https:// address: the portal's URL, e.g. 'https://portal.example.com:8443'"
                            )));
                        }
                        portal = Some(url.to_owned());
                    }
                    "enabled" => enabled = value.as_bool().unwrap_or(true),
                    other => unreachable!("option {other} has no agent.toml key"),
                }
                continue;
            };
            // `tagged` alone is judged with the whole section below (it needs `vlan`).
            if key != "tagged" {
                let device_for_check = if key == "name" {
                    None
                } else {
                    device.as_deref().or(Some("device"))
                };
                agent_verdict(&fragment(
                    schema.target,
                    device_for_check,
                    &[(key, value.clone())],
                ))
                .map_err(|m| option_error(strip_interfaces(m)))?;
            }
            entries.push((key, value));
        }
        match schema.target {
            Target::Top => {
                for (key, value) in entries {
                    doc.insert(key.to_owned(), value);
                }
            }
            Target::Table(name) => {
                let table = entries
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<Table>();
                doc.insert(name.to_owned(), Value::Table(table));
            }
            Target::Interface => {
                let Some(device) = device else {
                    return Err(section_error(match section.get("device") {
                        Some(_) => "option device is a list: name one network device".into(),
                        None => "option device is missing: name the network device to watch, e.g. option device 'br-lan'".into(),
                    }));
                };
                let whole = fragment(Target::Interface, None, &entries);
                agent_verdict(&whole).map_err(|m| section_error(strip_interfaces(m)))?;
                if !enabled {
                    disabled_interfaces.push(label);
                    continue;
                }
                let vlan = entries
                    .iter()
                    .find(|(k, _)| *k == "vlan")
                    .and_then(|(_, v)| v.as_integer());
                for (other, other_device, other_vlan) in &seen {
                    if *other_device == device {
                        return Err(section_error(format!(
                            "device '{device}' is already watched by {other}: one section per device"
                        )));
                    }
                    if vlan.is_some() && vlan == *other_vlan {
                        return Err(MapError::Option {
                            line: section.get("vlan").map_or(section.line, |o| o.line),
                            section: label.clone(),
                            option: "vlan".into(),
                            message: format!(
                                "VLAN {} is already the VLAN of {other}: each VLAN is one segment",
                                vlan.unwrap_or_default()
                            ),
                        });
                    }
                }
                seen.push((label.clone(), device, vlan));
                let Some(Value::Array(mut one)) = whole.get("interfaces").cloned() else {
                    unreachable!("fragment(Interface) holds an interfaces array");
                };
                interfaces.append(&mut one);
            }
        }
    }
    if !interfaces.is_empty() {
        doc.insert("interfaces".into(), Value::Array(interfaces));
    }
    // The whole document through the agent's configuration: what `run --config` will read.
    let body =
        toml::to_string(&doc).map_err(|e| MapError::Config(format!("cannot write TOML: {e}")))?;
    let config = agent_verdict(&doc).map_err(MapError::Config)?;
    Ok(Converted {
        toml: body,
        config,
        portal,
        disabled_interfaces,
    })
}

/// Parses UCI text and maps it (see [`map`]).
pub fn convert(text: &str) -> Result<Converted, MapError> {
    map(&parse(text)?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use outpost_cloud_link::protocol::Platform;

    use super::*;
    use crate::config::InterfaceConfig;

    const GOOD: &str = r#"
# Outpost agent
package outpost

config agent 'agent'
	option portal 'https://portal.example.com:8443'
	option platform 'router'
	option heartbeat_secs '60'   # trailing comment
	option outbox_max_bytes "1048576"

config discovery 'discovery'
	option enabled 'yes'
	option sweep_interval_secs '600'
	option mdns '0'
	option dns_server '192.168.1.1'

config interface 'lan'
	option device 'br-lan'
	option vlan '1'
	option tagged '0'
	option cidr '192.168.1.0/24'

config interface 'guest'
	option device br-lan.3 ; option vlan 3
	option tagged 'on'
	option gateway '192.168.3.1'

config interface 'iot'
	option device 'br-iot'
	option vlan '1'
	option enabled '0'

config geoip
	option database '/etc/outpost/City.mmdb'
"#;

    #[test]
    fn the_parser_reads_sections_options_lists_quotes_and_comments() {
        let p = parse(
            "package 'outpost'\n\n# comment\nconfig interface 'lan' # here too\n\toption device \"br-lan\"\n\
             \tlist name 'a b'\n\tlist name c\n\toption note 'it'\\''s'\n\toption esc \"a\\\"b\\\\c\"\n\
             \toption multi 'one\ntwo'\n\toption joined a\\\nb\nconfig x\n\toption empty ''\n\toption hash 'a#b'\n\
             \toption device again\n\toption device last\n",
        )
        .unwrap();
        assert_eq!(p.name.as_deref(), Some("outpost"));
        assert_eq!(p.sections.len(), 2);
        let lan = &p.sections[0];
        assert_eq!(
            (lan.kind.as_str(), lan.name.as_deref(), lan.line),
            ("interface", Some("lan"), 4)
        );
        assert_eq!(
            lan.get("device").unwrap().value,
            UciValue::Single("br-lan".into())
        );
        assert_eq!(
            lan.get("name").unwrap().value,
            UciValue::List(vec!["a b".into(), "c".into()])
        );
        assert_eq!(
            lan.get("note").unwrap().value,
            UciValue::Single("it's".into())
        );
        assert_eq!(
            lan.get("esc").unwrap().value,
            UciValue::Single("a\"b\\c".into())
        );
        assert_eq!(
            lan.get("multi").unwrap().value,
            UciValue::Single("one\ntwo".into())
        );
        assert_eq!(
            lan.get("joined").unwrap().value,
            UciValue::Single("ab".into())
        );
        let x = &p.sections[1];
        assert_eq!(
            (x.kind.as_str(), x.name.as_deref(), x.index),
            ("x", None, 0)
        );
        assert_eq!(x.to_string(), "x '@x[0]'");
        assert_eq!(x.line, 14);
        assert_eq!(
            x.get("empty").unwrap().value,
            UciValue::Single(String::new())
        );
        assert_eq!(x.get("hash").unwrap().value, UciValue::Single("a#b".into()));
        // A repeated option: the last one wins.
        let device = x.get("device").unwrap();
        assert_eq!(
            (device.value.clone(), device.line),
            (UciValue::Single("last".into()), 18)
        );
    }

    #[test]
    fn an_option_followed_by_list_items_becomes_a_list() {
        let p = parse("config a\n option l x\n list l y\n").unwrap();
        assert_eq!(
            p.sections[0].get("l").unwrap().value,
            UciValue::List(vec!["x".into(), "y".into()])
        );
        assert!(parse("").unwrap().sections.is_empty());
        assert!(parse("\n# only a comment\n\n").unwrap().sections.is_empty());
    }

    #[test]
    fn syntax_errors_name_the_line() {
        for (text, line, needle) in [
            ("config a\n option x 'open\n", 2, "unterminated"),
            ("config a\n option x \"open\n", 2, "unterminated"),
            ("option x 1\n", 1, "before any `config`"),
            ("config a\n option x\n", 2, "expected `option NAME 'VALUE'`"),
            ("config a\n option x a b\n", 2, "quote values with spaces"),
            ("config a\n list x\n", 2, "expected `list NAME 'VALUE'`"),
            ("config\n", 1, "expected `config TYPE"),
            ("config a b c\n", 1, "expected `config TYPE"),
            ("config a 'my-lan'\n", 1, "section name \"my-lan\""),
            (
                "config a\n option 'bad name' 1\n",
                2,
                "option name \"bad name\"",
            ),
            ("config a\n\n opiton x 1\n", 3, "unknown statement `opiton`"),
            (
                "config a 'x'\nconfig b 'x'\n",
                2,
                "already defined on line 1",
            ),
            ("config a\npackage p\n", 2, "`package` must come once"),
            ("config a\n option x 1\\", 2, "backslash ends the file"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_good_file_maps_onto_the_agent_configuration() {
        let c = convert(GOOD).unwrap();
        assert_eq!(c.portal.as_deref(), Some("https://portal.example.com:8443"));
        assert_eq!(c.disabled_interfaces, ["interface 'iot'"]);
        let cfg = &c.config;
        assert_eq!(cfg.platform, Some(Platform::Router));
        assert_eq!(cfg.heartbeat, Duration::from_secs(60));
        assert_eq!(cfg.outbox_max_bytes, 1_048_576);
        assert!(cfg.discovery.enabled && !cfg.discovery.mdns && cfg.discovery.ssdp);
        assert_eq!(cfg.discovery.sweep_interval, Duration::from_secs(600));
        assert_eq!(
            cfg.discovery.dns_server,
            Some("192.168.1.1:53".parse().unwrap())
        );
        assert_eq!(
            cfg.geoip.database.as_deref(),
            Some(Path::new("/etc/outpost/City.mmdb"))
        );
        let mut lan = InterfaceConfig::named("br-lan");
        lan.vlan = Some(1);
        lan.cidr = Some("192.168.1.0/24".parse().unwrap());
        let mut guest = InterfaceConfig::named("br-lan.3");
        guest.vlan = Some(3);
        guest.tagged = true;
        guest.gateway = Some("192.168.3.1".parse().unwrap());
        assert_eq!(cfg.interfaces, Some(vec![lan, guest]));
        // The TOML written is what the daemon will read, to the same configuration.
        assert_eq!(
            &Config::from_toml(&c.toml, Path::new("out.toml")).unwrap(),
            cfg
        );
        assert!(c.toml.contains("[[interfaces]]"), "{}", c.toml);
        assert!(!c.toml.contains("portal"), "{}", c.toml);
    }

    #[test]
    fn an_empty_file_means_the_defaults() {
        let c = convert("# nothing\n").unwrap();
        assert_eq!(c.config, Config::default());
        assert_eq!(c.portal, None);
    }

    #[test]
    fn the_installed_default_file_converts() {
        let text = include_str!("../../packaging/openwrt/files/outpost.config");
        let c = convert(text).unwrap();
        assert_eq!(c.config.platform, Some(Platform::Router));
        let listed = c.config.interfaces.as_deref().unwrap_or_default();
        assert_eq!(listed.len(), 1, "{}", c.toml);
        assert_eq!(listed[0].name, "br-lan");
        assert_eq!(listed[0].vlan, Some(1));
        assert!(c.portal.is_some());
    }

    #[test]
    fn bad_input_names_the_section_and_option() {
        let base = "config interface 'guest'\n\toption device 'br-guest'\n";
        for (text, needle) in [
            (
                format!("{base}\toption vlan '5000'\n"),
                "line 3: interface 'guest': option vlan: \"br-guest\" has vlan = 5000: a VLAN id is between 1 and 4094",
            ),
            (
                format!("{base}\toption vlan '70000'\n"),
                "interface 'guest': option vlan: \"70000\" is not a whole number from 0 to 65535",
            ),
            (
                format!("{base}\toption vlan 'ten'\n"),
                "interface 'guest': option vlan: \"ten\" is not a whole number",
            ),
            (
                format!("{base}\toption tagged 'maybe'\n"),
                "interface 'guest': option tagged: \"maybe\" is not a boolean",
            ),
            (
                format!("{base}\toption tagged '1'\n"),
                "line 1: interface 'guest': \"br-guest\" is tagged = true without a vlan id",
            ),
            (
                format!("{base}\toption cidr '10.0.0.0/8'\n"),
                "interface 'guest': option cidr: \"br-guest\" cidr = \"10.0.0.0/8\"",
            ),
            (
                format!("{base}\toption gateway 'router'\n"),
                "interface 'guest': option gateway:",
            ),
            (
                format!("{base}\toption vlan_id '3'\n"),
                "interface 'guest': option vlan_id: unknown option: a 'interface' section knows device, vlan",
            ),
            (
                format!("{base}\tlist vlan '3'\n"),
                "interface 'guest': option vlan: is a list",
            ),
            (
                "config interface 'guest'\n\toption vlan '3'\n".to_owned(),
                "interface 'guest': option device is missing",
            ),
            (
                "config interface\n\toption device 'a/b'\n".to_owned(),
                "interface '@interface[0]': option device: \"a/b\" is not a network interface name",
            ),
            (
                format!("{base}\toption vlan '3'\nconfig interface 'lan'\n\toption device 'br-lan'\n\toption vlan '3'\n"),
                "line 6: interface 'lan': option vlan: VLAN 3 is already the VLAN of interface 'guest'",
            ),
            (
                format!("{base}config interface 'lan'\n\toption device 'br-guest'\n"),
                "interface 'lan': device 'br-guest' is already watched by interface 'guest'",
            ),
            (
                "config agent 'agent'\n\toption platform 'toaster'\n".to_owned(),
                "agent 'agent': option platform: unknown variant `toaster`",
            ),
            (
                "config agent 'agent'\n\toption heartbeat_secs '0'\n".to_owned(),
                "agent 'agent': option heartbeat_secs: heartbeat_secs = 0: must be a positive number",
            ),
            (
                "config agent 'agent'\n\toption heartbeat_secs 'often'\n".to_owned(),
                "agent 'agent': option heartbeat_secs: \"often\" is not a number",
            ),
            (
                "config agent 'agent'\n\toption portal 'http://x'\n".to_owned(),
                "agent 'agent': option portal: \"http://x\" is not an https:// address",
            ),
            (
                "config agent 'agent'\n\toption log_format 'xml'\n".to_owned(),
                "agent 'agent': option log_format: unknown variant `xml`",
            ),
            (
                "config agent 'a'\nconfig agent 'b'\n".to_owned(),
                "line 2: agent 'b': there may be one 'agent' section; the first is agent 'a' on line 1",
            ),
            (
                "config discovery\n\toption offline_after_missed '0'\n".to_owned(),
                "discovery '@discovery[0]': option offline_after_missed: discovery.offline_after_missed = 0",
            ),
            (
                "config discovery\n\toption dns_server 'resolver'\n".to_owned(),
                "option dns_server: discovery.dns_server = \"resolver\"",
            ),
            (
                "config wifi 'x'\n".to_owned(),
                "wifi 'x': unknown section type 'wifi': known types are agent, discovery",
            ),
            (
                "config agent\n\toption reconnect_initial_ms '5000'\n\toption reconnect_max_secs '1'\n"
                    .to_owned(),
                "reconnect_initial_ms (5000 ms) is larger than reconnect_max_secs",
            ),
            ("config agent\n\toption x 'unterminated\n".to_owned(), "line 2: unterminated"),
        ] {
            let err = convert(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}\n  got: {err}\n  want: {needle}");
        }
    }
}
