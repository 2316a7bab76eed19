//! Identifier newtypes. Each constructor validates, so a value of these types
//! can be put into a NATS subject or a KV key as it is: no `.`, `*`, `>`,
//! whitespace or other character outside `[A-Za-z0-9_-]` ever reaches NATS.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest identifier accepted from anyone.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {MAX_ID_LEN} characters")]
    TooLong { kind: &'static str },
    #[error("{kind} may only contain letters, digits, '-' and '_'")]
    InvalidCharacter { kind: &'static str },
}

/// Checks the shared identifier rule.
///
/// # Errors
/// [`IdError`] names the rule the value breaks.
pub fn validate(kind: &'static str, value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind });
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(IdError::InvalidCharacter { kind });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` as this kind of identifier.
            ///
            /// # Errors
            /// [`IdError`] when the value breaks the identifier rule.
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate($kind, &value)?;
                Ok(Self(value))
            }

            /// A fresh identifier: a prefix and a ULID, so ids sort by creation time.
            pub fn generate() -> Self {
                Self(format!(concat!($prefix, "{}"), ulid::Ulid::new()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// When a [`generate`](Self::generate)d identifier was made
            /// (unix milliseconds); `None` for one made otherwise.
            pub fn generated_at(&self) -> Option<u64> {
                let ulid = self.0.strip_prefix($prefix)?;
                ulid::Ulid::from_string(ulid).ok().map(|u| u.timestamp_ms())
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(value: &str) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
    };
}

id_type!(
    /// A conversation between one visitor and the agents assigned to it.
    ConversationId, "conversation_id", "c_"
);
id_type!(
    /// One stored message or event.
    MessageId, "message_id", "m_"
);
id_type!(
    /// An anonymous website visitor.
    VisitorId, "visitor_id", "v_"
);
id_type!(
    /// A support agent account.
    AgentId, "agent_id", "a_"
);
id_type!(
    /// A team of agents that conversations are routed to.
    TeamId, "team", "t_"
);
id_type!(
    /// A bot account (`switchboard bot add --id …`): chosen by the
    /// operator, like team ids.
    BotId, "bot_id", "b_"
);
id_type!(
    /// The sender's own id for one message, reused on retry (idempotency key).
    ClientId, "client_id", "k_"
);
id_type!(
    /// A part of an event-stream connection's id: the edge process holding
    /// it (its route), or the connection itself (unguessable, see
    /// [`StreamId::unguessable`]).
    StreamId, "stream_id", "s_"
);

impl StreamId {
    /// A fresh id with 160 random bits (two ULIDs' randomness): a
    /// connection's, which a client names in every POST.
    pub fn unguessable() -> Self {
        let a = ulid::Ulid::new();
        let b = ulid::Ulid::new();
        Self(format!("s{}{:020x}", a, b.random()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_tell_when_they_were_made() {
        let before = ulid::Ulid::new().timestamp_ms();
        let id = ConversationId::generate();
        let made = id.generated_at().unwrap();
        assert!(
            made >= before && made <= before + 60_000,
            "{made} vs {before}"
        );
        assert_eq!(
            ConversationId::new("c_not-a-ulid").unwrap().generated_at(),
            None
        );
        assert_eq!(ConversationId::new("x_01HZX").unwrap().generated_at(), None);
    }

    #[test]
    fn accepts_plain_ids() {
        assert!(ConversationId::new("c_01HZX-abc_9").is_ok());
        let generated = AgentId::generate();
        assert!(AgentId::new(generated.as_str()).is_ok());
        assert!(generated.as_str().starts_with("a_"));
    }

    #[test]
    fn rejects_subject_metacharacters() {
        for bad in ["a.b", "a*", ">", "a b", "a\tb", "", "ä", "a/b"] {
            assert!(ConversationId::new(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ConversationId::new("x".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn deserializing_validates() {
        let err = serde_json::from_str::<VisitorId>("\"v.1\"").unwrap_err();
        assert!(err.to_string().contains("visitor_id"), "{err}");
        let ok: VisitorId = serde_json::from_str("\"v_1\"").unwrap();
        assert_eq!(ok.as_str(), "v_1");
    }
}
