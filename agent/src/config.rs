//! The agent's settings: flags with environment fallbacks, over an optional
//! TOML file (`--config`) with the same names; flags win.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::health::OnStale;
use crate::output::Output;

/// Flags (and `VPN_REGISTRY_AGENT_*` variables).
#[derive(Debug, Parser, Default)]
#[command(
    name = "vpn-registry-agent",
    about = "Keeps a gateway's allow-list in sync with the national VPN registry"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// A TOML file with any of the settings below (flags win).
    #[arg(long, env = "VPN_REGISTRY_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The registry (or a replica) to follow; repeat for failover, in order.
    #[arg(long = "upstream", env = "VPN_REGISTRY_AGENT_UPSTREAM", value_delimiter = ',')]
    pub upstreams: Vec<String>,
    /// The CA that signed the upstreams' certificates (PEM).
    #[arg(long, env = "VPN_REGISTRY_AGENT_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// This gateway's client certificate and key (PEM), where the upstream asks for one.
    #[arg(long, env = "VPN_REGISTRY_AGENT_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    #[arg(long, env = "VPN_REGISTRY_AGENT_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// A file holding an `isp` or `lookup` token.
    #[arg(long, env = "VPN_REGISTRY_AGENT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Where the session, serial and entries are kept across restarts.
    #[arg(long, env = "VPN_REGISTRY_AGENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// A file to keep current: FORMAT:PATH (plain, json, csv, mikrotik,
    /// suricata, zeek); repeatable.
    #[arg(long = "output", env = "VPN_REGISTRY_AGENT_OUTPUT", value_delimiter = ',')]
    pub outputs: Vec<String>,
    /// A command run (by `sh -c`) after the files changed, to reload their reader.
    #[arg(long, env = "VPN_REGISTRY_AGENT_ON_CHANGE")]
    pub on_change: Option<String>,
    /// Answer the current set over HTTP here (plain at `/`, `/json`, and
    /// `/json-delta?session=S&serial=N`), with an ETag.
    #[arg(long, env = "VPN_REGISTRY_AGENT_SERVE")]
    pub serve: Option<std::net::SocketAddr>,
    /// `sets`: keep the nftables sets (and the files); `files`: only the
    /// files and `--serve` (no kernel access needed).
    #[arg(long, env = "VPN_REGISTRY_AGENT_MODE", value_parser = ["sets", "files"])]
    pub mode: Option<String>,
    /// The table the sets live in: FAMILY NAME (default `inet vpn_registry`).
    /// The ISP's own rules that use the sets go in this table.
    #[arg(long, env = "VPN_REGISTRY_AGENT_NFT_TABLE")]
    pub nft_table: Option<String>,
    /// Set names start with this (default `registered`): `registered_hosts4`,
    /// `registered_nets4`, `registered_flows4` and the same with 6.
    #[arg(long, env = "VPN_REGISTRY_AGENT_NFT_SET_PREFIX")]
    pub nft_set_prefix: Option<String>,
    /// Keep the sets of this network namespace (a name under /run/netns
    /// or a path) while talking to the registry from the agent's own.
    #[arg(long, env = "VPN_REGISTRY_AGENT_NFT_NETNS")]
    pub nft_netns: Option<String>,
    /// How often the kernel's sets are compared with the expected set
    /// (and repaired), in seconds (default 300).
    #[arg(long, env = "VPN_REGISTRY_AGENT_VERIFY_INTERVAL")]
    pub verify_interval: Option<u64>,
    /// Seconds without any upstream before the agent calls its set stale
    /// (default 86400: a day): not ready, the alarm raised, `--on-stale`.
    #[arg(long, env = "VPN_REGISTRY_AGENT_MAX_STALE")]
    pub max_stale: Option<u64>,
    /// What the kernel's sets hold once stale: `hold` the last good set
    /// (entries still lapse at their valid_until), `open` (every address
    /// counts as registered) or `closed` (none does). Default hold.
    #[arg(long, env = "VPN_REGISTRY_AGENT_ON_STALE", value_enum)]
    pub on_stale: Option<OnStale>,
    /// Answer /metrics (Prometheus), /readyz and /livez here.
    #[arg(long, env = "VPN_REGISTRY_AGENT_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// What to do (default: run).
#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub enum Command {
    /// Compare the kernel's sets with the state the agent last saved
    /// (counts and digests per set); exit 1 on a difference.
    Verify,
}

/// The same settings in a TOML file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    upstream: Vec<String>,
    upstream_ca: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    token_file: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    #[serde(default)]
    output: Vec<String>,
    on_change: Option<String>,
    serve: Option<std::net::SocketAddr>,
    mode: Option<String>,
    nft_table: Option<String>,
    nft_set_prefix: Option<String>,
    nft_netns: Option<String>,
    verify_interval: Option<u64>,
    max_stale: Option<u64>,
    on_stale: Option<OnStale>,
    metrics_listen: Option<std::net::SocketAddr>,
}

/// Where and how the kernel sets are kept (`--mode sets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftConfig {
    pub target: crate::nft::kernel::Target,
    /// The namespace file, when not the agent's own.
    pub netns: Option<PathBuf>,
    pub verify_interval: std::time::Duration,
}

impl NftConfig {
    /// `inet vpn_registry` and `registered`, in the agent's namespace.
    pub fn new(table: &str, set_prefix: &str, netns: Option<&str>) -> anyhow::Result<Self> {
        let (family, name) = table
            .split_once(' ')
            .ok_or_else(|| anyhow::anyhow!("--nft-table {table:?}: give FAMILY NAME, such as \"inet vpn_registry\""))?;
        if !["inet", "ip", "ip6", "bridge", "netdev"].contains(&family) {
            anyhow::bail!("--nft-table {table:?}: the family is one of inet, ip, ip6, bridge, netdev");
        }
        let netns = netns.map(|n| {
            if n.contains('/') {
                PathBuf::from(n)
            } else {
                Path::new("/run/netns").join(n)
            }
        });
        Ok(Self {
            target: crate::nft::kernel::Target {
                family: family.to_owned(),
                table: name.trim().to_owned(),
                set_prefix: set_prefix.to_owned(),
            },
            netns,
            verify_interval: std::time::Duration::from_secs(300),
        })
    }
}

/// The settings the agent runs with, checked and read.
#[derive(Debug, Clone)]
pub struct Config {
    pub upstreams: Vec<String>,
    /// PEM of the upstreams' CA.
    pub upstream_ca: Option<Vec<u8>>,
    /// PEM of the client certificate and key.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
    pub token: String,
    pub state_dir: PathBuf,
    pub outputs: Vec<Output>,
    pub on_change: Option<String>,
    pub serve: Option<std::net::SocketAddr>,
    /// The kernel sets; `None` with `--mode files`.
    pub nft: Option<NftConfig>,
    pub max_stale: std::time::Duration,
    pub on_stale: OnStale,
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// A day without the registry before the set is called stale.
pub const DEFAULT_MAX_STALE: std::time::Duration = std::time::Duration::from_secs(86_400);

impl Config {
    /// Following `upstreams` with `token`, state in `state_dir`, every
    /// other setting at its default (files only: no kernel sets).
    pub fn new(upstreams: Vec<String>, token: String, state_dir: PathBuf) -> Self {
        Self {
            upstreams,
            upstream_ca: None,
            client_identity: None,
            token,
            state_dir,
            outputs: Vec::new(),
            on_change: None,
            serve: None,
            nft: None,
            max_stale: DEFAULT_MAX_STALE,
            on_stale: OnStale::Hold,
            metrics_listen: None,
        }
    }
}

impl Config {
    /// Flags over the file `--config` names, checked: what is missing or
    /// unreadable is said by name.
    pub fn from_args(args: Args) -> anyhow::Result<Self> {
        let file: File = match &args.config {
            Some(path) => toml::from_str(&read_text(path)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            None => File::default(),
        };
        let pick = |flag: Option<PathBuf>, file: Option<PathBuf>| flag.or(file);
        let upstreams = if args.upstreams.is_empty() {
            file.upstream
        } else {
            args.upstreams
        };
        if upstreams.is_empty() {
            anyhow::bail!(
                "no --upstream: name the registry (or a replica) to follow, such as https://registry.example.pk:50051"
            );
        }
        let outputs = if args.outputs.is_empty() {
            file.output
        } else {
            args.outputs
        };
        let token_file = pick(args.token_file, file.token_file)
            .ok_or_else(|| anyhow::anyhow!("no --token-file: an isp or lookup token is needed"))?;
        let state_dir = pick(args.state_dir, file.state_dir)
            .ok_or_else(|| anyhow::anyhow!("no --state-dir: the agent keeps its state there across restarts"))?;
        let client_identity = match (
            pick(args.client_cert, file.client_cert),
            pick(args.client_key, file.client_key),
        ) {
            (Some(cert), Some(key)) => Some((read(&cert)?, read(&key)?)),
            (None, None) => None,
            _ => anyhow::bail!("--client-cert and --client-key go together"),
        };
        Ok(Self {
            upstreams,
            upstream_ca: pick(args.upstream_ca, file.upstream_ca).map(|p| read(&p)).transpose()?,
            client_identity,
            token: read_text(&token_file)?.trim().to_owned(),
            state_dir,
            outputs: outputs
                .iter()
                .map(|o| o.parse().map_err(|e: String| anyhow::anyhow!("--output {e}")))
                .collect::<anyhow::Result<_>>()?,
            on_change: args.on_change.or(file.on_change),
            serve: args.serve.or(file.serve),
            nft: match args.mode.or(file.mode).as_deref().unwrap_or("sets") {
                "files" => None,
                "sets" => {
                    let mut nft = NftConfig::new(
                        args.nft_table
                            .or(file.nft_table)
                            .as_deref()
                            .unwrap_or("inet vpn_registry"),
                        args.nft_set_prefix
                            .or(file.nft_set_prefix)
                            .as_deref()
                            .unwrap_or("registered"),
                        args.nft_netns.or(file.nft_netns).as_deref(),
                    )?;
                    if let Some(secs) = args.verify_interval.or(file.verify_interval) {
                        nft.verify_interval = std::time::Duration::from_secs(secs.max(1));
                    }
                    Some(nft)
                }
                other => anyhow::bail!("--mode {other:?}: sets or files"),
            },
            max_stale: args
                .max_stale
                .or(file.max_stale)
                .map_or(DEFAULT_MAX_STALE, std::time::Duration::from_secs),
            on_stale: args.on_stale.or(file.on_stale).unwrap_or_default(),
            metrics_listen: args.metrics_listen.or(file.metrics_listen),
        })
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_what_is_missing_is_named() {
        let dir = std::env::temp_dir().join(format!("agent-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "vpr_abc\n").unwrap();
        let file = dir.join("agent.toml");
        let toml = format!(
            "upstream = [\"http://a:1\", \"http://b:2\"]\ntoken-file = {:?}\nstate-dir = \"/var/lib/x\"\noutput = [\"plain:/tmp/p.txt\"]\n",
            dir.join("token")
        );
        std::fs::write(&file, toml).unwrap();
        let args = Args {
            config: Some(file.clone()),
            state_dir: Some("/srv/agent".into()),
            ..Args::default()
        };
        let config = Config::from_args(args).unwrap();
        assert_eq!(config.upstreams, ["http://a:1", "http://b:2"]);
        assert_eq!(config.token, "vpr_abc");
        assert_eq!(config.state_dir, PathBuf::from("/srv/agent"), "the flag wins");
        assert_eq!(config.outputs.len(), 1);
        let missing = Config::from_args(Args::default()).unwrap_err().to_string();
        assert!(missing.contains("--upstream"), "{missing}");
        std::fs::write(&file, "upstreams = []").unwrap();
        let unknown = Config::from_args(Args {
            config: Some(file),
            ..Args::default()
        })
        .unwrap_err()
        .to_string();
        assert!(unknown.contains("unknown field"), "{unknown}");
    }
}
