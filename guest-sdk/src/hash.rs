//! Stable hashing: the same input gives the same number on every node, build and platform.

use std::net::IpAddr;

/// FNV-1a, 64-bit. Stable across platforms and releases (unlike `std`'s `DefaultHasher`).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A strong 64-bit mixer (the splitmix64 finalizer): spreads nearby inputs over the whole range.
pub fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Combines two hashes into one, order-sensitive.
pub fn combine(a: u64, b: u64) -> u64 {
    mix64(a ^ mix64(b.wrapping_add(0x9e37_79b9_7f4a_7c15)))
}

/// The stable key the host gives a backend: the hash of its `host:port` address.
pub fn backend_key(address: &str) -> u64 {
    mix64(fnv1a64(address.as_bytes()))
}

/// A stable hash of an IP address (IPv4-mapped IPv6 addresses hash like their IPv4 form).
pub fn ip_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => mix64(u64::from(u32::from(v4))),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => mix64(u64::from(u32::from(v4))),
            None => {
                let bits = u128::from(v6);
                combine((bits >> 64) as u64, bits as u64)
            }
        },
    }
}

/// Maps a uniformly distributed `x` onto `0..n` without modulo bias worth measuring.
pub fn scale(x: u64, n: u64) -> u64 {
    ((u128::from(x) * u128::from(n)) >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn mapped_v6_hashes_like_v4() {
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        let v6: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(ip_key(v4), ip_key(v6));
        assert_ne!(ip_key(v4), ip_key("10.1.2.4".parse().unwrap()));
    }

    #[test]
    fn scale_stays_in_range() {
        for x in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(scale(x, 7) < 7);
        }
        assert_eq!(scale(u64::MAX, 7), 6);
    }
}
