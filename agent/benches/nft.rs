//! The agent's kernel path at a million entries, against `nft -f` loading
//! the same sets in the same run (root; two network namespaces of its own,
//! removed at the end; the host's ruleset is never touched).
//!
//! `cargo bench -p vpn-registry-agent --bench nft [-- ENTRIES]`
//!
//! The mix: 50% IPv4 hosts, 35% IPv4 /24-/29, 15% IPv6 (/48-/64 and hosts).

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use vpn_registry_agent::nft::kernel::{Kernel, Target};
use vpn_registry_agent::nft::layout::{Diff, Layout};
use vpn_registry_agent::set::{ActiveSet, Entry, Position};

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let mut rng = fastrand::Rng::with_seed(7);
    let now = now();
    let until = Some(now + 365 * 86_400);
    let started = Instant::now();
    let entries: Vec<Entry> = (0..n).map(|i| entry(&mut rng, i, until)).collect();
    let mut set = ActiveSet::new(Position::default(), entries);
    let layout = Layout::of(&set);
    let compute = started.elapsed();
    println!(
        "{n} entries -> {} elements (hosts4 {}, nets4 {}, hosts6 {}, nets6 {}); set and layout built in {:.2?}",
        layout.len(),
        layout.hosts[0].len(),
        layout.nets[0].len(),
        layout.hosts[1].len(),
        layout.nets[1].len(),
        compute
    );

    let ours = Netns::new("vpnreg-bench-agent");
    let theirs = Netns::new("vpnreg-bench-nft");
    let target = Target {
        family: "inet".into(),
        table: "vpn_registry".into(),
        set_prefix: "registered".into(),
    };

    // The same sets by `nft -f`, the operator's usual tool.
    let file = std::env::temp_dir().join("vpnreg-bench.nft");
    write_nft_file(&file, &layout);
    let t = Instant::now();
    let status = Command::new("ip")
        .args(["netns", "exec", &theirs.0, "nft", "-f"])
        .arg(&file)
        .status()
        .expect("nft (scripts/netfilter installs it)");
    let nft_load = t.elapsed();
    assert!(status.success(), "nft -f failed");
    let _ = std::fs::remove_file(&file);

    let t = Instant::now();
    let mut kernel = Kernel::open(target, Some(&ours.path())).expect("netlink");
    kernel
        .apply(&Layout::default(), &layout, false, now)
        .expect("initial load");
    let agent_load = t.elapsed();
    println!(
        "initial load: agent {:.2?}, nft -f {:.2?} (agent/nft time {:.2})",
        agent_load,
        nft_load,
        agent_load.as_secs_f64() / nft_load.as_secs_f64()
    );

    let t = Instant::now();
    let read = kernel.read(now).expect("read back");
    println!(
        "read back (verify's listing): {:.2?}, {} elements",
        t.elapsed(),
        read.len()
    );

    // 1,000 changes (half withdrawn, half new), one transaction.
    let mut layout = layout;
    let held: Vec<(std::sync::Arc<str>, IpNet)> = set.entries().map(|e| (e.reference.clone(), e.prefix)).collect();
    let t = Instant::now();
    let mut diff = Diff::default();
    let mut touched = Vec::new();
    for i in 0..500 {
        let (reference, prefix) = &held[rng.usize(..held.len())];
        set.withdraw(reference, *prefix);
        touched.push(*prefix);
        let e = entry(&mut rng, n + i, until);
        touched.push(e.prefix);
        set.announce(e);
    }
    let mut regions: Vec<IpNet> = touched.iter().map(|p| set.region(*p)).collect();
    regions.sort();
    regions.dedup();
    for r in regions {
        diff.merge(layout.refresh(&set, r));
    }
    let computed = t.elapsed();
    kernel
        .apply(&diff.remove, &diff.add, false, now)
        .expect("1,000 changes");
    println!(
        "1,000 changes: {} elements changed in {:.2?} (computing {:.2?}), one transaction",
        diff.len(),
        t.elapsed(),
        computed
    );

    // One change at a time: what a single commit costs on the way to the kernel.
    let mut times = Vec::new();
    for i in 0..200 {
        let t = Instant::now();
        let e = entry(&mut rng, 2 * n + i, until);
        let prefix = e.prefix;
        set.announce(e);
        let d = layout.refresh(&set, prefix);
        kernel.apply(&d.remove, &d.add, false, now).expect("one change");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "single changes into the loaded sets: p50 {:.2?}, p99 {:.2?}, max {:.2?}",
        times[times.len() / 2],
        times[times.len() * 99 / 100],
        times[times.len() - 1]
    );
    println!(
        "peak resident memory of this process (set, layout, batch): {} MiB",
        peak_rss_mib()
    );
    let _ = std::io::stdout().flush();
    drop(ours);
    drop(theirs);
}

fn entry(rng: &mut fastrand::Rng, i: usize, valid_until: Option<i64>) -> Entry {
    let roll = rng.u32(..100);
    let prefix: IpNet = if roll < 50 {
        IpNet::new(Ipv4Addr::from(rng.u32(0x0100_0000..0xdf00_0000)).into(), 32).unwrap()
    } else if roll < 85 {
        let len = rng.u8(24..=29);
        IpNet::new(Ipv4Addr::from(rng.u32(0x0100_0000..0xdf00_0000)).into(), len)
            .unwrap()
            .trunc()
    } else {
        let a = Ipv6Addr::from(0x2a00_u128 << 112 | rng.u128(..1 << 108));
        let len = if rng.bool() { rng.u8(48..=64) } else { 128 };
        IpNet::new(a.into(), len).unwrap().trunc()
    };
    Entry {
        prefix,
        reference: format!("VPN-2026-{i:07}").into(),
        kind: "VPN".into(),
        peers: vec![],
        valid_until,
    }
}

/// The layout as an nft script: the same table, sets and elements.
fn write_nft_file(path: &std::path::Path, layout: &Layout) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(f, "table inet vpn_registry {{").unwrap();
    let v4 = |a: u128| Ipv4Addr::from(a as u32).to_string();
    let v6 = |a: u128| Ipv6Addr::from(a).to_string();
    let sets: [(&str, &str, &str, Vec<String>); 4] = [
        (
            "registered_hosts4",
            "ipv4_addr",
            "timeout",
            layout.hosts[0].keys().map(|a| v4(*a)).collect(),
        ),
        (
            "registered_nets4",
            "ipv4_addr",
            "interval,timeout",
            layout.nets[0]
                .iter()
                .map(|(l, (h, _))| format!("{}-{}", v4(*l), v4(*h)))
                .collect(),
        ),
        (
            "registered_hosts6",
            "ipv6_addr",
            "timeout",
            layout.hosts[1].keys().map(|a| v6(*a)).collect(),
        ),
        (
            "registered_nets6",
            "ipv6_addr",
            "interval,timeout",
            layout.nets[1]
                .iter()
                .map(|(l, (h, _))| format!("{}-{}", v6(*l), v6(*h)))
                .collect(),
        ),
    ];
    for (name, ty, flags, elements) in sets {
        writeln!(f, "  set {name} {{ type {ty}; flags {flags};").unwrap();
        if !elements.is_empty() {
            writeln!(
                f,
                "    elements = {{ {} timeout 365d }}",
                elements.join(" timeout 365d, ")
            )
            .unwrap();
        }
        writeln!(f, "  }}").unwrap();
    }
    writeln!(f, "}}").unwrap();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

/// A namespace of the bench's own, removed on drop.
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Self {
        let _ = Command::new("ip")
            .args(["netns", "del", name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .map(|s| s.success());
        assert!(matches!(ok, Ok(true)), "ip netns add {name} (run as root)");
        Netns(name.to_owned())
    }

    fn path(&self) -> std::path::PathBuf {
        std::path::Path::new("/run/netns").join(&self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        std::thread::sleep(Duration::from_millis(10));
    }
}
