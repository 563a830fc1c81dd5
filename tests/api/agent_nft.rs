//! The gateway agent's nftables sets, through netlink, in network
//! namespaces the tests create (as root; the host's ruleset is never
//! touched): written and read back, following a real registry through
//! snapshot, deltas, restart and repair, timeouts, and real packets.

use std::path::Path;
use std::time::Duration;

use sqlx::PgPool;
use vpn_registry::domain::principal::Role;
use vpn_registry::pb::InstitutionCategory as C;
use vpn_registry_agent::config::{Config, NftConfig};
use vpn_registry_agent::nft::enforce::Enforcer;
use vpn_registry_agent::nft::kernel::{Kernel, Target};
use vpn_registry_agent::nft::layout::Layout;
use vpn_registry_agent::set::{ActiveSet, Entry, Position};
use vpn_registry_agent::{Listeners, Stopped};

use crate::helpers::*;
use crate::netns::Netns;

fn target() -> Target {
    Target {
        family: "inet".into(),
        table: "vpn_registry".into(),
        set_prefix: "registered".into(),
    }
}

fn v4(s: &str) -> u128 {
    u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()) as u128
}

fn v6(s: &str) -> u128 {
    u128::from(s.parse::<std::net::Ipv6Addr>().unwrap())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn elements_written_are_read_back_and_listed_by_nft() {
    let ns = Netns::new();
    let mut kernel = Kernel::open(target(), Some(&ns.path())).unwrap();
    let t = now();
    let mut want = Layout::default();
    want.hosts[0].insert(v4("198.51.100.7"), None);
    want.hosts[0].insert(v4("198.51.100.8"), Some(t + 3600));
    want.hosts[1].insert(v6("2001:db8::1"), None);
    // Adjacent ranges with different expiries, and one reaching the end.
    want.nets[0].insert(v4("10.0.0.0"), (v4("10.0.0.255"), Some(t + 600)));
    want.nets[0].insert(v4("10.0.1.0"), (v4("10.0.1.255"), None));
    want.nets[0].insert(v4("255.255.255.0"), (v4("255.255.255.255"), None));
    want.nets[1].insert(v6("2001:db8:1::"), (v6("2001:db8:1::ffff"), None));
    want.flows[0].insert(
        (v4("10.1.0.0"), v4("10.1.0.255"), v4("192.0.2.1"), v4("192.0.2.1")),
        Some(t + 60),
    );
    want.flows[1].insert(
        (
            v6("2001:db8:2::"),
            v6("2001:db8:2::ff"),
            v6("2001:db8:9::"),
            v6("2001:db8:9::f"),
        ),
        None,
    );
    kernel.apply(&Layout::default(), &want, false, t).unwrap();
    let got = kernel.read(t).unwrap();
    assert_eq!(got.hosts, want.hosts);
    assert_eq!(got.nets, want.nets);
    assert_eq!(got.flows, want.flows);
    let listed = ns.nft(&["list", "table", "inet", "vpn_registry"]);
    for shown in [
        "198.51.100.7",
        "10.0.0.0/24",
        "10.0.1.0/24",
        "255.255.255.0/24",
        "2001:db8:1::/112",
        "10.1.0.0/24 . 192.0.2.1",
    ] {
        assert!(listed.contains(shown), "nft lists {shown}:\n{listed}");
    }
}

fn nft_config(ns: &Netns) -> NftConfig {
    NftConfig::new("inet vpn_registry", "registered", Some(ns.path().to_str().unwrap())).unwrap()
}

pub(crate) fn agent_config(app: &TestApp, token: &str, dir: &Path, ns: &Netns) -> Config {
    Config {
        nft: Some(nft_config(ns)),
        ..Config::new(
            vec![format!("http://{}", app.addr)],
            token.to_owned(),
            dir.join("state"),
        )
    }
}

pub(crate) type Running = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<Stopped>>,
);

fn start(config: Config) -> Running {
    start_with(config, Listeners::default())
}

/// [`start`], answering on `listeners`.
pub(crate) fn start_with(config: Config, listeners: Listeners) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(vpn_registry_agent::run_with(config, listeners, async {
        let _ = stopped.await;
    }));
    (stop, agent)
}

/// The elements of one set as `nft` lists them (an independent reader).
fn listed(ns: &Netns, set: &str) -> String {
    let out = ns
        .try_nft(&["list", "set", "inet", "vpn_registry", set])
        .unwrap_or_default();
    out.split_once("elements = {")
        .map(|(_, e)| e.replace(['\n', '\t'], " "))
        .unwrap_or_default()
}

/// Whether the kernel's set matches `address` (`nft get element`: the
/// kernel's own lookup, whatever pieces the range is stored as).
pub(crate) fn matches(ns: &Netns, set: &str, address: &str) -> bool {
    ns.try_nft(&[
        "get",
        "element",
        "inet",
        "vpn_registry",
        set,
        &format!("{{ {address} }}"),
    ])
    .is_some()
}

/// Polls (every 100 ms: each look runs `nft` twice or more, and the
/// namespace tests run side by side with the rest) until `set` matches the
/// addresses `inside` and none `outside`.
pub(crate) async fn until_matching(ns: &Netns, set: &str, inside: &[&str], outside: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if inside.iter().all(|a| matches(ns, set, a)) && outside.iter().all(|a| !matches(ns, set, a)) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{set} to match {inside:?} and not {outside:?}: not within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Behind the agent's back: the flow of the registered 8.8.4.4 removed.
pub(crate) fn remove_flow_of_8_8_4_4(ns: &Netns) {
    ns.nft(&[
        "delete",
        "element",
        "inet",
        "vpn_registry",
        FLOWS,
        "{ 8.8.4.4 . 185.60.216.0/24 }",
    ]);
}

/// Behind the agent's back: the unregistered 1.1.1.1 added.
pub(crate) fn add_stray_host(ns: &Netns) {
    ns.nft(&[
        "add",
        "element",
        "inet",
        "vpn_registry",
        "registered_hosts4",
        "{ 1.1.1.1 }",
    ]);
}

/// The test registrations' peer.
pub(crate) const FLOWS: &str = "registered_flows4";

pub(crate) fn flow(source: &str) -> String {
    format!("{source} . 185.60.216.1")
}

#[sqlx::test]
async fn the_sets_follow_the_registry_and_survive_restarts_and_tampering(pool: PgPool) {
    let app = spawn_app(pool).await;
    let (_, bank) = app.enrol(C::Bank).await;
    let lookup = app.token(Role::Lookup).await;
    let wide = app.active(&bank, &["8.8.8.0/24"]).await;
    // The same institution's second registration overlaps the first.
    app.active(&bank, &["8.8.8.128/25", "8.8.4.4/32"]).await;
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("agent-nft-{}", uuid::Uuid::new_v4()));
    let ns = Netns::new();

    // Snapshot: the overlap merged. The registrations name a peer, so
    // they are flows: (source . peer) in the concatenated set.
    let (stop, agent) = start(agent_config(&app, &lookup, &dir, &ns));
    until_matching(
        &ns,
        FLOWS,
        &[&flow("8.8.8.1"), &flow("8.8.8.200"), &flow("8.8.4.4")],
        &[&flow("8.8.9.1"), "8.8.8.1 . 9.9.9.9"],
    )
    .await;

    // A delta: the wide registration revoked; the overlapping /25 stays.
    app.decide(
        vpn_registry::domain::decision::Decision::Revoke,
        &app.get(&wide.id).await,
        vpn_registry::pb::ReasonCode::SecurityConcern,
        "Revoked to shrink the set",
    )
    .await
    .unwrap();
    until_matching(&ns, FLOWS, &[&flow("8.8.8.200")], &[&flow("8.8.8.1")]).await;
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
    assert!(
        matches(&ns, FLOWS, &flow("8.8.8.200")),
        "stopping never flushes the sets"
    );

    // Behind the agent's back: an element removed, a stray one added.
    remove_flow_of_8_8_4_4(&ns);
    add_stray_host(&ns);
    let config = agent_config(&app, &lookup, &dir, &ns);
    let report = vpn_registry_agent::verify(&config).unwrap();
    assert_eq!(report.differences, 2, "verify sees both:\n{report}");
    assert_eq!(report.to_string().matches("DIFFERS").count(), 2, "{report}");
    assert!(
        !report.to_string().contains("8.8.4.4"),
        "counts and digests, not a listing:\n{report}"
    );

    // A restart adopts what the kernel holds and repairs what differs.
    let (stop, agent) = start(config.clone());
    until_matching(&ns, FLOWS, &[&flow("8.8.4.4")], &[]).await;
    until_matching(&ns, "registered_hosts4", &[], &["1.1.1.1"]).await;
    assert!(vpn_registry_agent::verify(&config).unwrap().matches());
    stop.send(()).unwrap();
    agent.await.unwrap().unwrap();
}

fn entry(prefix: &str, peers: &[&str], valid_until: Option<i64>) -> Entry {
    Entry {
        prefix: prefix.parse().unwrap(),
        reference: "VPN-2026-000001".into(),
        kind: "VPN".into(),
        peers: peers.iter().map(|p| p.parse().unwrap()).collect(),
        valid_until,
    }
}

#[test]
fn an_element_lapses_at_valid_until_and_verify_expects_that() {
    let ns = Netns::new();
    let until = now() + 2;
    let held = ActiveSet::new(
        Position::default(),
        [entry("8.8.8.0/24", &[], Some(until)), entry("9.9.9.9/32", &[], None)],
    );
    let mut enforcer = Enforcer::start(&nft_config(&ns), &held).unwrap();
    assert!(
        listed(&ns, "registered_nets4").contains("8.8.8.0/24 timeout 2s"),
        "{}",
        listed(&ns, "registered_nets4")
    );
    // Polled, not slept: the kernel drops it once its timeout passes.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while matches(&ns, "registered_nets4", "8.8.8.1") {
        assert!(std::time::Instant::now() < deadline, "the element never lapsed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(now() >= until, "lapsed at valid_until, not before");
    assert!(listed(&ns, "registered_hosts4").contains("9.9.9.9"));
    assert!(
        enforcer.verify().unwrap().matches(),
        "a lapsed element is not a difference"
    );
}

#[test]
fn a_registered_source_matches_the_allow_set_and_an_unregistered_one_does_not() {
    let gateway = Netns::new();
    let client = Netns::new();
    let veth = format!("vr{}", &client.name[client.name.len().saturating_sub(8)..]).replace('-', "");
    crate::netns::run(
        "ip",
        &[
            "link",
            "add",
            &veth,
            "netns",
            &client.name,
            "type",
            "veth",
            "peer",
            "name",
            "gw0",
            "netns",
            &gateway.name,
        ],
    );
    for (ns, dev, addrs) in [
        (&client, veth.as_str(), ["8.8.8.1/24", "9.9.9.1/24"]),
        (&gateway, "gw0", ["8.8.8.254/24", "9.9.9.254/24"]),
    ] {
        for a in addrs {
            ns.exec("ip", &["addr", "add", a, "dev", dev]);
        }
        ns.exec("ip", &["link", "set", dev, "up"]);
    }
    let held = ActiveSet::new(Position::default(), [entry("8.8.8.0/24", &[], None)]);
    let _enforcer = Enforcer::start(&nft_config(&gateway), &held).unwrap();
    // The ISP's rules (as docs/agent.md shows), added to the agent's table.
    let rules = gateway.path().with_extension("nft");
    let rules = std::env::temp_dir().join(rules.file_name().unwrap());
    std::fs::write(
        &rules,
        "table inet vpn_registry {\n\
         counter registered {}\n\
         counter unregistered {}\n\
         chain gate {\n\
           type filter hook input priority filter; policy accept;\n\
           ip saddr @registered_hosts4 counter name registered accept\n\
           ip saddr @registered_nets4 counter name registered accept\n\
           udp dport 9 counter name unregistered accept\n\
         }\n\
         }\n",
    )
    .unwrap();
    gateway.nft(&["-f", rules.to_str().unwrap()]);
    let send = |from: &str, to: &str| {
        let script = format!(
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('{from}', 0))\nfor _ in range(3): s.sendto(b'x', ('{to}', 9))\n"
        );
        client.exec("python3", &["-c", &script]);
    };
    send("8.8.8.1", "8.8.8.254");
    send("9.9.9.1", "9.9.9.254");
    let packets = |counter: &str| -> u64 {
        let out = gateway.nft(&["list", "counter", "inet", "vpn_registry", counter]);
        out.split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap()
    };
    // Give the packets a moment to cross the veth pair.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        packets("registered"),
        3,
        "the registered source's packets matched the allow set"
    );
    assert_eq!(packets("unregistered"), 3, "the unregistered source's did not");
    let _ = std::fs::remove_file(rules);
}
