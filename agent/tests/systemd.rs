//! The agent under systemd: the notify protocol as the binary speaks it
//! (READY, watchdog pings, STOPPING) over a socket the test holds, and the
//! shipped unit and settings file as systemd and the agent read them.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Parser;
use vpn_registry_agent::config::{Args, Config};
use vpn_registry_agent::health::OnStale;

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("systemd-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/systemd")
        .join(file)
}

/// The next message on the notify socket, within `within`.
fn next(socket: &UnixDatagram, within: Duration) -> String {
    socket.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a notify message in time");
    String::from_utf8_lossy(&buf[..n]).trim().to_owned()
}

#[test]
fn the_binary_says_ready_pings_the_watchdog_and_says_stopping() {
    let dir = scratch("notify");
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    std::fs::write(dir.join("token"), "vpr_test\n").unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_vpn-registry-agent"))
        .args(["--mode", "files", "--upstream", "http://127.0.0.1:9"])
        .arg("--token-file")
        .arg(dir.join("token"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("NOTIFY_SOCKET", &socket_path)
        // Pinged every half second.
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    assert_eq!(next(&socket, Duration::from_secs(30)), "READY=1");
    let started = Instant::now();
    let mut pings = 0;
    while pings < 2 {
        assert_eq!(next(&socket, Duration::from_secs(5)), "WATCHDOG=1");
        pings += 1;
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "pinged at half the interval"
    );
    // SIGTERM, as systemd stops a unit.
    unsafe { libc::kill(agent.id() as libc::pid_t, libc::SIGTERM) };
    let mut said = next(&socket, Duration::from_secs(10));
    while said == "WATCHDOG=1" {
        said = next(&socket, Duration::from_secs(10));
    }
    assert_eq!(said, "STOPPING=1");
    assert!(agent.wait().unwrap().success(), "a clean stop");
}

#[test]
fn the_unit_and_its_settings_file_are_what_systemd_and_the_agent_accept() {
    let unit = std::fs::read_to_string(deploy("vpn-registry-agent.service")).unwrap();
    let setting = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(setting("Type"), ["notify"]);
    assert_eq!(
        setting("CapabilityBoundingSet"),
        ["CAP_NET_ADMIN"],
        "only CAP_NET_ADMIN"
    );
    assert_eq!(setting("AmbientCapabilities"), ["CAP_NET_ADMIN"]);
    assert_eq!(setting("NoNewPrivileges"), ["yes"]);
    assert_eq!(setting("WatchdogSec").len(), 1);

    // The command line and the settings file, as the agent reads them
    // (the paths that exist only on a gateway pointed at the test's).
    let exec = setting("ExecStart").remove(0);
    let words: Vec<&str> = exec.split_whitespace().collect();
    assert!(words[0].ends_with("/vpn-registry-agent"));
    let dir = scratch("unit");
    std::fs::write(dir.join("token"), "vpr_test\n").unwrap();
    let toml = std::fs::read_to_string(deploy("agent.toml"))
        .unwrap()
        .replace("/etc/vpn-registry-agent/token", dir.join("token").to_str().unwrap())
        .replace(
            "/etc/vpn-registry-agent/registry-ca.pem",
            dir.join("token").to_str().unwrap(),
        );
    std::fs::write(dir.join("agent.toml"), toml).unwrap();
    let args: Vec<String> = words
        .iter()
        .map(|w| {
            w.replace(
                "/etc/vpn-registry-agent/agent.toml",
                dir.join("agent.toml").to_str().unwrap(),
            )
        })
        .collect();
    let config = Config::from_args(Args::try_parse_from(&args).unwrap()).unwrap();
    assert_eq!(config.upstreams.len(), 2, "the registry and a replica");
    assert_eq!(config.on_stale, OnStale::Hold);
    assert_eq!(config.max_stale, Duration::from_secs(86_400));
    assert!(config.nft.is_some() && config.metrics_listen.is_some());

    // systemd's own reading of the unit (with a binary that exists here),
    // and its exposure score (tenths: 25 is 2.5): hardened, not merely
    // parseable.
    let unit_copy = dir.join("vpn-registry-agent.service");
    std::fs::write(
        &unit_copy,
        unit.replace(
            "/usr/local/bin/vpn-registry-agent",
            env!("CARGO_BIN_EXE_vpn-registry-agent"),
        ),
    )
    .unwrap();
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit_copy)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=25"])
        .arg(&unit_copy)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(security.status.success(), "exposure above 2.5:\n{report}");
}
