//! MAC vendor lookup from the IEEE registries compiled into the binary by `build.rs` (MA-L 24-bit, MA-M
//! 28-bit, IAB and MA-S 36-bit prefixes), longest prefix first, and the locally administered bit that marks
//! randomized or virtual MACs.

use pnet_datalink::MacAddr;

/// Records: 3-byte big-endian prefix + u16 LE vendor index, sorted by prefix.
static OUI24: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/oui24.bin"));
/// Records: 4-byte big-endian 28-bit prefix + u16 LE vendor index.
static OUI28: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/oui28.bin"));
/// Records: 5-byte big-endian 36-bit prefix + u16 LE vendor index.
static OUI36: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/oui36.bin"));
/// Every vendor name, concatenated.
static VENDORS: &str = include_str!(concat!(env!("OUT_DIR"), "/oui_vendors.txt"));
/// u32 LE start offset of each vendor name in [`VENDORS`], then the end.
static VENDOR_OFFSETS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/oui_vendor_offsets.bin"));

fn mac_u64(mac: MacAddr) -> u64 {
    let MacAddr(a, b, c, d, e, f) = mac;
    u64::from_be_bytes([0, 0, a, b, c, d, e, f])
}

fn read_be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

fn read_u32_le(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Binary search of `key` in a table of `width`-byte big-endian keys each followed by a u16 vendor index.
fn find(table: &[u8], width: usize, key: u64) -> Option<u16> {
    let record = width + 2;
    let (mut lo, mut hi) = (0, table.len() / record);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at = mid * record;
        let k = read_be(table.get(at..at + width)?);
        match k.cmp(&key) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => {
                let idx = table.get(at + width..at + record)?;
                return Some(u16::from_le_bytes([idx[0], idx[1]]));
            }
        }
    }
    None
}

fn vendor_name(index: u16) -> Option<&'static str> {
    let i = usize::from(index) * 4;
    let start = read_u32_le(VENDOR_OFFSETS, i)? as usize;
    let end = read_u32_le(VENDOR_OFFSETS, i + 4)? as usize;
    VENDORS.get(start..end)
}

/// The organization the IEEE assigned this MAC's prefix to, by longest match (36-bit IAB/MA-S, then 28-bit
/// MA-M, then 24-bit MA-L). `None` for unassigned and for locally administered addresses (no registry
/// covers those). Registry entries named "Private" are returned as is.
pub fn vendor(mac: MacAddr) -> Option<&'static str> {
    if is_locally_administered(mac) {
        return None;
    }
    let m = mac_u64(mac);
    find(OUI36, 5, m >> 12)
        .or_else(|| find(OUI28, 4, m >> 20))
        .or_else(|| find(OUI24, 3, m >> 24))
        .and_then(vendor_name)
}

/// Whether the MAC has the locally administered bit set: randomized (phones, laptops with MAC privacy),
/// virtual (containers, VMs) or hand-assigned; its vendor prefix means nothing.
pub fn is_locally_administered(mac: MacAddr) -> bool {
    mac.0 & 0x02 != 0
}

/// Number of prefixes in the compiled tables (24-bit, 28-bit, 36-bit).
pub fn table_sizes() -> (usize, usize, usize) {
    (OUI24.len() / 5, OUI28.len() / 6, OUI36.len() / 7)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ma_l_entries_are_found() {
        assert_eq!(vendor(mac("00:1a:11:12:34:56")), Some("Google, Inc."));
        // From oui.csv: MA-L,00D0EF,IGT and MA-L,002272,American Micro-Fuel Device Corp.
        assert_eq!(vendor(mac("00:d0:ef:00:00:01")), Some("IGT"));
        assert_eq!(
            vendor(mac("00:22:72:ff:ff:ff")),
            Some("American Micro-Fuel Device Corp.")
        );
    }

    #[test]
    fn ma_m_and_iab_win_over_a_shorter_prefix() {
        // mam.csv: MA-M,208593B,IOG Products LLC (28 bits: 20:85:93:b*).
        assert_eq!(vendor(mac("20:85:93:b1:23:45")), Some("IOG Products LLC"));
        // iab.csv: IAB,0050C27D5,DEUTA-WERKE GmbH, inside the MA-L 00:50:C2 block owned by the IEEE.
        assert_eq!(vendor(mac("00:50:c2:7d:51:00")), Some("DEUTA-WERKE GmbH"));
        assert_ne!(vendor(mac("00:50:c2:7d:61:00")), Some("DEUTA-WERKE GmbH"));
    }

    #[test]
    fn unknown_and_local_macs_have_no_vendor() {
        assert!(is_locally_administered(mac("02:00:00:00:00:01")));
        assert!(is_locally_administered(mac("da:a1:19:00:00:01")));
        assert!(!is_locally_administered(mac("00:1a:11:00:00:01")));
        assert_eq!(vendor(mac("02:1a:11:12:34:56")), None);
    }

    #[test]
    fn tables_are_populated_and_sorted() {
        let (l, m, s) = table_sizes();
        assert!(l > 20_000 && m > 1_000 && s > 1_000, "{l} {m} {s}");
        for (table, width) in [(OUI24, 3), (OUI28, 4), (OUI36, 5)] {
            let keys: Vec<u64> = table
                .chunks(width + 2)
                .map(|r| read_be(&r[..width]))
                .collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
