//! Files for the gateway's other tools (`--output FORMAT:PATH`), each
//! rewritten atomically whenever the set changes: plain CIDR lines (Palo
//! Alto external dynamic lists, FortiGate threat feeds), JSON, CSV, a
//! MikroTik address-list script, a Suricata IP reputation list and a Zeek
//! Intel file.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::str::FromStr;

use crate::set::ActiveSet;
use crate::state::write_atomically;

/// A file format the agent writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One prefix per line, each once: what EDLs and threat feeds read.
    Plain,
    /// The position and every entry with its registration.
    Json,
    /// `prefix,reference,kind,peers,valid_until` (peers space-separated).
    Csv,
    /// A RouterOS script for `/import`: adds what is missing to the
    /// `vpn-registry` address lists, then removes what is no longer
    /// registered (never an empty list in between).
    Mikrotik,
    /// Suricata IP reputation (`reputation-files`): `CIDR,category,score`,
    /// category 1 (`vpnregistry` in the categories file), score 127.
    Suricata,
    /// A Zeek Intel framework file: `Intel::ADDR` for host routes,
    /// `Intel::SUBNET` for prefixes.
    Zeek,
}

/// The address list (MikroTik) and Intel source (Zeek) the agent fills.
pub const LIST_NAME: &str = "vpn-registry";
/// The Suricata reputation category of registered sources.
pub const SURICATA_CATEGORY: u8 = 1;

/// One `--output FORMAT:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub format: Format,
    pub path: PathBuf,
}

impl FromStr for Output {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (format, path) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected FORMAT:PATH, such as plain:/var/lib/edl/vpn.txt"))?;
        let format = match format {
            "plain" => Format::Plain,
            "json" => Format::Json,
            "csv" => Format::Csv,
            "mikrotik" => Format::Mikrotik,
            "suricata" => Format::Suricata,
            "zeek" => Format::Zeek,
            other => {
                return Err(format!(
                    "{other:?} is not a format (plain, json, csv, mikrotik, suricata, zeek)"
                ));
            }
        };
        if path.is_empty() {
            return Err(format!("{s:?}: the path is empty"));
        }
        Ok(Self {
            format,
            path: path.into(),
        })
    }
}

impl Output {
    /// Writes `set` in this output's format, atomically.
    pub fn write(&self, set: &ActiveSet) -> std::io::Result<()> {
        write_atomically(&self.path, render(self.format, set).as_bytes())
    }
}

/// `set` in `format`.
pub fn render(format: Format, set: &ActiveSet) -> String {
    let mut out = String::new();
    match format {
        Format::Plain => {
            for prefix in set.prefixes() {
                let _ = writeln!(out, "{prefix}");
            }
        }
        Format::Json => {
            let entries: Vec<_> = set.entries().collect();
            let document = serde_json::json!({
                "session": set.position.session,
                "serial": set.position.serial,
                "entries": entries,
            });
            out = serde_json::to_string_pretty(&document).unwrap_or_default();
            out.push('\n');
        }
        Format::Csv => {
            out.push_str("prefix,reference,kind,peers,valid_until\n");
            for e in set.entries() {
                let peers: Vec<String> = e.peers.iter().map(ToString::to_string).collect();
                let until = e.valid_until.map(|t| t.to_string()).unwrap_or_default();
                // No field can hold a comma, a quote or a line break (prefixes,
                // references like VPN-2026-000001, kinds, numbers): no quoting.
                let _ = writeln!(
                    out,
                    "{},{},{},{},{until}",
                    e.prefix,
                    e.reference,
                    e.kind,
                    peers.join(" ")
                );
            }
        }
        Format::Mikrotik => mikrotik(set, &mut out),
        Format::Suricata => {
            for prefix in set.prefixes() {
                let _ = writeln!(out, "{prefix},{SURICATA_CATEGORY},127");
            }
        }
        Format::Zeek => {
            out.push_str("#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\n");
            for e in set.entries() {
                let (indicator, kind) = match e.prefix.prefix_len() == e.prefix.max_prefix_len() {
                    true => (e.prefix.addr().to_string(), "Intel::ADDR"),
                    false => (e.prefix.to_string(), "Intel::SUBNET"),
                };
                let _ = writeln!(out, "{indicator}\t{kind}\t{LIST_NAME}\t{} {}", e.reference, e.kind);
            }
        }
    }
    out
}

/// The RouterOS script: each family's list gains what is missing first
/// (`on-error` skips what is there), then loses what is not registered.
fn mikrotik(set: &ActiveSet, out: &mut String) {
    let prefixes = set.prefixes();
    for (family, v6) in [("ip", false), ("ipv6", true)] {
        // RouterOS shows an IPv4 host entry without its /32: written as it
        // reads back, so the keep list matches.
        let mine: Vec<String> = prefixes
            .iter()
            .filter(|p| matches!(p, ipnet::IpNet::V6(_)) == v6)
            .map(|p| match p {
                ipnet::IpNet::V4(n) if n.prefix_len() == 32 => n.addr().to_string(),
                p => p.to_string(),
            })
            .collect();
        let _ = writeln!(out, "/{family} firewall address-list");
        for p in &mine {
            let _ = writeln!(out, ":do {{ add list={LIST_NAME} address={p} }} on-error={{}}");
        }
        let keep: Vec<String> = mine.iter().map(|p| format!("\"{p}\"")).collect();
        let _ = writeln!(out, ":local keep {{{}}}", keep.join(";"));
        let _ = writeln!(
            out,
            ":foreach i in=[find list={LIST_NAME}] do={{ :if ([:len [:find $keep [get $i address]]] = 0) do={{ remove $i }} }}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::{Entry, Position};

    fn set() -> ActiveSet {
        let entry = |reference: &str, prefix: &str, peers: &[&str]| Entry {
            prefix: prefix.parse().unwrap(),
            reference: reference.into(),
            kind: "VPN".into(),
            peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
            valid_until: Some(1_800_000_000),
        };
        let position = Position {
            session: "s".into(),
            serial: 7,
        };
        ActiveSet::new(
            position,
            [
                entry("VPN-1", "203.0.113.0/24", &["198.51.100.0/24", "2001:db8::/32"]),
                entry("VPN-2", "203.0.113.0/24", &[]),
                entry("VPN-2", "2400:cb00::/48", &[]),
            ],
        )
    }

    #[test]
    fn outputs_are_named_format_colon_path() {
        let o: Output = "plain:/var/lib/edl/vpn.txt".parse().unwrap();
        assert_eq!(
            (o.format, o.path),
            (Format::Plain, PathBuf::from("/var/lib/edl/vpn.txt"))
        );
        assert!("xml:/tmp/x".parse::<Output>().unwrap_err().contains("not a format"));
        assert!("plain".parse::<Output>().is_err());
    }

    #[test]
    fn plain_lists_each_prefix_once() {
        let plain = render(Format::Plain, &set());
        let lines: Vec<&str> = plain.lines().collect();
        assert_eq!(lines, ["203.0.113.0/24", "2400:cb00::/48"]);
        for line in lines {
            line.parse::<ipnet::IpNet>().expect("every line a CIDR");
        }
    }

    #[test]
    fn suricata_lines_follow_its_reputation_grammar() {
        // ip-reputation-format: "<ip or cidr>,<category>,<reputation score>",
        // the category a number 0-60, the score 1-127.
        for line in render(Format::Suricata, &set()).lines() {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields.len(), 3, "{line}");
            fields[0].parse::<ipnet::IpNet>().unwrap();
            assert!(fields[1].parse::<u8>().unwrap() <= 60);
            assert!((1..=127).contains(&fields[2].parse::<u8>().unwrap()));
        }
    }

    #[test]
    fn zeek_intel_is_tab_separated_with_its_fields_header() {
        let zeek = render(Format::Zeek, &set());
        let mut lines = zeek.lines();
        let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
        assert_eq!(
            header,
            ["#fields", "indicator", "indicator_type", "meta.source", "meta.desc"]
        );
        for line in lines {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 4, "one value per declared field: {line:?}");
            match fields[1] {
                "Intel::ADDR" => drop(fields[0].parse::<std::net::IpAddr>().unwrap()),
                "Intel::SUBNET" => drop(fields[0].parse::<ipnet::IpNet>().unwrap()),
                other => panic!("{other} is not an indicator type"),
            }
        }
    }

    #[test]
    fn the_mikrotik_script_adds_before_it_removes() {
        let script = render(Format::Mikrotik, &set());
        let lines: Vec<&str> = script.lines().collect();
        assert_eq!(lines[0], "/ip firewall address-list");
        assert_eq!(
            lines[1],
            ":do { add list=vpn-registry address=203.0.113.0/24 } on-error={}"
        );
        assert_eq!(lines[2], ":local keep {\"203.0.113.0/24\"}");
        assert!(lines[3].starts_with(":foreach i in=[find list=vpn-registry]"));
        assert_eq!(lines[4], "/ipv6 firewall address-list");
        assert!(lines[5].contains("address=2400:cb00::/48"));
        // Braces and brackets balance on every line (RouterOS reads a line as a command).
        for line in &lines {
            assert_eq!(line.matches('{').count(), line.matches('}').count(), "{line}");
            assert_eq!(line.matches('[').count(), line.matches(']').count(), "{line}");
        }
    }

    #[test]
    fn json_and_csv_read_back() {
        let json: serde_json::Value = serde_json::from_str(&render(Format::Json, &set())).unwrap();
        assert_eq!(json["serial"], 7);
        assert_eq!(json["entries"].as_array().unwrap().len(), 3);
        let csv = render(Format::Csv, &set());
        let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(rows[0], ["prefix", "reference", "kind", "peers", "valid_until"]);
        assert!(rows.iter().all(|r| r.len() == 5), "{csv}");
        assert_eq!(rows[1][3], "198.51.100.0/24 2001:db8::/32");
    }
}
