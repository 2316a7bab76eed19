//! Agent accounts: stored in the `agents` bucket, found by login through
//! the `logins` bucket, passwords hashed with argon2id.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use futures::TryStreamExt;
use switchboard_protocol::ids::{AgentId, TeamId};
use switchboard_protocol::payloads::{AgentAccount, AgentRole, Revocation};
use switchboard_protocol::subjects::{login_key, MAX_LOGIN_BYTES};
use switchboard_protocol::time::now_ms;

use crate::kv::{self, Decision};
use crate::{Backbone, BusError};

/// What `agent add` asks for.
#[derive(Debug, Clone)]
pub struct NewAgent {
    pub login: String,
    pub name: String,
    pub password: String,
    pub team: Option<TeamId>,
    pub capacity: u32,
}

/// Hashes a password (argon2id, random salt) into PHC format.
///
/// # Errors
/// [`BusError::Hash`] if the hasher fails.
pub fn hash_password(password: &str) -> Result<String, BusError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| BusError::Hash(e.to_string()))
}

/// Whether `password` matches a PHC hash; false for a malformed hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Creates an agent; the login must be free.
///
/// # Errors
/// [`BusError::Invalid`] for an empty field or a taken login; NATS errors.
pub async fn add(backbone: &Backbone, agent: NewAgent) -> Result<AgentAccount, BusError> {
    add_as(backbone, agent, AgentRole::Agent).await
}

/// Creates an account with a role (an admin, say); the login must be free.
///
/// # Errors
/// As [`add`].
pub async fn add_as(
    backbone: &Backbone,
    agent: NewAgent,
    role: AgentRole,
) -> Result<AgentAccount, BusError> {
    let login = agent.login.trim().to_owned();
    if login.is_empty() || agent.name.trim().is_empty() {
        return Err(BusError::Invalid("login and name must not be empty".into()));
    }
    if agent.password.len() < 8 {
        return Err(BusError::Invalid(
            "password must be at least 8 characters".into(),
        ));
    }
    if agent.capacity == 0 {
        return Err(BusError::Invalid("capacity must be at least 1".into()));
    }
    let password = agent.password.clone();
    // Hashing is deliberately slow: on the blocking pool.
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| BusError::Invalid(format!("password hashing failed: {e}")))??;
    let account = AgentAccount {
        id: AgentId::generate(),
        login: login.clone(),
        name: agent.name.trim().to_owned(),
        password_hash,
        team: agent.team,
        capacity: agent.capacity,
        created_at: now_ms(),
        role,
        disabled: false,
        tokens_valid_after: 0,
    };
    // Claim the login first: the compare-and-set makes two concurrent adds
    // of one login fail for all but one.
    let Some(key) = login_key(&login) else {
        return Err(BusError::Invalid(format!(
            "login longer than {MAX_LOGIN_BYTES} bytes"
        )));
    };
    let claimed = kv::cas(
        &backbone.logins,
        &key,
        |current: Option<&AgentId>| match current {
            Some(_) => Decision::Keep(false),
            None => Decision::Write(account.id.clone(), true),
        },
    )
    .await?;
    if !claimed {
        return Err(BusError::Invalid(format!("login {login:?} is taken")));
    }
    kv::put(&backbone.agents, account.id.as_str(), &account).await?;
    Ok(account)
}

/// Every agent account, by login.
///
/// # Errors
/// NATS errors.
pub async fn list(backbone: &Backbone) -> Result<Vec<AgentAccount>, BusError> {
    let keys: Vec<String> = match backbone.agents.keys().await {
        Ok(keys) => keys
            .try_collect()
            .await
            .map_err(|e| BusError::nats("list agents", e))?,
        Err(e) => return Err(BusError::nats("list agents", e)),
    };
    let mut accounts = Vec::with_capacity(keys.len());
    for key in keys {
        if let Some(entry) = kv::get::<AgentAccount>(&backbone.agents, &key).await? {
            accounts.push(entry.value);
        }
    }
    accounts.sort_by(|a, b| a.login.cmp(&b.login));
    Ok(accounts)
}

/// The account with this login.
///
/// # Errors
/// NATS errors.
pub async fn find_by_login(
    backbone: &Backbone,
    login: &str,
) -> Result<Option<AgentAccount>, BusError> {
    // An over-long login is no account's, and is never sent to NATS.
    let Some(key) = login_key(login) else {
        return Ok(None);
    };
    let Some(id) = kv::get::<AgentId>(&backbone.logins, &key).await? else {
        return Ok(None);
    };
    Ok(kv::get::<AgentAccount>(&backbone.agents, id.value.as_str())
        .await?
        .map(|e| e.value))
}

/// The account with this id.
///
/// # Errors
/// NATS errors.
pub async fn find(backbone: &Backbone, id: &AgentId) -> Result<Option<AgentAccount>, BusError> {
    Ok(kv::get::<AgentAccount>(&backbone.agents, id.as_str())
        .await?
        .map(|e| e.value))
}

/// Checks a login and password; `None` when either is wrong.
///
/// # Errors
/// NATS errors.
pub async fn authenticate(
    backbone: &Backbone,
    login: &str,
    password: &str,
) -> Result<Option<AgentAccount>, BusError> {
    let account = find_by_login(backbone, login).await?;
    // Verify against a fixed hash when the login is unknown, so response
    // time does not tell which logins exist. argon2 is deliberately slow:
    // it runs on the blocking pool, never on the async workers.
    let hash = account
        .as_ref()
        .map_or(UNKNOWN_LOGIN_HASH, |a| a.password_hash.as_str())
        .to_owned();
    let password = password.to_owned();
    let valid = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| BusError::Invalid(format!("password check failed: {e}")))?;
    // A disabled account is refused like a wrong password.
    Ok(account.filter(|a| valid && !a.disabled))
}

/// Changes an agent's capacity and/or team (`Some(None)` leaves every
/// team). Routers watch the accounts and apply it at once.
///
/// # Errors
/// [`BusError::Invalid`] for an unknown login or a zero capacity; NATS errors.
pub async fn update(
    backbone: &Backbone,
    login: &str,
    capacity: Option<u32>,
    team: Option<Option<TeamId>>,
) -> Result<AgentAccount, BusError> {
    if capacity == Some(0) {
        return Err(BusError::Invalid("capacity must be at least 1".into()));
    }
    let Some(account) = find_by_login(backbone, login).await? else {
        return Err(BusError::Invalid(format!("no agent with login {login:?}")));
    };
    kv::cas(
        &backbone.agents,
        account.id.as_str(),
        |current: Option<&AgentAccount>| match current {
            Some(current) => {
                let mut account = current.clone();
                if let Some(capacity) = capacity {
                    account.capacity = capacity;
                }
                if let Some(team) = &team {
                    account.team = team.clone();
                }
                Decision::Write(account.clone(), Ok(account))
            }
            None => Decision::Keep(Err(BusError::Invalid(format!(
                "no agent with login {login:?}"
            )))),
        },
    )
    .await?
}

/// Changes an agent's role. Tokens issued before keep the role they
/// were issued with until they expire.
///
/// # Errors
/// [`BusError::Invalid`] for an unknown login; NATS errors.
pub async fn set_role(
    backbone: &Backbone,
    login: &str,
    role: AgentRole,
) -> Result<AgentAccount, BusError> {
    let Some(account) = find_by_login(backbone, login).await? else {
        return Err(BusError::Invalid(format!("no agent with login {login:?}")));
    };
    kv::cas(
        &backbone.agents,
        account.id.as_str(),
        |current: Option<&AgentAccount>| match current {
            Some(current) => {
                let mut account = current.clone();
                account.role = role;
                Decision::Write(account.clone(), Ok(account))
            }
            None => Decision::Keep(Err(BusError::Invalid(format!(
                "no agent with login {login:?}"
            )))),
        },
    )
    .await?
}

/// Disables (or enables again) an agent: a disabled agent cannot log in,
/// and every edge closes their connections at once.
///
/// # Errors
/// [`BusError::Invalid`] for an unknown login; NATS errors.
pub async fn set_disabled(
    backbone: &Backbone,
    login: &str,
    disabled: bool,
) -> Result<AgentAccount, BusError> {
    let Some(account) = find_by_login(backbone, login).await? else {
        return Err(BusError::Invalid(format!("no agent with login {login:?}")));
    };
    let account = kv::cas(
        &backbone.agents,
        account.id.as_str(),
        |current: Option<&AgentAccount>| match current {
            Some(current) => {
                let mut account = current.clone();
                account.disabled = disabled;
                if disabled {
                    account.tokens_valid_after = u64::try_from(now_ms() / 1000).unwrap_or(0);
                }
                Decision::Write(account.clone(), Ok(account))
            }
            None => Decision::Keep(Err(BusError::Invalid(format!(
                "no agent with login {login:?}"
            )))),
        },
    )
    .await??;
    if disabled {
        crate::revocation::announce(
            backbone,
            &Revocation {
                token_id: None,
                agent_id: Some(account.id.clone()),
                reason: "disabled".into(),
            },
        )
        .await?;
    }
    Ok(account)
}

/// Whether a token of an agent issued at `issued_at` (unix seconds) still
/// gives access: the account exists, is enabled, and was not disabled
/// since the token was issued.
///
/// # Errors
/// NATS errors.
pub async fn is_active(
    backbone: &Backbone,
    id: &AgentId,
    issued_at: u64,
) -> Result<bool, BusError> {
    Ok(find(backbone, id)
        .await?
        .is_some_and(|a| !a.disabled && issued_at > a.tokens_valid_after))
}

/// Removes an agent by login; false when there is none.
///
/// # Errors
/// NATS errors.
pub async fn remove(backbone: &Backbone, login: &str) -> Result<bool, BusError> {
    let Some(key) = login_key(login) else {
        return Ok(false);
    };
    let Some(account) = find_by_login(backbone, login).await? else {
        return Ok(false);
    };
    backbone
        .agents
        .delete(account.id.as_str())
        .await
        .map_err(|e| BusError::nats("remove agent", e))?;
    backbone
        .logins
        .delete(key)
        .await
        .map_err(|e| BusError::nats("remove agent login", e))?;
    crate::revocation::announce(
        backbone,
        &Revocation {
            token_id: None,
            agent_id: Some(account.id),
            reason: "removed".into(),
        },
    )
    .await?;
    Ok(true)
}

/// argon2id hash of a random password nobody knows.
const UNKNOWN_LOGIN_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$O1lCNlpKpfVZf3Qz8kCkHSr0E1dOBBgUZ2qg1m1q+1Q";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("x", "not a hash"));
        assert!(PasswordHash::new(UNKNOWN_LOGIN_HASH).is_ok());
    }
}
