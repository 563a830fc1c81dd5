//! Fees for IP whitelisting: what an application owes, decided by a fee
//! schedule the regulator sets (`--fee-schedule`), and the payment ids
//! (PSIDs) the collecting banks are paid against.
//!
//! The rule (DOMAIN.md, "Fee"): call-centre VoIP and video-conferencing
//! registrations owe a fee per address once the institution's whitelisted
//! addresses, active and pending and counted across its registrations of
//! those kinds, reach five. VPN registrations are free.
//!
//! How addresses count: an IPv4 prefix counts every address it holds (a /29
//! counts 8, a /24 256). An IPv6 prefix counts as one address: a site is
//! delegated a prefix, not addresses, and counting 2^64 addresses per /64
//! would price IPv6 out and push applicants back to IPv4. A registration by
//! MSISDN alone (no source prefix) counts none.
//!
//! What an application is charged for: a submission or a renewal (a new
//! term) its whole source set; an amendment of an approved registration only
//! the addresses it adds (an amendment that shrinks the set owes nothing,
//! and what was paid stays paid). Amending an application still undecided
//! re-assesses it: what is already paid for counts, an unpaid challan is
//! replaced by one for what is still owed.

use std::{fmt, str::FromStr};

use ipnet::IpNet;
use serde::Deserialize;

use super::db_enum::db_enum;
use super::registration::Kind;
use super::violations::Invalid;

/// The fee schedule: which kinds pay, from how many addresses, how much.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeSchedule {
    /// The four digits every PSID we issue starts with (the biller code the
    /// collecting banks know us by).
    pub psid_prefix: String,
    #[serde(rename = "rule", default)]
    pub rules: Vec<FeeRule>,
}

/// One line of the schedule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeRule {
    /// The kinds this rule counts and charges (e.g. `CALL_CENTER_VOIP`).
    #[serde(deserialize_with = "kinds")]
    pub kinds: Vec<Kind>,
    /// The institution's count of whitelisted addresses from which the fee is owed.
    pub from_addresses: u64,
    /// The fee per address, in whole rupees.
    pub pkr_per_address: u64,
}

fn kinds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Kind>, D::Error> {
    let names: Vec<String> = Deserialize::deserialize(d)?;
    names
        .iter()
        .map(|n| Kind::from_db(n).ok_or_else(|| serde::de::Error::custom(format!("unknown kind {n}"))))
        .collect()
}

/// The schedule as the regulation publishes it; the rate is ours until the
/// regulator's own schedule file says otherwise.
pub const DEFAULT_SCHEDULE: &str = r#"# Fees for IP whitelisting (DOMAIN.md, "Fee"): call centres and video
# conferencing pay per address once the institution's whitelisted
# addresses (active and pending, these kinds) reach five. VPNs are free.
psid_prefix = "1001"

[[rule]]
kinds = ["CALL_CENTER_VOIP", "VIDEO_CONFERENCING"]
from_addresses = 5
pkr_per_address = 5000
"#;

impl Default for FeeSchedule {
    fn default() -> Self {
        DEFAULT_SCHEDULE.parse().expect("the default fee schedule parses")
    }
}

impl FromStr for FeeSchedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let schedule: FeeSchedule = toml::from_str(s).map_err(|e| e.to_string())?;
        if schedule.psid_prefix.len() != 4 || !schedule.psid_prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err("psid_prefix must be four digits".into());
        }
        let mut seen: Vec<Kind> = Vec::new();
        for rule in &schedule.rules {
            if rule.kinds.is_empty() || rule.pkr_per_address == 0 {
                return Err("each rule names at least one kind and a fee above zero".into());
            }
            if let Some(k) = rule.kinds.iter().find(|k| seen.contains(k)) {
                return Err(format!("{k} appears in more than one rule"));
            }
            seen.extend(&rule.kinds);
        }
        Ok(schedule)
    }
}

impl FeeSchedule {
    /// The rule that charges `kind`, if any (none: it is free).
    pub fn rule(&self, kind: Kind) -> Option<&FeeRule> {
        self.rules.iter().find(|r| r.kinds.contains(&kind))
    }
}

/// How many addresses a prefix counts for the fee (see the module's rule).
pub fn addresses(net: &IpNet) -> u64 {
    match net {
        IpNet::V4(n) => 1u64 << (32 - n.prefix_len()),
        IpNet::V6(_) => 1,
    }
}

/// How many addresses a set of prefixes counts.
pub fn count(nets: &[IpNet]) -> u64 {
    nets.iter().map(addresses).sum()
}

/// How many addresses `after` counts that `before` did not: what an
/// amendment adds. Prefixes are nested or disjoint, so each new prefix is
/// covered by an old one, covers some old ones, or is new.
pub fn added(before: &[IpNet], after: &[IpNet]) -> u64 {
    after
        .iter()
        .map(|p| {
            if before.iter().any(|q| q.contains(p)) {
                return 0;
            }
            match p {
                IpNet::V4(_) => {
                    let covered: u64 = before.iter().filter(|q| p.contains(*q)).map(addresses).sum();
                    addresses(p).saturating_sub(covered)
                }
                // One per prefix: a prefix widened over an old one is not new.
                IpNet::V6(_) => u64::from(!before.iter().any(|q| p.contains(q))),
            }
        })
        .sum()
}

/// What an application asks to whitelist, for the fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Application {
    pub kind: Kind,
    /// The addresses this application is charged for (all of a submission's
    /// or renewal's, an amendment's added ones).
    pub chargeable: u64,
    /// The institution's whitelisted addresses of the rule's kinds, active
    /// and pending, this application's included.
    pub institution_total: u64,
    /// Addresses already paid for on this application.
    pub paid: u64,
}

/// A fee owed: so many addresses at the rule's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owed {
    pub addresses: u64,
    pub amount_pkr: u64,
}

impl FeeSchedule {
    /// What `app` still owes beyond what is paid (`None`: nothing).
    pub fn assess(&self, app: &Application) -> Option<Owed> {
        let rule = self.rule(app.kind)?;
        if app.institution_total < rule.from_addresses {
            return None;
        }
        let addresses = app.chargeable.saturating_sub(app.paid);
        (addresses > 0).then(|| Owed {
            addresses,
            amount_pkr: addresses.saturating_mul(rule.pkr_per_address),
        })
    }
}

db_enum!(
    /// Where a challan stands: UNPAID, then PAID (the bank confirmed) or
    /// CANCELLED (re-assessed, or its application ended first); a paid one
    /// of a refused or withdrawn application REFUND_DUE, then REFUNDED.
    ChallanStatus {
        Unpaid => "UNPAID",
        Paid => "PAID",
        Cancelled => "CANCELLED",
        RefundDue => "REFUND_DUE",
        Refunded => "REFUNDED",
    }
);

/// A payment id: 18 digits, as Pakistan's bill payment networks print on a
/// challan: our four-digit biller prefix, a 13-digit serial and a Luhn check
/// digit (so a mistyped id is caught before anyone looks it up).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Psid(String);

impl Psid {
    /// The PSID of challan number `serial` under `prefix` (four digits).
    pub fn issue(prefix: &str, serial: u64) -> Self {
        let body = format!("{prefix}{:013}", serial % 10u64.pow(13));
        let check = luhn_check_digit(&body);
        Self(format!("{body}{check}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The digit that makes `body` followed by it pass the Luhn check.
fn luhn_check_digit(body: &str) -> u32 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

impl FromStr for Psid {
    type Err = Invalid;
    fn from_str(s: &str) -> Result<Self, Invalid> {
        let s = s.trim();
        if s.len() != 18 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Invalid("must be 18 digits".into()));
        }
        let (body, check) = s.split_at(17);
        if luhn_check_digit(body) != u32::from(check.as_bytes()[0] - b'0') {
            return Err(Invalid(
                "is not a payment id we issued (its check digit is wrong)".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for Psid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|p| p.parse().unwrap()).collect()
    }

    fn app(kind: Kind, chargeable: u64, institution_total: u64, paid: u64) -> Application {
        Application {
            kind,
            chargeable,
            institution_total,
            paid,
        }
    }

    #[test]
    fn addresses_count_per_ipv4_address_and_per_ipv6_prefix() {
        assert_eq!(count(&nets(&["198.51.100.8/29"])), 8);
        assert_eq!(count(&nets(&["198.51.100.7/32", "203.0.113.0/24"])), 257);
        assert_eq!(count(&nets(&["2400:cb00::/48", "2400:cb00:1::1/128"])), 2);
        assert_eq!(count(&[]), 0, "an MSISDN-only registration counts none");
    }

    #[test]
    fn the_default_schedule_charges_whitelisting_from_five_addresses() {
        let s = FeeSchedule::default();
        assert_eq!(
            s.assess(&app(Kind::CallCenterVoip, 4, 4, 0)),
            None,
            "four is below five"
        );
        assert_eq!(
            s.assess(&app(Kind::CallCenterVoip, 1, 5, 0)),
            Some(Owed {
                addresses: 1,
                amount_pkr: 5000
            }),
            "the fifth address, counting those already whitelisted"
        );
        assert_eq!(
            s.assess(&app(Kind::VideoConferencing, 8, 8, 0)).map(|o| o.addresses),
            Some(8),
            "a /29 counts eight"
        );
        assert_eq!(s.assess(&app(Kind::Vpn, 256, 256, 0)), None, "VPNs stay free");
    }

    #[test]
    fn amendments_pay_for_what_they_add_and_nothing_when_they_shrink() {
        let old = nets(&["198.51.100.0/29", "2400:cb00::/48"]);
        assert_eq!(added(&old, &nets(&["198.51.100.0/30"])), 0, "shrinking adds nothing");
        assert_eq!(
            added(&old, &nets(&["198.51.100.0/28"])),
            8,
            "widening /29 to /28 adds 8"
        );
        assert_eq!(added(&old, &nets(&["198.51.100.0/29", "198.51.100.64/32"])), 1);
        assert_eq!(added(&old, &nets(&["2400:cb00::/48", "2400:cb01::/48"])), 1);
        assert_eq!(
            added(&old, &nets(&["2400:cb00::/47"])),
            0,
            "an IPv6 prefix widened is not new"
        );
        // Re-assessing an undecided application: what is paid counts.
        let s = FeeSchedule::default();
        assert_eq!(s.assess(&app(Kind::CallCenterVoip, 8, 8, 8)), None, "paid in full");
        assert_eq!(
            s.assess(&app(Kind::CallCenterVoip, 4, 9, 8)),
            None,
            "shrunk below what is paid"
        );
        assert_eq!(
            s.assess(&app(Kind::CallCenterVoip, 16, 16, 8)).map(|o| o.amount_pkr),
            Some(40_000)
        );
    }

    #[test]
    fn a_schedule_file_is_checked() {
        assert!(
            "psid_prefix = \"12\""
                .parse::<FeeSchedule>()
                .unwrap_err()
                .contains("four digits")
        );
        let unknown = "psid_prefix = \"1001\"\n[[rule]]\nkinds = [\"FAX\"]\nfrom_addresses = 1\npkr_per_address = 1";
        assert!(unknown.parse::<FeeSchedule>().unwrap_err().contains("unknown kind FAX"));
        let twice = "psid_prefix = \"1001\"\n[[rule]]\nkinds = [\"VPN\"]\nfrom_addresses = 1\npkr_per_address = 1\n[[rule]]\nkinds = [\"VPN\"]\nfrom_addresses = 2\npkr_per_address = 1";
        assert!(twice.parse::<FeeSchedule>().unwrap_err().contains("more than one rule"));
        let free: FeeSchedule = "psid_prefix = \"1001\"".parse().unwrap();
        assert_eq!(free.assess(&app(Kind::CallCenterVoip, 50, 50, 0)), None);
    }

    #[test]
    fn psids_are_eighteen_digits_with_a_check_digit() {
        let psid = Psid::issue("1001", 42);
        assert_eq!(psid.as_str().len(), 18);
        assert!(psid.as_str().starts_with("10010000000000042"));
        assert_eq!(psid.as_str().parse::<Psid>().unwrap(), psid);
        // Any single digit mistyped is caught.
        let mut typo = psid.as_str().as_bytes().to_vec();
        typo[9] = if typo[9] == b'9' { b'0' } else { typo[9] + 1 };
        assert!(String::from_utf8(typo).unwrap().parse::<Psid>().is_err());
        assert!("12345".parse::<Psid>().is_err());
        // Known Luhn vector: 7992739871 has check digit 3.
        assert_eq!(luhn_check_digit("7992739871"), 3);
    }
}
