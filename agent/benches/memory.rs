//! The agent's resident memory at a million entries, on its own code path
//! and in processes of their own (so nothing of the bench is counted):
//!
//! - `first`: a gateway's first start. The kernel's sets are adopted
//!   (empty), a snapshot of ENTRIES arrives in chunks as from the wire, the
//!   state is saved, the sets are filled in one transaction, and then
//!   compared with the kernel (verify's read-back) and repaired.
//! - `restart`: the same gateway restarted: the state loaded, the sets
//!   adopted and compared.
//!
//! Each prints its peak (VmHWM) and final (VmRSS) resident memory.
//! `cargo bench -p vpn-registry-agent --bench memory [-- ENTRIES]` (root:
//! a network namespace of its own, removed at the end).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Instant;

use vpn_registry_agent::config::NftConfig;
use vpn_registry_agent::follow::Follower;
use vpn_registry_agent::nft::enforce::Enforcer;
use vpn_registry_agent::pb::{self, watch_changes_response::Event};
use vpn_registry_agent::set::ActiveSet;
use vpn_registry_agent::{memory, state};

const NETNS: &str = "vpnreg-bench-memory";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join("vpnreg-bench-memory");
    match args.iter().find(|a| a.starts_with("phase-")).map(String::as_str) {
        Some("phase-first") => first(n, &dir),
        Some("phase-restart") => restart(&dir),
        _ => {
            let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
            let ok = Command::new("ip").args(["netns", "add", NETNS]).status();
            assert!(matches!(ok, Ok(s) if s.success()), "ip netns add (run as root)");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for phase in ["phase-first", "phase-restart"] {
                let status = Command::new(std::env::current_exe().unwrap())
                    .args([phase, &n.to_string()])
                    .status()
                    .unwrap();
                assert!(status.success(), "{phase} failed");
            }
            let _ = Command::new("ip").args(["netns", "del", NETNS]).status();
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

fn nft() -> NftConfig {
    NftConfig::new("inet vpn_registry", "registered", Some(NETNS)).unwrap()
}

fn first(n: usize, dir: &std::path::Path) {
    let t = Instant::now();
    let mut enforcer = Enforcer::start(&nft(), &ActiveSet::default()).expect("netlink");
    let mut follower = Follower::default();
    let reset = pb::Reset {
        session_id: "bench".into(),
        serial: 1,
    };
    follower.apply(Event::Reset(reset)).unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    let until = prost_types::Timestamp {
        seconds: now() + 365 * 86_400,
        nanos: 0,
    };
    // Chunks of 1,000, as the registry sends them.
    for start in (0..n).step_by(1000) {
        let entries = (start..(start + 1000).min(n))
            .map(|i| entry(&mut rng, i, &until))
            .collect();
        follower.apply(Event::Snapshot(pb::SnapshotChunk { entries })).unwrap();
    }
    follower
        .apply(Event::SnapshotEnd(pb::SnapshotEnd { serial: 1 }))
        .unwrap();
    // Where the agent gives freed memory back, so does the bench.
    memory::release();
    report("first: snapshot held", &t);
    state::save(dir, &follower.held).unwrap();
    report("first: state saved", &t);
    let plan = enforcer.plan(&follower);
    enforcer.execute(plan).expect("the sets filled");
    memory::release();
    report(&format!("first: sets filled {:?}", enforcer.sizes()), &t);
    let differences = enforcer.repair().expect("compared");
    memory::release();
    report(&format!("first: compared with the kernel ({differences} differ)"), &t);
}

fn restart(dir: &std::path::Path) {
    let t = Instant::now();
    let held = state::load(dir).unwrap().expect("the first phase's state");
    memory::release();
    report(&format!("restart: state loaded ({} entries)", held.len()), &t);
    let mut enforcer = Enforcer::start(&nft(), &held).expect("adopted");
    memory::release();
    report("restart: sets adopted and compared", &t);
    let differences = enforcer.repair().expect("compared");
    memory::release();
    report(&format!("restart: compared again ({differences} differ)"), &t);
}

/// The bench's mix: 50% IPv4 hosts, 35% IPv4 /24-/29, 15% IPv6.
fn entry(rng: &mut fastrand::Rng, i: usize, until: &prost_types::Timestamp) -> pb::ActiveEntry {
    let roll = rng.u32(..100);
    let prefix = if roll < 50 {
        format!("{}/32", Ipv4Addr::from(rng.u32(0x0100_0000..0xdf00_0000)))
    } else if roll < 85 {
        let len = rng.u8(24..=29);
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(rng.u32(0x0100_0000..0xdf00_0000)), len).unwrap();
        net.trunc().to_string()
    } else {
        let a = Ipv6Addr::from(0x2a00_u128 << 112 | rng.u128(..1 << 108));
        let len = if rng.bool() { rng.u8(48..=64) } else { 128 };
        ipnet::Ipv6Net::new(a, len).unwrap().trunc().to_string()
    };
    pb::ActiveEntry {
        prefix,
        reference: format!("VPN-2026-{i:07}"),
        kind: pb::RegistrationKind::Vpn as i32,
        valid_until: Some(*until),
        ..Default::default()
    }
}

fn report(what: &str, since: &Instant) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    println!(
        "{what}: {:.1?}; resident {} MiB, peak {} MiB",
        since.elapsed(),
        field("VmRSS:"),
        field("VmHWM:")
    );
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
