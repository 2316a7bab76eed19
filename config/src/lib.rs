//! Configuration for every Switchboard component, and the only crate that
//! reads the environment.
//!
//! Sources, later ones winning: built-in defaults < `switchboard.toml` (or
//! the file given with `--config`) < `SWITCHBOARD_*` environment variables,
//! nested with `__` (`SWITCHBOARD_NATS__URL` sets `nats.url`).
//!
//! - [`settings`]: the typed settings and their defaults.
//! - [`duration`]: human-readable durations (`"30s"`, `"30d"`).
//! - [`redact`]: connection strings as they may be logged.

pub mod duration;
pub mod redact;
pub mod settings;

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;

pub use duration::HumanDuration;
pub use settings::*;

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_FILE: &str = "switchboard.toml";
/// Prefix of the environment variables read.
pub const ENV_PREFIX: &str = "SWITCHBOARD_";

/// Configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("invalid configuration: `{key}` {reason}")]
    Rejected { key: &'static str, reason: String },
}

impl Settings {
    /// Loads defaults < file < environment and validates the result.
    ///
    /// # Errors
    /// A missing explicit file, a value of the wrong type (the message names
    /// the key), or a value outside its range.
    pub fn load(file: Option<&Path>) -> Result<Self, LoadConfigError> {
        let figment = Self::figment(file)?;
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    /// The layered sources, for callers that add their own layer on top.
    ///
    /// # Errors
    /// [`LoadConfigError::MissingFile`] when `file` is given and absent.
    pub fn figment(file: Option<&Path>) -> Result<Figment, LoadConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(LoadConfigError::MissingFile(path.to_path_buf()))
            }
            Some(path) => figment = figment.merge(Toml::file(path)),
            None => figment = figment.merge(Toml::file(DEFAULT_FILE)),
        }
        // Only `SECTION__KEY` variables are settings: `SWITCHBOARD_CONFIG`
        // and other single-level names belong to the command line.
        let env = Env::prefixed(ENV_PREFIX)
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        Ok(figment.merge(env))
    }
}

#[cfg(test)]
// `Jail`'s closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_load() {
        Jail::expect_with(|_jail| {
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.nats.url, "nats://127.0.0.1:4222");
            assert!(settings.auth.secret.is_default());
            assert_eq!(settings.router.bot_reply_deadline.get().as_secs(), 20);
            Ok(())
        });
    }

    #[test]
    fn file_then_env_override() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "switchboard.toml",
                r#"
                [nats]
                url = "nats://file:4222"
                [edge]
                listen = "127.0.0.1:9000"
                hello_timeout = "3s"
                "#,
            )?;
            jail.set_env("SWITCHBOARD_NATS__URL", "nats://env:4222");
            jail.set_env("SWITCHBOARD_CONFIG", "ignored-here.toml");
            jail.set_env("SWITCHBOARD_MONGO__DATABASE", "chat_test");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.nats.url, "nats://env:4222");
            assert_eq!(settings.mongo.database, "chat_test");
            assert_eq!(settings.edge.listen.port(), 9000);
            assert_eq!(settings.edge.hello_timeout.get().as_secs(), 3);
            Ok(())
        });
    }

    #[test]
    fn router_partitions_and_lease_ttl() {
        Jail::expect_with(|jail| {
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.router.partitions, Partitions::Team);
            assert_eq!(settings.router.lease_ttl.get().as_secs(), 3);
            jail.set_env("SWITCHBOARD_ROUTER__PARTITIONS", "off");
            jail.set_env("SWITCHBOARD_ROUTER__LEASE_TTL", "5s");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.router.partitions, Partitions::Off);
            assert_eq!(settings.router.lease_ttl.get().as_secs(), 5);
            jail.set_env("SWITCHBOARD_ROUTER__LEASE_TTL", "100ms");
            let err = Settings::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("router.lease_ttl"), "{err}");
            jail.set_env("SWITCHBOARD_ROUTER__LEASE_TTL", "3s");
            jail.set_env("SWITCHBOARD_ROUTER__PARTITIONS", "hash");
            let err = Settings::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("router.partitions"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn invalid_value_names_the_key() {
        Jail::expect_with(|jail| {
            jail.set_env("SWITCHBOARD_EDGE__LISTEN", "not-an-address");
            let err = Settings::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("edge.listen"), "{err}");
            jail.set_env("SWITCHBOARD_EDGE__LISTEN", "127.0.0.1:0");
            jail.set_env("SWITCHBOARD_EDGE__HELLO_TIMEOUT", "soon");
            let err = Settings::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("edge.hello_timeout"), "{err}");
            jail.set_env("SWITCHBOARD_EDGE__HELLO_TIMEOUT", "5s");
            jail.set_env("SWITCHBOARD_EDGE__MAX_TEXT_CHARS", "0");
            let err = Settings::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("edge.max_text_chars"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn metrics_are_off_their_own_listener_unless_set() {
        Jail::expect_with(|jail| {
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.metrics.listen, None);
            assert!(settings.edge.metrics);
            jail.set_env("SWITCHBOARD_METRICS__LISTEN", "0.0.0.0:9091");
            jail.set_env("SWITCHBOARD_EDGE__METRICS", "false");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.metrics.listen.map(|a| a.port()), Some(9091));
            assert!(!settings.edge.metrics);
            jail.set_env("SWITCHBOARD_METRICS__LISTEN", "nowhere");
            let err = Settings::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("metrics.listen"), "{err}");
            jail.set_env("SWITCHBOARD_METRICS__LISTEN", "0.0.0.0:9091");
            jail.set_env("SWITCHBOARD_METRICS__PORT", "9091");
            let err = Settings::load(None).unwrap_err().to_string().to_lowercase();
            assert!(err.contains("port"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        Jail::expect_with(|_jail| {
            let err = Settings::load(Some(Path::new("nope.toml"))).unwrap_err();
            assert!(matches!(err, LoadConfigError::MissingFile(_)));
            Ok(())
        });
    }

    #[test]
    fn secret_is_redacted() {
        let mut settings = Settings::default();
        settings.auth.secret = Secret::new("hunter2-hunter2-hunter2-hunter2");
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
