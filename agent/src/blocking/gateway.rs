//! Which IPv4 gateway a box pauses a segment's devices from: the interface's configured `gateway`, else the
//! default route's gateway when that route leaves through the interface (read from the kernel's route table,
//! `/proc/thread-self/net/route`, so it is the namespace of the calling thread: [`route_table`], which
//! discovery uses too).

use std::net::Ipv4Addr;

/// `RTF_UP | RTF_GATEWAY`.
const UP_GATEWAY: u32 = 0x1 | 0x2;

/// The gateway of the lowest-metric default route leaving through `iface`, from the text of
/// `/proc/net/route` (hexadecimal, addresses in the kernel's byte order: little-endian on the machines
/// the agent runs on, so read as native-endian).
pub fn default_gateway_in(table: &str, iface: &str) -> Option<Ipv4Addr> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            if cols.len() < 8 || cols[0] != iface || cols[1] != "00000000" || cols[7] != "00000000"
            {
                return None;
            }
            let flags = u32::from_str_radix(cols[3], 16).ok()?;
            if flags & UP_GATEWAY != UP_GATEWAY {
                return None;
            }
            let raw = u32::from_str_radix(cols[2], 16).ok()?;
            let gateway = Ipv4Addr::from(raw.to_ne_bytes());
            let metric: u32 = cols[6].parse().ok()?;
            (!gateway.is_unspecified()).then_some((metric, gateway))
        })
        .min_by_key(|(metric, _)| *metric)
        .map(|(_, gateway)| gateway)
}

/// The kernel's IPv4 route table (the text of `/proc/net/route`) in the calling thread's network namespace:
/// `/proc/thread-self/net/route`, else (kernels before 3.17) `/proc/net/route`. `/proc/net` is the
/// namespace of the process's main thread, which is not the caller's after a `setns` on another thread.
pub fn route_table() -> std::io::Result<String> {
    std::fs::read_to_string("/proc/thread-self/net/route")
        .or_else(|_| std::fs::read_to_string("/proc/net/route"))
}

/// The default route's gateway through `iface` in the calling thread's network namespace, if any.
pub fn default_gateway(iface: &str) -> Option<Ipv4Addr> {
    default_gateway_in(&route_table().ok()?, iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(ip: Ipv4Addr) -> String {
        format!("{:08X}", u32::from_ne_bytes(ip.octets()))
    }

    #[test]
    fn the_default_route_through_the_interface_gives_the_gateway() {
        let gw = Ipv4Addr::new(192, 168, 1, 254);
        let other = Ipv4Addr::new(10, 0, 0, 1);
        let table = format!(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             wan0\t00000000\t{}\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             lan0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
             lan0\t00000000\t{}\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             lan0\t00000000\t{}\t0003\t0\t0\t50\t00000000\t0\t0\t0\n\
             lan1\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n",
            hex(other),
            hex(Ipv4Addr::new(192, 168, 1, 253)),
            hex(gw),
        );
        assert_eq!(default_gateway_in(&table, "lan0"), Some(gw));
        assert_eq!(default_gateway_in(&table, "wan0"), Some(other));
        // A default route without a gateway (point-to-point) and an interface without one.
        assert_eq!(default_gateway_in(&table, "lan1"), None);
        assert_eq!(default_gateway_in(&table, "lan2"), None);
        assert_eq!(default_gateway_in("", "lan0"), None);
    }
}
