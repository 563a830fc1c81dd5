//! Files for the gateway's other tools (`--output FORMAT:PATH`), each
//! rewritten atomically whenever the set changes: plain CIDR lines (Palo
//! Alto external dynamic lists, FortiGate threat feeds), JSON and CSV.

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
}

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
            other => return Err(format!("{other:?} is not a format (plain, json, csv)")),
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
    }
    out
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
