//! ARP sweep, side by side with arp-scan on the same namespace lab: wall time, recall and peak RSS.
//!
//! `cargo bench -p outpost-tests --bench arp_sweep` (root: it builds network namespaces). Labs: a /24 with
//! 250 live hosts, a /22 with 1,000, and a /16 with 1,000 hosts scattered; `OUTPOST_BENCH_SKIP_16=1` skips the
//! /16 (arp-scan's default rate needs minutes for 65,536 targets). Both tools run with their default settings
//! (`arp-scan --localnet`-equivalent: `arp-scan -I IF CIDR`), each as one process under GNU time.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use outpost_tests::lab::{Lab, LabSpec, SegmentSpec};

struct Run {
    wall_s: f64,
    found: HashSet<Ipv4Addr>,
    phantoms: usize,
    peak_rss_kib: u64,
}

/// Runs `argv` in the lab's agent namespace under `/usr/bin/time`, returning stdout and the measures.
fn timed(lab: &Lab, argv: &[&str]) -> Result<(String, f64, u64)> {
    let report = tempfile::NamedTempFile::new()?;
    let report_path = report.path().to_string_lossy().into_owned();
    let mut full = vec!["/usr/bin/time", "-f", "%M", "-o", &report_path];
    full.extend_from_slice(argv);
    let start = Instant::now();
    let out = lab
        .exec(&full)
        .output()
        .with_context(|| format!("running {argv:?}"))?;
    let wall = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("{argv:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let rss = std::fs::read_to_string(report.path())?
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    Ok((String::from_utf8(out.stdout)?, wall, rss))
}

fn score(
    found_ips: impl IntoIterator<Item = Ipv4Addr>,
    live: &HashSet<Ipv4Addr>,
) -> (HashSet<Ipv4Addr>, usize) {
    let found: HashSet<Ipv4Addr> = found_ips.into_iter().collect();
    let phantoms = found.difference(live).count();
    (found.intersection(live).copied().collect(), phantoms)
}

fn arp_scan(lab: &Lab, iface: &str, cidr: &str, live: &HashSet<Ipv4Addr>) -> Result<Run> {
    let (out, wall_s, peak_rss_kib) = timed(lab, &["arp-scan", "-q", "-x", "-I", iface, cidr])?;
    let ips = out
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok());
    let (found, phantoms) = score(ips, live);
    Ok(Run {
        wall_s,
        found,
        phantoms,
        peak_rss_kib,
    })
}

fn outpost_scan(lab: &Lab, iface: &str, cidr: &str, live: &HashSet<Ipv4Addr>) -> Result<Run> {
    let bin = outpost_tests::agent_bin()?;
    let bin = bin.to_string_lossy();
    let (out, wall_s, peak_rss_kib) = timed(
        lab,
        &[
            &bin,
            "scan",
            "--interface",
            iface,
            "--cidr",
            cidr,
            "--json",
            "--no-mdns",
        ],
    )?;
    let devices: Vec<serde_json::Value> =
        serde_json::from_str(&out).context("scan --json output")?;
    let ips = devices
        .iter()
        .filter_map(|d| d["ip"].as_str()?.parse().ok());
    let (found, phantoms) = score(ips, live);
    Ok(Run {
        wall_s,
        found,
        phantoms,
        peak_rss_kib,
    })
}

fn compare(name: &str, spec: SegmentSpec) -> Result<()> {
    let cidr = spec.cidr.clone();
    let iface = spec.iface.clone();
    let built = Instant::now();
    let lab = Lab::build(LabSpec::new().segment(spec))?;
    let live: HashSet<Ipv4Addr> = lab.hosts().map(|h| h.ip).collect();
    eprintln!(
        "{name}: lab of {} hosts built in {:.1} s",
        live.len(),
        built.elapsed().as_secs_f64()
    );
    let theirs = arp_scan(&lab, &iface, &cidr, &live)?;
    let ours = outpost_scan(&lab, &iface, &cidr, &live)?;
    for (tool, r) in [("arp-scan", &theirs), ("outpost-agent scan", &ours)] {
        println!(
            "{name:<22} {tool:<20} {:>7.2} s  recall {:>4}/{:<4} ({:>5.1} %)  phantoms {}  peak RSS {:>6} KiB",
            r.wall_s,
            r.found.len(),
            live.len(),
            100.0 * r.found.len() as f64 / live.len() as f64,
            r.phantoms,
            r.peak_rss_kib
        );
    }
    println!(
        "{name:<22} outpost / arp-scan: time {:.2}x, peak RSS {:.2}x",
        ours.wall_s / theirs.wall_s,
        ours.peak_rss_kib as f64 / theirs.peak_rss_kib.max(1) as f64
    );
    Ok(())
}

fn main() -> Result<()> {
    let base = |o: [u8; 4]| Ipv4Addr::from(o);
    compare(
        "/24, 250 live",
        SegmentSpec::new("lan0", "10.24.0.0/24").hosts_sequential(base([10, 24, 0, 2]), 250),
    )?;
    compare(
        "/22, 1,000 live",
        SegmentSpec::new("lan0", "10.22.0.0/22").hosts_sequential(base([10, 22, 0, 2]), 1000),
    )?;
    if std::env::var_os("OUTPOST_BENCH_SKIP_16").is_none() {
        // 1,000 hosts spread over the /16 with a fixed stride.
        let scattered =
            (0..1000u32).map(|i| Ipv4Addr::from(u32::from(base([10, 16, 0, 0])) + 2 + i * 65));
        compare(
            "/16, 1,000 scattered",
            SegmentSpec::new("lan0", "10.16.0.0/16").hosts_list(scattered),
        )?;
    }
    Ok(())
}
