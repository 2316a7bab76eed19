//! Tokens: HS256 JWTs signed with `auth.secret`, carrying who the holder is
//! and when the token expires. An edge verifies them without calling anyone.

use std::time::Duration;

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use switchboard_protocol::ids::{AgentId, VisitorId};
use switchboard_protocol::payloads::{AgentRole, Participant, Role};
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
    /// An agent account's role; absent (a plain agent) in visitors' tokens
    /// and in tokens issued before roles existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent_role: Option<AgentRole>,
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
        self.issue_with_role(identity, None, ttl)
    }

    /// A token for an agent account with its role (an admin's, say).
    ///
    /// # Errors
    /// Only if signing fails, which HS256 does not.
    pub fn issue_agent(
        &self,
        identity: &Identity,
        role: AgentRole,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_with_role(identity, Some(role), ttl)
    }

    fn issue_with_role(
        &self,
        identity: &Identity,
        agent_role: Option<AgentRole>,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
        let claims = Claims {
            sub: identity.id().to_owned(),
            role: identity.role(),
            name: identity.name().to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
            agent_role,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The identity a token was issued to.
    ///
    /// # Errors
    /// Forged, malformed or expired tokens.
    pub fn verify(&self, token: &str) -> Result<Identity, VerifyTokenError> {
        self.verify_with_role(token).map(|(identity, _)| identity)
    }

    /// The identity a token was issued to and, for an agent, the role of
    /// their account when the token was issued (`admin` only for admins:
    /// visitors and tokens without the claim are plain `agent`s).
    ///
    /// # Errors
    /// Forged, malformed or expired tokens.
    pub fn verify_with_role(&self, token: &str) -> Result<(Identity, AgentRole), VerifyTokenError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(VerifyTokenError::Invalid)?;
        let Claims {
            sub,
            role,
            name,
            agent_role,
            ..
        } = data.claims;
        let identity = match role {
            Role::Visitor => VisitorId::new(sub)
                .map(|id| Identity::Visitor { id, name })
                .map_err(|_| VerifyTokenError::BadSubject),
            Role::Agent => AgentId::new(sub)
                .map(|id| Identity::Agent { id, name })
                .map_err(|_| VerifyTokenError::BadSubject),
            Role::System | Role::Bot => Err(VerifyTokenError::BadSubject),
        }?;
        let agent_role = match identity {
            Identity::Agent { .. } => agent_role.unwrap_or_default(),
            Identity::Visitor { .. } => AgentRole::Agent,
        };
        Ok((identity, agent_role))
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
            agent_role: None,
        };
        let old = encode(&Header::new(Algorithm::HS256), &claims, &tokens.encoding).unwrap();
        assert!(tokens.verify(&old).is_err());
    }

    fn agent() -> Identity {
        Identity::Agent {
            id: AgentId::new("a_1").unwrap(),
            name: "Ada".into(),
        }
    }

    #[test]
    fn tokens_carry_the_agent_role() {
        let tokens = Tokens::new("a-secret-of-at-least-thirty-two-bytes");
        let ttl = Duration::from_secs(60);
        let admin = tokens.issue_agent(&agent(), AgentRole::Admin, ttl).unwrap();
        assert_eq!(
            tokens.verify_with_role(&admin).unwrap(),
            (agent(), AgentRole::Admin)
        );
        // Admins are agents everywhere else.
        assert_eq!(tokens.verify(&admin).unwrap(), agent());
        let plain = tokens.issue_agent(&agent(), AgentRole::Agent, ttl).unwrap();
        assert_eq!(tokens.verify_with_role(&plain).unwrap().1, AgentRole::Agent);
        // A visitor is never an admin.
        let visitor = tokens.issue(&visitor(), ttl).unwrap();
        assert_eq!(
            tokens.verify_with_role(&visitor).unwrap().1,
            AgentRole::Agent
        );
    }

    /// A token issued before roles existed (no `agent_role` claim) still
    /// verifies, as a plain agent.
    #[test]
    fn old_tokens_verify_as_plain_agents() {
        #[derive(Serialize)]
        struct OldClaims {
            sub: String,
            role: Role,
            name: String,
            iat: u64,
            exp: u64,
        }
        let tokens = Tokens::new("a-secret-of-at-least-thirty-two-bytes");
        let now = u64::try_from(now_ms() / 1000).unwrap();
        let old = encode(
            &Header::new(Algorithm::HS256),
            &OldClaims {
                sub: "a_1".into(),
                role: Role::Agent,
                name: "Ada".into(),
                iat: now,
                exp: now + 60,
            },
            &tokens.encoding,
        )
        .unwrap();
        assert_eq!(
            tokens.verify_with_role(&old).unwrap(),
            (agent(), AgentRole::Agent)
        );
    }
}
