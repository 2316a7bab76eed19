//! Tokens: HS256 JWTs signed with `auth.secret`, carrying who the holder is
//! and when the token expires. An edge verifies them without calling anyone.

use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use switchboard_protocol::ids::{AgentId, VisitorId};
use switchboard_protocol::payloads::{Participant, Role};
use switchboard_protocol::time::now_ms;

/// Who a token was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Visitor { id: VisitorId, name: String },
    Agent { id: AgentId, name: String },
}

impl Identity {
    pub fn participant(&self) -> Participant {
        match self {
            Identity::Visitor { id, name } => Participant::visitor(id, name.clone()),
            Identity::Agent { id, name } => Participant::agent(id, name.clone()),
        }
    }

    pub fn role(&self) -> Role {
        match self {
            Identity::Visitor { .. } => Role::Visitor,
            Identity::Agent { .. } => Role::Agent,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Identity::Visitor { id, .. } => id.as_str(),
            Identity::Agent { id, .. } => id.as_str(),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Identity::Visitor { name, .. } | Identity::Agent { name, .. } => name,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    name: String,
    iat: u64,
    exp: u64,
}

/// A token could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyTokenError {
    #[error("invalid token: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("token names an invalid identity")]
    BadSubject,
}

/// Issues and verifies tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    /// A token for `identity`, valid for `ttl`.
    ///
    /// # Errors
    /// Only if signing fails, which HS256 does not.
    pub fn issue(
        &self,
        identity: &Identity,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let claims = Claims {
            sub: identity.id().to_owned(),
            role: identity.role(),
            name: identity.name().to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The identity a token was issued to.
    ///
    /// # Errors
    /// Forged, malformed or expired tokens.
    pub fn verify(&self, token: &str) -> Result<Identity, VerifyTokenError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(VerifyTokenError::Invalid)?;
        let Claims {
            sub, role, name, ..
        } = data.claims;
        match role {
            Role::Visitor => VisitorId::new(sub)
                .map(|id| Identity::Visitor { id, name })
                .map_err(|_| VerifyTokenError::BadSubject),
            Role::Agent => AgentId::new(sub)
                .map(|id| Identity::Agent { id, name })
                .map_err(|_| VerifyTokenError::BadSubject),
            Role::System | Role::Bot => Err(VerifyTokenError::BadSubject),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor() -> Identity {
        Identity::Visitor {
            id: VisitorId::new("v_1").unwrap(),
            name: "Ann".into(),
        }
    }

    #[test]
    fn issued_tokens_verify() {
        let tokens = Tokens::new("a-secret-of-at-least-thirty-two-bytes");
        let token = tokens.issue(&visitor(), Duration::from_secs(60)).unwrap();
        assert_eq!(tokens.verify(&token).unwrap(), visitor());
    }

    #[test]
    fn forged_and_expired_tokens_fail() {
        let tokens = Tokens::new("a-secret-of-at-least-thirty-two-bytes");
        let other = Tokens::new("another-secret-of-at-least-32-bytes!");
        let forged = other.issue(&visitor(), Duration::from_secs(60)).unwrap();
        assert!(tokens.verify(&forged).is_err());
        assert!(tokens.verify("garbage").is_err());
        let expired = tokens.issue(&visitor(), Duration::ZERO).unwrap();
        // Past the leeway: expiry is checked against iat + 0 with 5 s leeway,
        // so build one that expired long ago instead.
        let mut parts = expired.split('.');
        assert!(parts.next().is_some());
        let claims = Claims {
            sub: "v_1".into(),
            role: Role::Visitor,
            name: "Ann".into(),
            iat: 1,
            exp: 2,
        };
        let old = encode(&Header::new(Algorithm::HS256), &claims, &tokens.encoding).unwrap();
        assert!(tokens.verify(&old).is_err());
    }
}
