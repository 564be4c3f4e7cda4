//! Helpers shared by the integration tests of several crates.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The kernel's ephemeral port range, from which outgoing connections take their local port.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u16>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32768, 60999))
}

/// A loopback port nothing listens on, chosen outside the ephemeral range.
///
/// A port from `bind(":0")` is an ephemeral one: once its server is killed, any client's outgoing
/// connection may take it as its local port and the restarted server fails to bind. Ports below
/// (or above) the ephemeral range are never handed out that way. Each process starts at an offset
/// of its own so that test binaries running side by side rarely probe the same ports.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (lo, hi) = ephemeral_range();
    let (first, last) = if lo > 12_000 {
        (10_000u32, u32::from(lo) - 1)
    } else {
        (u32::from(hi) + 1, 65_535)
    };
    let span = last - first + 1;
    let start = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = first + (start + n) % span;
        let port = u16::try_from(port).expect("port range");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {first}..={last}");
}

/// `127.0.0.1:<free_port()>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_outside_the_ephemeral_range_and_distinct() {
        let (lo, hi) = ephemeral_range();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        for p in &ports {
            assert!(*p < lo || *p > hi, "{p} is ephemeral ({lo}-{hi})");
            assert!(TcpListener::bind(("127.0.0.1", *p)).is_ok());
        }
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }
}
