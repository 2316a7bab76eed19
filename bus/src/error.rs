//! Errors of the backbone layer.

use switchboard_protocol::payloads::PayloadError;

/// A backbone operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// NATS did not do what was asked (unreachable, timed out, refused).
    #[error("{op}: {source}")]
    Nats {
        op: &'static str,
        #[source]
        source: async_nats::Error,
    },
    /// A stored value is not what this version understands.
    #[error("decode {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: PayloadError,
    },
    /// A compare-and-set lost too many races in a row.
    #[error("{0}: too much contention")]
    Contention(&'static str),
    /// Hashing a password failed.
    #[error("hash password: {0}")]
    Hash(String),
    /// The request names something that breaks a rule (a duplicate login, …).
    #[error("{0}")]
    Invalid(String),
}

impl BusError {
    pub fn nats(op: &'static str, source: impl Into<async_nats::Error>) -> Self {
        BusError::Nats {
            op,
            source: source.into(),
        }
    }

    pub fn decode(what: &'static str, source: PayloadError) -> Self {
        BusError::Decode { what, source }
    }
}
