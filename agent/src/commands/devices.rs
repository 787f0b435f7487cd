//! `outpost-agent devices [--json]`: the inventory of this agent, from the running daemon (its control
//! socket) or, when it is stopped, from the database.

use anyhow::Context;
use outpost_cloud_link::inventory::Device;
use serde::Serialize;

use super::Exit;
use crate::control::query_devices;
use crate::discovery::engine::InterfaceStatus;
use crate::state_dir::StateDir;
use crate::store::{Store, StoreError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object on stdout: `{"source": "daemon"|"database", "devices": [...], "interfaces": [...]}`.
    #[arg(long)]
    pub json: bool,
}

#[derive(Serialize)]
struct Listing {
    /// Where the list came from: the running daemon, or the database of a stopped agent.
    source: &'static str,
    devices: Vec<Device>,
    interfaces: Vec<InterfaceStatus>,
}

pub fn devices(state: &StateDir, args: Args) -> anyhow::Result<Exit> {
    let listing = match query_devices(&state.control_socket())? {
        Some(answer) => Listing {
            source: "daemon",
            devices: answer.devices,
            interfaces: answer.interfaces,
        },
        None => {
            let store = match Store::open(&state.db()) {
                Ok(s) => s,
                Err(e @ StoreError::InUse { .. }) => {
                    return Err(e).context(
                        "the daemon holds the database but does not answer on its control socket (is discovery turned off in agent.toml?)",
                    )
                }
                Err(e) => return Err(e.into()),
            };
            let mut devices = store.devices()?;
            devices.sort_by(|a, b| (a.vlan, a.ipv4, &a.mac).cmp(&(b.vlan, b.ipv4, &b.mac)));
            Listing {
                source: "database",
                devices,
                interfaces: Vec::new(),
            }
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&listing)?);
    } else {
        print!("{}", human(&listing.devices));
        for i in listing.interfaces.iter().filter(|i| i.error.is_some()) {
            println!(
                "interface {}: {}",
                i.name,
                i.error.as_deref().unwrap_or_default()
            );
        }
        println!(
            "{} device{} ({} online), from the {}",
            listing.devices.len(),
            if listing.devices.len() == 1 { "" } else { "s" },
            listing.devices.iter().filter(|d| d.online).count(),
            if listing.source == "daemon" {
                "running daemon"
            } else {
                "database (the daemon is not running)"
            }
        );
    }
    Ok(Exit::Ok)
}

/// The table printed without `--json`.
pub fn human(devices: &[Device]) -> String {
    let mut out = format!(
        "{:<15}  {:<17}  {:>4}  {:<8}  {:<7}  {:<32}  VENDOR\n",
        "IP", "MAC", "VLAN", "IFACE", "STATE", "NAME"
    );
    for d in devices {
        let vendor = match (&d.vendor, d.locally_administered) {
            (Some(v), _) => v.clone(),
            (None, true) => "(locally administered)".into(),
            (None, false) => "(unknown)".into(),
        };
        let name = d
            .display_name()
            .map(|n| match d.names.iter().find(|x| x.name == n) {
                Some(x) => format!("{n} ({})", x.source),
                None => n.to_owned(),
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<15}  {:<17}  {:>4}  {:<8}  {:<7}  {:<32}  {vendor}\n",
            d.ipv4.map(|ip| ip.to_string()).unwrap_or_default(),
            d.mac,
            d.vlan.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
            d.interface,
            if d.online { "online" } else { "offline" },
            name,
        ));
    }
    out
}
