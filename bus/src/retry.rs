//! Riding out a moment when NATS refuses writes. While a JetStream stream
//! or bucket elects a new leader (5–7 s after its leader died, on a
//! cluster), writes fail at once; a request whose answer is lost times
//! out, and may or may not have been carried out. async-nats retries
//! neither, so the writers here do: with a growing delay, within a
//! budget, and a timed-out write is retried only where repeating it is
//! harmless (a keyed append, or a compare-and-set that reads again first).

use std::time::Duration;

use tokio::time::Instant;

/// How long a write keeps being retried before its error is reported:
/// longer than a leader election.
const BUDGET: Duration = Duration::from_secs(15);
/// The first wait; each next one doubles, up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(1);

/// The waits between attempts of one write.
#[derive(Debug)]
pub struct Backoff {
    until: Instant,
    delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        Self {
            until: Instant::now() + BUDGET,
            delay: FIRST_DELAY,
        }
    }

    /// Waits before the next attempt; false (at once) when the budget is
    /// spent and the error should be reported.
    pub async fn wait(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.until {
            return false;
        }
        tokio::time::sleep(self.delay.min(self.until - now)).await;
        self.delay = (self.delay * 2).min(MAX_DELAY);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_grow_and_stop_at_the_budget() {
        let began = Instant::now();
        let mut backoff = Backoff::new();
        let mut waits = 0;
        while backoff.wait().await {
            waits += 1;
        }
        let took = began.elapsed();
        assert!(took >= BUDGET && took < BUDGET + MAX_DELAY, "{took:?}");
        // 0.1 + 0.2 + 0.4 + 0.8, then a second each.
        assert!((14..=18).contains(&waits), "{waits}");
    }
}
