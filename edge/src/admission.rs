//! Who may come in, and how fast, so that one client cannot crowd out the
//! others: per client address, limits on sign-ups, login attempts and
//! open WebSockets; per login, on attempts; per identity, on open
//! WebSockets; and a bound on the password checks running at once (each
//! is deliberately slow, and they share the blocking pool).
//!
//! A refused request is answered 429 with `Retry-After` and a JSON body; a
//! WebSocket over its limit is refused 429 at the upgrade (per address) or
//! closed with 4429 after `hello` (per identity).
//!
//! The client address is the peer's, or, when the peer is one of
//! `edge.trusted_proxies` (a load balancer), the last address in
//! `X-Forwarded-For` that is not one of them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use switchboard_config::EdgeSettings;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Too many sockets open already (for the address, or the identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many connections")]
pub struct TooManySockets;

/// Over a limit: try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

/// The edge's admission limits and counts.
pub struct Admission {
    signups: DefaultKeyedRateLimiter<IpAddr>,
    logins_by_address: DefaultKeyedRateLimiter<IpAddr>,
    logins_by_account: DefaultKeyedRateLimiter<String>,
    profiles: DefaultKeyedRateLimiter<String>,
    password_checks: Semaphore,
    sockets_by_address: Counts<IpAddr>,
    sockets_by_identity: Counts<String>,
    trusted_proxies: Vec<IpAddr>,
    clock: DefaultClock,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Admission {
    pub fn new(settings: &EdgeSettings) -> Self {
        Self {
            signups: RateLimiter::keyed(per_minute(settings.signups_per_address_per_minute)),
            logins_by_address: RateLimiter::keyed(per_minute(
                settings.logins_per_address_per_minute,
            )),
            logins_by_account: RateLimiter::keyed(per_minute(
                settings.logins_per_account_per_minute,
            )),
            profiles: RateLimiter::keyed(per_minute(settings.profile_updates_per_minute)),
            password_checks: Semaphore::new(settings.password_checks.max(1)),
            sockets_by_address: Counts::new(settings.sockets_per_address),
            sockets_by_identity: Counts::new(settings.sockets_per_identity),
            trusted_proxies: settings.trusted_proxies.clone(),
            clock: DefaultClock::default(),
        }
    }

    /// The address of the client behind a request (see the module).
    pub fn client_address(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.ip();
        if !self.trusted_proxies.contains(&peer) {
            return peer;
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .rev()
            .find(|a| !self.trusted_proxies.contains(a))
            .unwrap_or(peer)
    }

    /// A visitor sign-up from `address`.
    ///
    /// # Errors
    /// [`Limited`] when the address signs up too often.
    pub fn signup(&self, address: IpAddr) -> Result<(), Limited> {
        self.check(&self.signups, &address)
    }

    /// A login attempt from `address` for `login` (whatever its case).
    ///
    /// # Errors
    /// [`Limited`] when either tries too often.
    pub fn login(&self, address: IpAddr, login: &str) -> Result<(), Limited> {
        self.check(&self.logins_by_address, &address)?;
        self.check(&self.logins_by_account, &login.trim().to_lowercase())
    }

    /// A change of a visitor's profile.
    ///
    /// # Errors
    /// [`Limited`] when the visitor changes it too often.
    pub fn profile_update(&self, visitor: &str) -> Result<(), Limited> {
        self.check(&self.profiles, &visitor.to_owned())
    }

    /// A turn to check a password: at most `edge.password_checks` at once,
    /// the others wait (a flood of logins waits here, not chat).
    pub async fn password_check(&self) -> Option<SemaphorePermit<'_>> {
        self.password_checks.acquire().await.ok()
    }

    /// A WebSocket from `address`, held until the guard is dropped.
    ///
    /// # Errors
    /// When the address has its most sockets open.
    pub fn open_socket(self: &Arc<Self>, address: IpAddr) -> Result<SocketGuard, TooManySockets> {
        self.sockets_by_address.take(&address)?;
        Ok(SocketGuard {
            admission: Arc::clone(self),
            address,
            identity: None,
        })
    }

    /// Forgets what nobody has asked for lately (run now and then).
    pub fn prune(&self) {
        self.signups.retain_recent();
        self.logins_by_address.retain_recent();
        self.logins_by_account.retain_recent();
        self.profiles.retain_recent();
        self.signups.shrink_to_fit();
        self.logins_by_address.shrink_to_fit();
        self.logins_by_account.shrink_to_fit();
        self.profiles.shrink_to_fit();
    }

    fn check<K>(&self, limiter: &DefaultKeyedRateLimiter<K>, key: &K) -> Result<(), Limited>
    where
        K: Clone + std::hash::Hash + Eq,
    {
        limiter.check_key(key).map_err(|not_until| Limited {
            retry_after: not_until.wait_time_from(self.clock.now()),
        })
    }
}

/// An open WebSocket counted against its address and, once it said
/// hello, its identity.
pub struct SocketGuard {
    admission: Arc<Admission>,
    address: IpAddr,
    identity: Option<String>,
}

impl SocketGuard {
    /// Counts the socket against `identity` (`visitor:<id>`, `agent:<id>`).
    ///
    /// # Errors
    /// When the identity has its most sockets open.
    pub fn identify(&mut self, identity: String) -> Result<(), TooManySockets> {
        self.admission.sockets_by_identity.take(&identity)?;
        self.identity = Some(identity);
        Ok(())
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        self.admission.sockets_by_address.give_back(&self.address);
        if let Some(identity) = &self.identity {
            self.admission.sockets_by_identity.give_back(identity);
        }
    }
}

/// How many of something each key holds, up to a maximum.
struct Counts<K> {
    max: u32,
    held: Mutex<HashMap<K, u32>>,
}

impl<K: std::hash::Hash + Eq + Clone> Counts<K> {
    fn new(max: u32) -> Self {
        Self {
            max: max.max(1),
            held: Mutex::default(),
        }
    }

    fn take(&self, key: &K) -> Result<(), TooManySockets> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return Err(TooManySockets);
        }
        *count += 1;
        Ok(())
    }

    fn give_back(&self, key: &K) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> EdgeSettings {
        EdgeSettings {
            signups_per_address_per_minute: 2,
            logins_per_address_per_minute: 3,
            logins_per_account_per_minute: 2,
            sockets_per_address: 2,
            sockets_per_identity: 1,
            trusted_proxies: vec!["10.0.0.1".parse().unwrap()],
            ..EdgeSettings::default()
        }
    }

    #[test]
    fn sign_ups_and_logins_are_limited_per_address_and_account() {
        let admission = Admission::new(&settings());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(admission.signup(a).is_ok());
        assert!(admission.signup(a).is_ok());
        let limited = admission.signup(a).unwrap_err();
        assert!(limited.retry_after > Duration::ZERO);
        assert!(
            admission.signup(b).is_ok(),
            "another address is not held up"
        );
        // Per login, whatever the address and the case.
        assert!(admission.login(a, "Ann").is_ok());
        assert!(admission.login(b, "ann ").is_ok());
        assert!(admission.login(b, "ANN").is_err());
        assert!(admission.login(b, "bob").is_ok());
    }

    #[test]
    fn sockets_are_counted_per_address_and_identity_and_given_back() {
        let admission = Arc::new(Admission::new(&settings()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mut one = admission.open_socket(a).unwrap();
        let two = admission.open_socket(a).unwrap();
        assert!(admission.open_socket(a).is_err());
        assert!(one.identify("visitor:v_1".into()).is_ok());
        let mut other = admission.open_socket("192.0.2.9".parse().unwrap()).unwrap();
        assert!(other.identify("visitor:v_1".into()).is_err());
        drop(one);
        assert!(other.identify("visitor:v_1".into()).is_ok());
        drop(two);
        assert!(admission.open_socket(a).is_ok());
    }

    #[test]
    fn the_client_address_is_trusted_only_from_a_trusted_proxy() {
        let admission = Admission::new(&settings());
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "203.0.113.7, 10.0.0.1".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        assert_eq!(
            admission.client_address(proxy, &headers),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(admission.client_address(stranger, &headers), stranger.ip());
    }
}
