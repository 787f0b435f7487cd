//! Router blocking: Outpost's own nftables table, `inet outpost`, and nothing else.
//!
//! ```text
//! table inet outpost {
//!     set blocked_macs { type ether_addr; }
//!     set blocked_ipv4 { type ipv4_addr; }
//!     set blocked_ipv6 { type ipv6_addr; }
//!     chain forward {
//!         type filter hook forward priority filter; policy accept;
//!         ether saddr @blocked_macs drop
//!         ip saddr @blocked_ipv4 drop
//!         ip daddr @blocked_ipv4 drop
//!         ip6 saddr @blocked_ipv6 drop
//!         ip6 daddr @blocked_ipv6 drop
//!     }
//! }
//! ```
//! The chain sees every packet the router forwards, on every interface and VLAN, so a device loses the
//! internet (and other routed segments) but still reaches the router itself and its own segment. A drop in
//! any base chain is final, so other tables' rules cannot let a blocked device through, and this table's
//! `accept` policy decides nothing for them.
//!
//! Every change is one `nft -f -` transaction that states the whole table (declarations that are no-ops
//! when present, the chain's rules flushed and added, each set flushed and filled): the kernel applies all
//! of it or nothing. At start the table is deleted and created again in one transaction, replacing whatever
//! an older agent left. The `nft` program runs behind the [`Nft`] trait ([`NftProgram`] for real).

use std::fmt::Write as _;
use std::future::Future;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::pin::Pin;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::BlockError;

pub const TABLE: &str = "inet outpost";
pub const MACS: &str = "blocked_macs";
pub const IPV4: &str = "blocked_ipv4";
pub const IPV6: &str = "blocked_ipv6";
const CHAIN: &str = "forward";

/// What the sets hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sets {
    /// Lower-case `aa:bb:cc:dd:ee:ff`.
    pub macs: Vec<String>,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
}

impl Sets {
    fn normalized(&self) -> Sets {
        let mut s = self.clone();
        s.macs.sort();
        s.macs.dedup();
        s.ipv4.sort();
        s.ipv4.dedup();
        s.ipv6.sort();
        s.ipv6.dedup();
        s
    }
}

/// The transaction that makes the table hold exactly `sets`. With `replace`, the table is deleted first
/// (start: whatever was there, even of another layout, is replaced); otherwise it is declared (created when
/// missing) and its chain and sets rewritten.
pub fn script(sets: &Sets, replace: bool) -> String {
    let sets = sets.normalized();
    let mut s = String::new();
    if replace {
        // Declaring before deleting makes the delete succeed when the table does not exist.
        let _ = writeln!(s, "add table {TABLE}\ndelete table {TABLE}");
    }
    let _ = writeln!(s, "add table {TABLE}");
    for (name, kind) in [
        (MACS, "ether_addr"),
        (IPV4, "ipv4_addr"),
        (IPV6, "ipv6_addr"),
    ] {
        let _ = writeln!(s, "add set {TABLE} {name} {{ type {kind}; }}");
    }
    let _ = writeln!(
        s,
        "add chain {TABLE} {CHAIN} {{ type filter hook forward priority filter; policy accept; }}"
    );
    let _ = writeln!(s, "flush chain {TABLE} {CHAIN}");
    for rule in [
        format!("ether saddr @{MACS} drop"),
        format!("ip saddr @{IPV4} drop"),
        format!("ip daddr @{IPV4} drop"),
        format!("ip6 saddr @{IPV6} drop"),
        format!("ip6 daddr @{IPV6} drop"),
    ] {
        let _ = writeln!(s, "add rule {TABLE} {CHAIN} {rule}");
    }
    let elements = [
        (MACS, sets.macs.clone()),
        (IPV4, sets.ipv4.iter().map(ToString::to_string).collect()),
        (IPV6, sets.ipv6.iter().map(ToString::to_string).collect()),
    ];
    for (name, items) in elements {
        let _ = writeln!(s, "flush set {TABLE} {name}");
        if !items.is_empty() {
            let _ = writeln!(s, "add element {TABLE} {name} {{ {} }}", items.join(", "));
        }
    }
    s
}

/// The transaction that removes the table (nothing of Outpost stays in the firewall).
pub fn remove_script() -> String {
    format!("add table {TABLE}\ndelete table {TABLE}\n")
}

/// Runs one nftables transaction.
pub trait Nft: Send + Sync + 'static {
    fn apply<'a>(
        &'a self,
        script: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), BlockError>> + Send + 'a>>;
}

/// The `nft` program: `nft -f -` with the script on stdin.
#[derive(Debug, Clone)]
pub struct NftProgram {
    pub program: String,
}

impl Nft for NftProgram {
    fn apply<'a>(
        &'a self,
        script: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), BlockError>> + Send + 'a>> {
        Box::pin(async move {
            let unavailable = |reason: String| BlockError::NftUnavailable {
                program: self.program.clone(),
                reason,
            };
            let mut child = tokio::process::Command::new(&self.program)
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| unavailable(e.to_string()))?;
            if let Some(mut stdin) = child.stdin.take() {
                // A failed write shows in nft's status and stderr.
                let _ = stdin.write_all(script.as_bytes()).await;
            }
            let out = child
                .wait_with_output()
                .await
                .map_err(|e| unavailable(e.to_string()))?;
            if out.status.success() {
                return Ok(());
            }
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            Err(BlockError::Firewall {
                stderr: if stderr.is_empty() {
                    format!("{} exited with {}", self.program, out.status)
                } else {
                    stderr
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_rewrites_the_whole_table_in_one_transaction() {
        let sets = Sets {
            macs: vec!["00:1a:11:00:00:02".into(), "00:1a:11:00:00:01".into()],
            ipv4: vec![Ipv4Addr::new(10, 0, 0, 7)],
            ipv6: Vec::new(),
        };
        let text = script(&sets, false);
        assert_eq!(
            text,
            "add table inet outpost\n\
             add set inet outpost blocked_macs { type ether_addr; }\n\
             add set inet outpost blocked_ipv4 { type ipv4_addr; }\n\
             add set inet outpost blocked_ipv6 { type ipv6_addr; }\n\
             add chain inet outpost forward { type filter hook forward priority filter; policy accept; }\n\
             flush chain inet outpost forward\n\
             add rule inet outpost forward ether saddr @blocked_macs drop\n\
             add rule inet outpost forward ip saddr @blocked_ipv4 drop\n\
             add rule inet outpost forward ip daddr @blocked_ipv4 drop\n\
             add rule inet outpost forward ip6 saddr @blocked_ipv6 drop\n\
             add rule inet outpost forward ip6 daddr @blocked_ipv6 drop\n\
             flush set inet outpost blocked_macs\n\
             add element inet outpost blocked_macs { 00:1a:11:00:00:01, 00:1a:11:00:00:02 }\n\
             flush set inet outpost blocked_ipv4\n\
             add element inet outpost blocked_ipv4 { 10.0.0.7 }\n\
             flush set inet outpost blocked_ipv6\n"
        );
        // Only Outpost's table is named.
        for line in text.lines() {
            assert!(line.contains(" inet outpost"), "{line}");
        }
    }

    #[test]
    fn start_replaces_the_table_and_removal_deletes_it() {
        let sets = Sets {
            macs: vec!["00:1a:11:00:00:01".into()],
            ipv4: Vec::new(),
            ipv6: vec![
                "2001:db8::1".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
        };
        let text = script(&sets, true);
        assert!(text.starts_with(
            "add table inet outpost\ndelete table inet outpost\nadd table inet outpost\n"
        ));
        assert!(
            text.contains("add element inet outpost blocked_ipv6 { 2001:db8::1 }\n"),
            "{text}"
        );
        assert!(
            !text.contains("add element inet outpost blocked_ipv4"),
            "{text}"
        );
        assert_eq!(
            remove_script(),
            "add table inet outpost\ndelete table inet outpost\n"
        );
    }

    #[tokio::test]
    async fn a_missing_program_and_a_refusal_say_what_happened() {
        let missing = NftProgram {
            program: "/nonexistent/nft".into(),
        };
        let err = missing.apply("list ruleset").await.unwrap_err();
        assert!(matches!(err, BlockError::NftUnavailable { .. }), "{err}");
        assert!(err.to_string().contains("blocking.nft"), "{err}");
        // `false` stands in for an nft that refuses (no stderr: the status is named).
        let refusing = NftProgram {
            program: "false".into(),
        };
        let err = refusing.apply("whatever").await.unwrap_err();
        assert!(matches!(err, BlockError::Firewall { .. }), "{err}");
        assert!(err.to_string().contains("exited with"), "{err}");
    }
}
