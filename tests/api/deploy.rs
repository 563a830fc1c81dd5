//! The files under `deploy/` cannot rot: every command line and environment
//! variable they hand `vpn-registry` must be one its clap definitions
//! accept (with the value given, where the file gives one), and every
//! variable a file sets must be read by the command it runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{ArgAction, CommandFactory};
use vpn_registry::flags::Cli;
use yaml_rust2::{Yaml, YamlLoader};

/// One container (or unit) that runs the binary.
#[derive(Debug, Default)]
struct Container {
    file: String,
    /// Each command line it runs, without the program name.
    commands: Vec<Vec<String>>,
    /// Variables the file sets; `None` when the value comes from a secret.
    env: BTreeMap<String, Option<String>>,
    /// Variables it inherits (the image's), checked where they are set.
    inherited: BTreeMap<String, Option<String>>,
}

/// An environment variable clap reads: where, as which flag.
struct EnvArg {
    /// The subcommand path (`serve`, `token issue`); empty for global flags.
    command: String,
    long: String,
    switch: bool,
}

fn env_args() -> BTreeMap<String, Vec<EnvArg>> {
    fn walk(cmd: &clap::Command, path: &str, out: &mut BTreeMap<String, Vec<EnvArg>>) {
        for arg in cmd.get_arguments() {
            if let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) {
                out.entry(env.to_string_lossy().into_owned()).or_default().push(EnvArg {
                    command: path.to_owned(),
                    long: long.to_owned(),
                    switch: matches!(arg.get_action(), ArgAction::SetTrue),
                });
            }
        }
        for sub in cmd.get_subcommands() {
            let path = if path.is_empty() {
                sub.get_name().to_owned()
            } else {
                format!("{path} {}", sub.get_name())
            };
            walk(sub, &path, out);
        }
    }
    let mut out = BTreeMap::new();
    walk(&Cli::command(), "", &mut out);
    out
}

/// The subcommand path a command line runs (`token issue`).
fn command_path(args: &[String]) -> String {
    let mut cmd = Cli::command();
    let mut path = Vec::new();
    for a in args.iter().filter(|a| !a.starts_with('-')) {
        match cmd.find_subcommand(a) {
            Some(sub) => {
                path.push(a.clone());
                cmd = sub.clone();
            }
            None => break,
        }
    }
    path.join(" ")
}

/// Problems with one container, empty when it is fine.
fn check(c: &Container, known: &BTreeMap<String, Vec<EnvArg>>) -> Vec<String> {
    let mut problems = Vec::new();
    let paths: Vec<String> = c.commands.iter().map(|a| command_path(a)).collect();
    for name in c.env.keys() {
        match known.get(name) {
            None => problems.push(format!("{}: {name} is no variable vpn-registry reads", c.file)),
            Some(uses) => {
                if !uses.iter().any(|u| u.command.is_empty() || paths.contains(&u.command)) {
                    problems.push(format!("{}: {name} is not read by {paths:?}", c.file));
                }
            }
        }
    }
    for (args, path) in c.commands.iter().zip(&paths) {
        let mut argv = vec!["vpn-registry".to_owned()];
        argv.extend(args.iter().cloned());
        // What the file sets overrides what the image sets.
        let mut environment = c.inherited.clone();
        environment.extend(c.env.clone());
        for (name, value) in &environment {
            let Some(uses) = known.get(name) else { continue };
            let Some(arg) = uses.iter().find(|u| u.command.is_empty() || u.command == *path) else {
                continue;
            };
            match (value, arg.switch) {
                (Some(v), true) if v == "true" => argv.push(format!("--{}", arg.long)),
                (Some(_), true) | (None, _) => {}
                (Some(v), false) => argv.push(format!("--{}={v}", arg.long)),
            }
        }
        if let Err(e) = Cli::command().try_get_matches_from(&argv) {
            problems.push(format!("{}: `{}` is refused: {e}", c.file, argv.join(" ")));
        }
    }
    problems
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(deploy().join(rel)).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

/// `${NAME:-default}` as its default (compose interpolation).
fn interpolate(s: &str) -> String {
    let mut out = s.to_owned();
    while let Some(start) = out.find("${") {
        let Some(len) = out[start..].find('}') else { break };
        let inner = &out[start + 2..start + len];
        let default = inner.split_once(":-").map_or("", |(_, d)| d).to_owned();
        out.replace_range(start..=start + len, &default);
    }
    out
}

fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .map(|v| v.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// YAML merge keys (`<<: *anchor`) resolved, as compose resolves them.
fn merged(y: &Yaml) -> Yaml {
    match y {
        Yaml::Hash(h) => {
            let mut out = yaml_rust2::yaml::Hash::new();
            if let Some(base) = h.get(&Yaml::String("<<".into()))
                && let Yaml::Hash(b) = merged(base)
            {
                out.extend(b);
            }
            for (k, v) in h {
                if k.as_str() != Some("<<") {
                    out.insert(k.clone(), merged(v));
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(a) => Yaml::Array(a.iter().map(merged).collect()),
        other => other.clone(),
    }
}

/// The Dockerfile's image: its ENV, entrypoint command and health check.
fn dockerfile() -> Container {
    let text = read("Dockerfile").replace("\\\n", " ");
    let mut image = Container {
        file: "deploy/Dockerfile".into(),
        ..Default::default()
    };
    let (mut entrypoint, mut cmd) = (Vec::new(), Vec::new());
    let json = |s: &str| -> Vec<String> { serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("{e}: {s}")) };
    for line in text.lines().map(str::trim) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair.split_once('=').expect("ENV key=value");
                    image.env.insert(k.to_owned(), Some(v.to_owned()));
                }
            }
            "ENTRYPOINT" => entrypoint = json(rest),
            "CMD" => cmd = json(rest),
            "HEALTHCHECK" => {
                let check = json(rest.split_once("CMD").expect("HEALTHCHECK CMD [...]").1);
                assert_eq!(check[0], "vpn-registry", "the health check runs the binary itself");
                image.commands.push(check[1..].to_vec());
            }
            _ => {}
        }
    }
    assert_eq!(entrypoint, ["vpn-registry"], "the image's entrypoint is the binary");
    image.commands.push(cmd);
    image
}

fn compose(image: &Container) -> Vec<Container> {
    let docs = YamlLoader::load_from_str(&read("compose.yaml")).unwrap();
    let root = merged(&docs[0]);
    let services = root["services"].as_hash().expect("services");
    let mut out = Vec::new();
    for (name, service) in services {
        if !service["image"]
            .as_str()
            .unwrap_or_default()
            .starts_with("vpn-registry")
        {
            continue;
        }
        let mut c = Container {
            file: format!("deploy/compose.yaml service {}", name.as_str().unwrap()),
            commands: vec![strings(&service["command"]), image.commands[0].clone()],
            inherited: image.env.clone(),
            ..Default::default()
        };
        for (k, v) in service["environment"].as_hash().expect("environment as a map") {
            let value = v
                .as_str()
                .map(interpolate)
                .or_else(|| v.as_i64().map(|n| n.to_string()));
            c.env.insert(k.as_str().unwrap().to_owned(), value);
        }
        out.push(c);
    }
    out
}

fn kubernetes() -> Vec<Container> {
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(deploy().join("kubernetes")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in YamlLoader::load_from_str(&text).unwrap() {
            docs.push((path.file_name().unwrap().to_string_lossy().into_owned(), doc));
        }
    }
    let config_maps: BTreeMap<String, &Yaml> = docs
        .iter()
        .filter(|(_, d)| d["kind"].as_str() == Some("ConfigMap"))
        .map(|(_, d)| (d["metadata"]["name"].as_str().unwrap().to_owned(), &d["data"]))
        .collect();
    let mut out = Vec::new();
    for (file, doc) in &docs {
        let Some(containers) = doc["spec"]["template"]["spec"]["containers"].as_vec() else {
            continue;
        };
        for container in containers {
            assert!(
                container["command"].is_badvalue(),
                "{file}: keep the image's entrypoint"
            );
            let mut c = Container {
                file: format!(
                    "deploy/kubernetes/{file} container {}",
                    container["name"].as_str().unwrap()
                ),
                commands: vec![strings(&container["args"])],
                ..Default::default()
            };
            for from in container["envFrom"].as_vec().into_iter().flatten() {
                let name = from["configMapRef"]["name"].as_str().expect("envFrom a ConfigMap");
                let data = config_maps
                    .get(name)
                    .unwrap_or_else(|| panic!("{file}: no ConfigMap {name}"));
                for (k, v) in data.as_hash().unwrap() {
                    c.env
                        .insert(k.as_str().unwrap().to_owned(), v.as_str().map(str::to_owned));
                }
            }
            for var in container["env"].as_vec().into_iter().flatten() {
                c.env.insert(
                    var["name"].as_str().unwrap().to_owned(),
                    var["value"].as_str().map(str::to_owned),
                );
            }
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                if let Some(service) = container[probe]["grpc"]["service"].as_str() {
                    assert!(
                        ["", vpn_registry::observe::health::LIVENESS].contains(&service),
                        "{file}: {probe} asks for health of {service:?}, which is not reported"
                    );
                }
            }
            out.push(c);
        }
    }
    out
}

fn systemd() -> Container {
    let unit = read("systemd/vpn-registry.service");
    let setting = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("the unit has no {key}="))
            .to_owned()
    };
    let exec = setting("ExecStart");
    let mut words = exec.split_whitespace().map(str::to_owned);
    assert!(words.next().unwrap().ends_with("/vpn-registry"));
    let env_file = setting("EnvironmentFile");
    let env_name = Path::new(env_file.trim_start_matches('-'))
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut c = Container {
        file: "deploy/systemd".into(),
        commands: vec![words.collect()],
        ..Default::default()
    };
    for line in read(&format!("systemd/{env_name}")).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').expect("KEY=VALUE");
        c.env.insert(k.to_owned(), Some(v.to_owned()));
    }
    c
}

#[test]
fn every_deployment_file_runs_commands_and_variables_vpn_registry_accepts() {
    let known = env_args();
    let image = dockerfile();
    let mut containers = vec![systemd()];
    containers.extend(compose(&image));
    containers.extend(kubernetes());
    assert!(containers.len() >= 6, "{containers:#?}");
    let mut problems = check(&image, &known);
    for c in &containers {
        problems.extend(check(c, &known));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The Prometheus files are YAML Prometheus can load.
    for file in ["prometheus/prometheus.yml", "prometheus/alerts.yml"] {
        YamlLoader::load_from_str(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn the_check_itself_refuses_what_the_binary_would_refuse() {
    let known = env_args();
    let bad = |commands: Vec<Vec<&str>>, env: &[(&str, &str)]| Container {
        file: "sample".into(),
        commands: commands
            .into_iter()
            .map(|c| c.into_iter().map(str::to_owned).collect())
            .collect(),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect(),
        inherited: BTreeMap::new(),
    };
    assert!(
        check(
            &bad(vec![vec!["serve"]], &[("VPN_REGISTRY_LISTEN", "0.0.0.0:1")]),
            &known
        )
        .is_empty()
    );
    assert_eq!(check(&bad(vec![vec!["serve", "--no-such-flag"]], &[]), &known).len(), 1);
    assert_eq!(
        check(
            &bad(vec![vec!["serve"]], &[("VPN_REGISTRY_LISTEN", "not an address")]),
            &known
        )
        .len(),
        1
    );
    assert_eq!(
        check(&bad(vec![vec!["serve"]], &[("VPN_REGISTRY_TYPO", "1")]), &known).len(),
        1
    );
    assert_eq!(
        check(
            &bad(vec![vec!["migrate"]], &[("VPN_REGISTRY_LISTEN", "0.0.0.0:1")]),
            &known
        )
        .len(),
        1
    );
    assert!(
        check(
            &bad(vec![vec!["migrate"]], &[("VPN_REGISTRY_LOG_FORMAT", "json")]),
            &known
        )
        .is_empty()
    );
    assert_eq!(
        check(&bad(vec![vec!["serve"]], &[("VPN_REGISTRY_LOG_FORMAT", "xml")]), &known).len(),
        1
    );
}
