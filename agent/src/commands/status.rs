//! `outpost-agent status [--json]`: unprovisioned, deleted, active or disabled, with link and outbox.

use outpost_cloud_link::outbox::Outbox;

use super::Exit;
use crate::identity::Identity;
use crate::runtime_status::{pid_alive, status_report};
use crate::state_dir::StateDir;
use crate::store::Store;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON: state, agent_id, name, link, outbox_depth, outbox_dropped, portal, broker, running.
    #[arg(long)]
    pub json: bool,
}

pub fn status(state: &StateDir, args: Args) -> anyhow::Result<Exit> {
    let identity = Identity::load(&state.identity())?;
    let db = state.db();
    let report = status_report(state, identity.as_ref(), pid_alive, || {
        if !db.exists() {
            return None;
        }
        let store = Store::open(&db).ok()?;
        let outbox = Outbox::open(store.outbox_log(), u64::MAX).ok()?;
        Some((outbox.depth(), outbox.dropped()))
    });
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.human());
    }
    Ok(Exit::Ok)
}
