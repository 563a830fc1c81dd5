//! Public unicast address prefixes: the only address space a registration may
//! name (DOMAIN.md, "Address rules").

use std::{fmt, net::IpAddr, str::FromStr, sync::LazyLock};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::text::echo;
use super::violations::Invalid;

/// Default limit: IPv4 prefixes no shorter than this (a reviewer may override).
pub const MIN_V4_LEN: u8 = 24;
/// Default limit: IPv6 prefixes no shorter than this (a reviewer may override).
pub const MIN_V6_LEN: u8 = 48;

/// IPv4 space that is never public unicast.
static V4_RESERVED: LazyLock<Vec<Ipv4Net>> = LazyLock::new(|| {
    [
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    ]
    .iter()
    .map(|s| s.parse().expect("static prefix"))
    .collect()
});

/// IPv6: only global unicast 2000::/3 ...
static V6_GLOBAL: LazyLock<Ipv6Net> = LazyLock::new(|| "2000::/3".parse().expect("static prefix"));
/// ... minus documentation, IETF protocol assignments, 6to4 and the 3fff::/20 documentation block.
static V6_RESERVED: LazyLock<Vec<Ipv6Net>> = LazyLock::new(|| {
    ["2001:db8::/32", "2001::/23", "2002::/16", "3fff::/20"]
        .iter()
        .map(|s| s.parse().expect("static prefix"))
        .collect()
});

/// A canonical CIDR (host bits zero) wholly inside public unicast space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicPrefix(IpNet);

impl FromStr for PublicPrefix {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        let net = if s.contains('/') {
            IpNet::from_str(s).map_err(|_| Invalid(format!("{} is not a CIDR prefix", echo(s))))?
        } else {
            IpAddr::from_str(s)
                .map(IpNet::from)
                .map_err(|_| Invalid(format!("{} is not an IP address or CIDR prefix", echo(s))))?
        };
        if net.trunc() != net {
            return Err(Invalid(format!(
                "{s} has host bits set; the canonical form is {}",
                net.trunc()
            )));
        }
        Self::try_from(net)
    }
}

impl TryFrom<IpNet> for PublicPrefix {
    type Error = Invalid;
    fn try_from(net: IpNet) -> Result<Self, Invalid> {
        let net = net.trunc();
        let reserved = match net {
            IpNet::V4(v4) => V4_RESERVED.iter().find(|r| overlaps_v4(r, &v4)).map(|r| r.to_string()),
            IpNet::V6(v6) if !V6_GLOBAL.contains(&v6) => Some("outside 2000::/3".to_owned()),
            IpNet::V6(v6) => V6_RESERVED.iter().find(|r| overlaps_v6(r, &v6)).map(|r| r.to_string()),
        };
        match reserved {
            Some(block) => Err(Invalid(format!("{net} is not public unicast space (overlaps {block})"))),
            None => Ok(Self(net)),
        }
    }
}

fn overlaps_v4(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn overlaps_v6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl PublicPrefix {
    pub fn net(&self) -> IpNet {
        self.0
    }

    /// Whether the prefix is no larger than the default size limits.
    pub fn within_default_size(&self) -> bool {
        match self.0 {
            IpNet::V4(n) => n.prefix_len() >= MIN_V4_LEN,
            IpNet::V6(n) => n.prefix_len() >= MIN_V6_LEN,
        }
    }

    pub fn overlaps(&self, other: &PublicPrefix) -> bool {
        self.0.contains(&other.0.network()) || other.0.contains(&self.0.network())
    }
}

impl fmt::Display for PublicPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PublicPrefix, Invalid> {
        s.parse()
    }

    #[test]
    fn accepts_public_space_and_bare_hosts() {
        assert_eq!(parse("8.8.8.0/24").unwrap().to_string(), "8.8.8.0/24");
        assert_eq!(parse("8.8.8.8").unwrap().to_string(), "8.8.8.8/32");
        assert_eq!(parse("2a00:1450::/48").unwrap().to_string(), "2a00:1450::/48");
    }

    #[test]
    fn rejects_host_bits_and_names_the_canonical_form() {
        let e = parse("8.8.8.8/24").unwrap_err();
        assert!(e.0.contains("8.8.8.0/24"), "{e}");
    }

    #[test]
    fn rejects_every_reserved_block() {
        for s in [
            "0.1.2.0/24",
            "10.1.2.0/24",
            "100.64.1.0/24",
            "127.0.0.1",
            "169.254.1.0/24",
            "172.16.5.0/24",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.88.99.0/24",
            "192.168.1.0/24",
            "198.18.0.0/24",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "224.0.0.0/24",
            "255.255.255.255",
            "fc00::/48",
            "fe80::/64",
            "::1",
            "2001:db8::/48",
            "2001:0:1::/48",
            "2002::/48",
            "3fff::/48",
            "8.0.0.0/4",
        ] {
            assert!(parse(s).is_err(), "{s} should be refused");
        }
    }

    #[test]
    fn default_size_limits() {
        assert!(parse("8.8.8.0/24").unwrap().within_default_size());
        assert!(!parse("8.8.8.0/23").unwrap().within_default_size());
        assert!(parse("2a00:1450::/48").unwrap().within_default_size());
        assert!(!parse("2a00:1450::/47").unwrap().within_default_size());
    }
}
