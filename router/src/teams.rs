//! Teams' settings as admins edit them while Switchboard runs (the
//! `teams` bucket), over the configuration's (`router.teams`): a router
//! follows the bucket and routes each pass with the settings of the moment.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream::kv::{Operation, Store};
use futures::StreamExt;
use switchboard_config::{HumanDuration, RouterSettings, Strategy, TeamPolicy};
use switchboard_protocol::payloads::{decode, TeamSettings};

/// Wait before watching again after the watch broke.
const REWATCH_DELAY: Duration = Duration::from_secs(1);

/// The bucket's teams, by team id.
#[derive(Debug, Clone, Default)]
pub struct TeamBook {
    saved: Arc<Mutex<BTreeMap<String, TeamSettings>>>,
}

impl TeamBook {
    /// Follows the bucket for as long as the router runs.
    pub async fn watch(self, store: Store) {
        loop {
            match store.watch_with_history(">").await {
                Ok(mut entries) => {
                    while let Some(Ok(entry)) = entries.next().await {
                        let mut saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
                        match (&entry.operation, decode::<TeamSettings>(&entry.value)) {
                            (Operation::Put, Ok(settings)) => {
                                saved.insert(entry.key.clone(), settings);
                            }
                            (Operation::Put, Err(err)) => {
                                tracing::warn!(error = %err, team = %entry.key, "undecodable team settings");
                            }
                            _ => {
                                saved.remove(&entry.key);
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "watch team settings"),
            }
            tokio::time::sleep(REWATCH_DELAY).await;
        }
    }

    /// The configuration with the saved teams' settings over it.
    pub fn apply(&self, base: &RouterSettings) -> RouterSettings {
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        if saved.is_empty() {
            return base.clone();
        }
        let mut settings = base.clone();
        for (team, saved) in saved.iter() {
            let policy = settings.teams.entry(team.clone()).or_default();
            *policy = overlay(policy, saved);
        }
        settings
    }
}

/// A team's policy with what admins saved over it.
fn overlay(base: &TeamPolicy, saved: &TeamSettings) -> TeamPolicy {
    let strategy = match saved.strategy.as_deref() {
        Some("least_busy") => Some(Strategy::LeastBusy),
        Some("longest_idle") => Some(Strategy::LongestIdle),
        _ => base.strategy,
    };
    TeamPolicy {
        strategy,
        first_reply: saved
            .first_reply_secs
            .map(HumanDuration::from_secs)
            .or(base.first_reply),
        bot_first: Some(saved.bot_first),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::ids::TeamId;

    #[test]
    fn saved_settings_win_over_the_configuration() {
        let mut base = RouterSettings::default();
        base.teams.insert(
            "sales".into(),
            TeamPolicy {
                strategy: Some(Strategy::LongestIdle),
                first_reply: Some(HumanDuration::from_secs(60)),
                bot_first: None,
            },
        );
        let book = TeamBook::default();
        assert_eq!(
            book.apply(&base).strategy_of(Some("sales")),
            Strategy::LongestIdle
        );
        book.saved.lock().unwrap().insert(
            "sales".into(),
            TeamSettings {
                team: TeamId::new("sales").unwrap(),
                strategy: Some("least_busy".into()),
                first_reply_secs: None,
                bot_first: false,
                prechat: true,
                updated_at: 0,
            },
        );
        let live = book.apply(&base);
        assert_eq!(live.strategy_of(Some("sales")), Strategy::LeastBusy);
        // Left out: the configuration's.
        assert_eq!(
            live.first_reply_of(Some("sales")),
            Some(Duration::from_secs(60))
        );
        assert!(!live.bot_first_of(Some("sales")));
        assert!(live.bot_first_of(Some("support")));
    }
}
