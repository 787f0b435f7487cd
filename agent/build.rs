//! Compiles the IEEE MAC address registries into compact binary tables for `discovery::oui`, and stamps the
//! build with its version, target triple and (test builds only) a fault (`build_info`).
//!
//! Build facts (read by `src/build_info.rs`):
//! - `OUTPOST_AGENT_VERSION`: `OUTPOST_BUILD_VERSION` from the environment, else the crate's version. The
//!   over-the-air update tests build the agent under other versions this way.
//! - `OUTPOST_TARGET`: the target triple being built (`check_target` of updates compares releases with it).
//! - `OUTPOST_FAULT`: `OUTPOST_BUILD_FAULT` (`crash-at-start` or `never-connect`), empty in normal builds:
//!   the update tests need a build that crashes at start and one that never reaches the portal.
//!
//! Reads `oui.csv` (MA-L, 24-bit), `mam.csv` (MA-M, 28-bit), `iab.csv` (IAB, 36-bit) and, when present,
//! `oui36.csv` (MA-S, 36-bit) from `OUTPOST_IEEE_DIR` (default `/usr/share/ieee-data`, the Debian package
//! `ieee-data`). Writes to `OUT_DIR`:
//! - `oui24.bin`, `oui28.bin`, `oui36.bin`: records sorted by prefix, each the prefix big-endian in 3, 4 or
//!   5 bytes followed by a little-endian u16 vendor index;
//! - `oui_vendors.txt` (the deduplicated vendor names concatenated) and `oui_vendor_offsets.bin` (one
//!   little-endian u32 start offset per vendor, plus the end).

use std::collections::{BTreeMap, HashMap};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const DEFAULT_IEEE_DIR: &str = "/usr/share/ieee-data";

/// Splits CSV text into records of fields: commas separate fields, line breaks records; double quotes
/// group (line breaks included, as some IEEE addresses span lines) and `""` is a quote inside quotes.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => record.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            _ => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// Prefix length in bits for a registry name, from the CSV's first column.
fn bits_of(registry: &str) -> Option<u32> {
    match registry {
        "MA-L" => Some(24),
        "MA-M" => Some(28),
        "IAB" | "MA-S" => Some(36),
        _ => None,
    }
}

fn fail(msg: String) -> ExitCode {
    println!("cargo:warning={msg}");
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}

const FAULTS: [&str; 3] = ["", "crash-at-start", "never-connect"];

/// The `cargo:rustc-env` lines of the build facts; an unknown fault is an error.
fn build_facts() -> Result<(), String> {
    println!("cargo:rerun-if-env-changed=OUTPOST_BUILD_VERSION");
    println!("cargo:rerun-if-env-changed=OUTPOST_BUILD_FAULT");
    let version = env::var("OUTPOST_BUILD_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| env::var("CARGO_PKG_VERSION").ok())
        .ok_or("neither OUTPOST_BUILD_VERSION nor CARGO_PKG_VERSION is set")?;
    if !version
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
    {
        return Err(format!(
            "OUTPOST_BUILD_VERSION={version:?}: use MAJOR.MINOR.PATCH[-pre] ([0-9A-Za-z.-])"
        ));
    }
    let target =
        env::var("TARGET").map_err(|_| "TARGET is not set (build.rs must run under cargo)")?;
    let fault = env::var("OUTPOST_BUILD_FAULT").unwrap_or_default();
    if !FAULTS.contains(&fault.as_str()) {
        return Err(format!(
            "OUTPOST_BUILD_FAULT={fault:?}: expected crash-at-start or never-connect (test builds only), or unset"
        ));
    }
    println!("cargo:rustc-env=OUTPOST_AGENT_VERSION={version}");
    println!("cargo:rustc-env=OUTPOST_TARGET={target}");
    println!("cargo:rustc-env=OUTPOST_FAULT={fault}");
    Ok(())
}

fn main() -> ExitCode {
    if let Err(e) = build_facts() {
        return fail(e);
    }
    println!("cargo:rerun-if-env-changed=OUTPOST_IEEE_DIR");
    println!("cargo:rerun-if-changed=build.rs");
    let dir =
        PathBuf::from(env::var("OUTPOST_IEEE_DIR").unwrap_or_else(|_| DEFAULT_IEEE_DIR.into()));
    let Some(out) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return fail("OUT_DIR is not set (build.rs must run under cargo)".into());
    };
    println!("cargo:rerun-if-changed={}", dir.display());
    // (bits, prefix) -> vendor; the first file listing a prefix wins.
    let mut entries: BTreeMap<(u32, u64), String> = BTreeMap::new();
    for (file, required) in [
        ("oui.csv", true),
        ("mam.csv", true),
        ("iab.csv", true),
        ("oui36.csv", false),
    ] {
        let path = dir.join(file);
        // A missing file would make cargo rerun this script on every build: watch the folder instead.
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(_) if !required => continue,
            Err(e) => {
                return fail(format!(
                    "read the IEEE MAC registry {}: {e} (install the Debian package `ieee-data` with \
                     `apt-get install ieee-data`, or set OUTPOST_IEEE_DIR to a folder holding oui.csv, \
                     mam.csv and iab.csv)",
                    path.display()
                ))
            }
        };
        if let Err(e) = parse(&path, &text, &mut entries) {
            return fail(e);
        }
    }
    if entries.len() < 1000 {
        return fail(format!(
            "the IEEE registries in {} hold only {} entries: the files look truncated (reinstall `ieee-data`)",
            dir.display(),
            entries.len()
        ));
    }
    match write_tables(&out, &entries) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(format!("write the OUI tables to {}: {e}", out.display())),
    }
}

fn parse(
    path: &Path,
    text: &str,
    entries: &mut BTreeMap<(u32, u64), String>,
) -> Result<(), String> {
    for (n, fields) in csv_records(text).into_iter().enumerate().skip(1) {
        if fields.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let (Some(registry), Some(assignment), Some(name)) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            return Err(format!(
                "{} record {}: expected Registry,Assignment,Organization Name",
                path.display(),
                n + 1
            ));
        };
        let Some(bits) = bits_of(registry.trim()) else {
            continue;
        };
        let assignment = assignment.trim();
        let prefix = u64::from_str_radix(assignment, 16)
            .ok()
            .filter(|_| assignment.len() as u32 * 4 == bits)
            .ok_or_else(|| {
                format!(
                    "{} record {}: bad assignment {assignment:?}",
                    path.display(),
                    n + 1
                )
            })?;
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.is_empty() {
            continue;
        }
        entries.entry((bits, prefix)).or_insert(name);
    }
    Ok(())
}

fn write_tables(out: &Path, entries: &BTreeMap<(u32, u64), String>) -> std::io::Result<()> {
    let mut vendor_ids: HashMap<&str, u16> = HashMap::new();
    let mut vendors: Vec<&str> = Vec::new();
    let mut tables: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for ((bits, prefix), name) in entries {
        let id = match vendor_ids.get(name.as_str()) {
            Some(id) => *id,
            None => {
                let id = u16::try_from(vendors.len()).map_err(|_| {
                    std::io::Error::other(
                        "more than 65536 distinct vendor names: widen the vendor index",
                    )
                })?;
                vendors.push(name);
                vendor_ids.insert(name, id);
                id
            }
        };
        let width = match bits {
            24 => 3,
            28 => 4,
            _ => 5,
        };
        let table = tables.entry(*bits).or_default();
        table.extend_from_slice(&prefix.to_be_bytes()[8 - width..]);
        table.extend_from_slice(&id.to_le_bytes());
    }
    for bits in [24, 28, 36] {
        let table = tables.remove(&bits).unwrap_or_default();
        fs::write(out.join(format!("oui{bits}.bin")), table)?;
    }
    let mut text = String::new();
    let mut offsets = Vec::new();
    for v in &vendors {
        offsets.extend_from_slice(&(text.len() as u32).to_le_bytes());
        text.push_str(v);
    }
    offsets.extend_from_slice(&(text.len() as u32).to_le_bytes());
    fs::write(out.join("oui_vendors.txt"), text)?;
    fs::write(out.join("oui_vendor_offsets.bin"), offsets)?;
    Ok(())
}
