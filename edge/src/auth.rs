//! Tokens: HS256 JWTs signed with `auth.secret` (named `auth.key_id` in
//! their `kid`), carrying who the holder is, an id and when the token
//! expires. An edge verifies them without calling anyone; whether a
//! token was revoked (a logout, a disabled agent) is asked of the backbone
//! (see `revocation`).

use std::collections::HashMap;
use std::time::Duration;

use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use switchboard_config::AuthSettings;
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
    /// The token's own id, by which it is revoked (absent in tokens
    /// issued before revocation existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: Identity,
    /// For an agent, the role of their account when the token was issued
    /// (visitors are plain `agent`s here, never admins).
    pub role: AgentRole,
    /// When it was issued and when it expires (unix seconds).
    pub issued_at: u64,
    pub expires_at: u64,
    /// Its id, when it has one (revocation is by id).
    pub token_id: Option<String>,
}

/// A token could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum VerifyTokenError {
    #[error("invalid token: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("token names an invalid identity")]
    BadSubject,
    #[error("token signed with an unknown key")]
    UnknownKey,
}

/// Issues tokens with the current key and verifies them with it or any
/// accepted key (by the token's `kid`), so keys rotate without downtime.
#[derive(Clone)]
pub struct Tokens {
    key_id: String,
    encoding: EncodingKey,
    /// Key id → key, the current one included.
    decoding: HashMap<String, DecodingKey>,
    validation: Validation,
}

impl Tokens {
    /// Tokens with one key, named `k1` (the default `auth.key_id`).
    pub fn new(secret: &str) -> Self {
        Self::with_keys("k1", secret, std::iter::empty())
    }

    /// Tokens signed with `auth.secret` under `auth.key_id`, verified with
    /// it and with `auth.accepted_keys`.
    pub fn from_settings(auth: &AuthSettings) -> Self {
        Self::with_keys(
            &auth.key_id,
            auth.secret.expose(),
            auth.accepted_keys
                .iter()
                .map(|(id, key)| (id.as_str(), key.expose())),
        )
    }

    fn with_keys<'a>(
        key_id: &str,
        secret: &str,
        accepted: impl Iterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let mut decoding: HashMap<String, DecodingKey> = accepted
            .map(|(id, key)| (id.to_owned(), DecodingKey::from_secret(key.as_bytes())))
            .collect();
        decoding.insert(
            key_id.to_owned(),
            DecodingKey::from_secret(secret.as_bytes()),
        );
        Self {
            key_id: key_id.to_owned(),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding,
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
        self.issue_with_role(identity, None, ttl, 0)
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
        self.issue_with_role(identity, Some(role), ttl, 0)
    }

    /// [`Tokens::issue_agent`] for an account whose tokens issued at or
    /// before `revoked_through` (unix seconds) are revoked: the new one
    /// says it was issued after, even within the same second.
    ///
    /// # Errors
    /// Only if signing fails, which HS256 does not.
    pub fn issue_agent_after(
        &self,
        identity: &Identity,
        role: AgentRole,
        ttl: Duration,
        revoked_through: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.issue_with_role(identity, Some(role), ttl, revoked_through.saturating_add(1))
    }

    fn issue_with_role(
        &self,
        identity: &Identity,
        agent_role: Option<AgentRole>,
        ttl: Duration,
        issued_at_least: u64,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = u64::try_from(now_ms() / 1000)
            .unwrap_or(0)
            .max(issued_at_least);
        let claims = Claims {
            sub: identity.id().to_owned(),
            role: identity.role(),
            name: identity.name().to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
            agent_role,
            jti: Some(ulid::Ulid::new().to_string()),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.key_id.clone());
        encode(&header, &claims, &self.encoding)
    }

    /// The identity a token was issued to.
    ///
    /// # Errors
    /// Forged, malformed, expired tokens, or tokens of an unknown key.
    pub fn verify(&self, token: &str) -> Result<Identity, VerifyTokenError> {
        self.verify_full(token).map(|v| v.identity)
    }

    /// The identity a token was issued to and, for an agent, the role of
    /// their account when the token was issued (`admin` only for admins:
    /// visitors and tokens without the claim are plain `agent`s).
    ///
    /// # Errors
    /// As [`Tokens::verify`].
    pub fn verify_with_role(&self, token: &str) -> Result<(Identity, AgentRole), VerifyTokenError> {
        self.verify_full(token).map(|v| (v.identity, v.role))
    }

    /// Everything a valid token says.
    ///
    /// # Errors
    /// As [`Tokens::verify`].
    pub fn verify_full(&self, token: &str) -> Result<Verified, VerifyTokenError> {
        let header = decode_header(token).map_err(VerifyTokenError::Invalid)?;
        // Tokens from before key ids were written carry none: the current
        // key signed them.
        let key_id = header.kid.as_deref().unwrap_or(&self.key_id);
        let key = self
            .decoding
            .get(key_id)
            .ok_or(VerifyTokenError::UnknownKey)?;
        let data =
            decode::<Claims>(token, key, &self.validation).map_err(VerifyTokenError::Invalid)?;
        let Claims {
            sub,
            role,
            name,
            agent_role,
            iat,
            exp,
            jti,
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
        let role = match identity {
            Identity::Agent { .. } => agent_role.unwrap_or_default(),
            Identity::Visitor { .. } => AgentRole::Agent,
        };
        Ok(Verified {
            identity,
            role,
            issued_at: iat,
            expires_at: exp,
            token_id: jti,
        })
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
            jti: None,
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

    fn keys(current: (&str, &str), accepted: &[(&str, &str)]) -> Tokens {
        Tokens::with_keys(current.0, current.1, accepted.iter().copied())
    }

    /// Rotation: every edge first accepts the next key, then signs with
    /// it while accepting the previous one until its tokens expire.
    #[test]
    fn keys_rotate_without_refusing_a_valid_token() {
        let one = ("k1", "the-first-secret-of-32-bytes-or-more");
        let two = ("k2", "the-second-secret-of-32-bytes-or-more");
        let ttl = Duration::from_secs(60);
        let before = keys(one, &[]);
        let learning = keys(one, &[two]);
        let rotated = keys(two, &[one]);
        let old = before.issue(&visitor(), ttl).unwrap();
        let new = rotated.issue(&visitor(), ttl).unwrap();
        assert_eq!(decode_header(&new).unwrap().kid.as_deref(), Some("k2"));
        for tokens in [&learning, &rotated] {
            assert_eq!(tokens.verify(&old).unwrap(), visitor());
            assert_eq!(tokens.verify(&new).unwrap(), visitor());
        }
        // An edge that never learnt the new key refuses its tokens, and
        // once the old key is dropped its tokens are refused.
        assert!(matches!(
            before.verify(&new),
            Err(VerifyTokenError::UnknownKey)
        ));
        assert!(keys(two, &[]).verify(&old).is_err());
        // A token naming a known key but signed with another is forged.
        let forger = keys(("k2", "not-the-second-secret-of-32-bytes-x"), &[]);
        let forged = forger.issue(&visitor(), ttl).unwrap();
        assert!(rotated.verify(&forged).is_err());
    }

    #[test]
    fn tokens_have_ids_and_expiry() {
        let tokens = Tokens::new("a-secret-of-at-least-thirty-two-bytes");
        let a = tokens.issue(&agent(), Duration::from_secs(60)).unwrap();
        let b = tokens.issue(&agent(), Duration::from_secs(60)).unwrap();
        let (a, b) = (
            tokens.verify_full(&a).unwrap(),
            tokens.verify_full(&b).unwrap(),
        );
        assert!(a.token_id.is_some());
        assert_ne!(a.token_id, b.token_id);
        let now = u64::try_from(now_ms() / 1000).unwrap();
        assert!(a.expires_at >= now + 59 && a.expires_at <= now + 61);
    }
}
