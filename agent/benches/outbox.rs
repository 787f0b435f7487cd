//! What a durable outbox append and an acknowledgement cost on this machine's disk:
//! `cargo bench -p outpost-agent --bench outbox`.

use std::time::Instant;

use anyhow::Result;
use outpost_agent::store::Store;
use outpost_cloud_link::outbox::Outbox;

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path())?;
    let mut outbox = Outbox::open(store.outbox_log(), 1 << 24)?;
    let n: u32 = 2_000;
    let start = Instant::now();
    for _ in 0..n {
        outbox.push("agents/x/up/heartbeat", false, |_| vec![b'x'; 200])?;
    }
    let push = start.elapsed() / n;
    let start = Instant::now();
    for seq in 1..=u64::from(n) {
        outbox.ack(seq)?;
    }
    let ack = start.elapsed() / n;
    println!(
        "outbox over sled, {n} messages of 200 bytes: durable push {push:?} each, ack {ack:?} each"
    );
    Ok(())
}
