//! The shipped configuration files are valid: the example configuration
//! loads (every key known, every value accepted) and docker-compose.yml is
//! well-formed YAML describing the production services.

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
    compose
        .apply_merge()
        .unwrap_or_else(|e| panic!("invalid merge keys: {e}"));
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
}
