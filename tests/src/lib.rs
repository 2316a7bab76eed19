//! Support for Switchboard's integration tests: real servers and real
//! processes on free loopback ports, and clients that speak the public
//! contract over real sockets.
//!
//! - [`archive`]: waiting for the archiver to catch up.
//! - [`balancer`]: HAProxy with the shipped configuration in front of
//!   two edges.
//! - [`guarantees`]: checking the delivery guarantees after faults.
//! - [`bots`]: bot accounts, the example FAQ bots as real processes, and
//!   what a bot answered.
//! - [`script`]: conversations with chosen times, published to the stream.
//! - [`services`]: `nats-server` and a MongoDB-wire server, one per test,
//!   with temporary data directories; killed and removed on drop.
//! - [`system`]: a test deployment — the services plus component processes
//!   (`switchboard-node edge|router|archiver`), agents, settings.
//! - [`ws`]: a WebSocket client of the browser contract.
//! - [`sse`]: a client of the event-stream transport (SSE and POSTs).
//! - [`http`]: a minimal HTTP/1.1 client for the JSON API.
//! - [`metrics`]: reading `/metrics` as Prometheus would.
//!
//! ## Waiting on a machine of unknown speed
//!
//! A test's outcome depends on whether the system is correct, never on how
//! fast the machine is. So:
//!
//! - work that takes time in proportion to its size (the archive catching
//!   up, a queue draining) is awaited with [`progressing`]: the test fails
//!   only when the work has **stopped moving** for a [`deadline`];
//! - anything else is awaited with [`eventually`] (or a frame with
//!   [`ws::Ws::expect`]) up to a [`deadline`];
//! - every duration a test waits for is [`scaled`] by one knob,
//!   `SWITCHBOARD_TEST_TIME_SCALE` (default 3: a machine three times slower
//!   than the one the base figures were chosen on still passes). Raise it
//!   on a very slow or very loaded machine; lower it to find hangs faster.
//!
//! Durations the *system* is configured with (a grace period, a window a
//! test waits past) are not scaled: they are what is being tested.

pub mod archive;
pub mod balancer;
pub mod bots;
pub mod guarantees;
pub mod http;
pub mod metrics;
pub mod script;
pub mod services;
pub mod sim;
pub mod sse;
pub mod system;
pub mod ws;

use std::fmt::Debug;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

/// The variable that scales every test deadline.
pub const TIME_SCALE_VAR: &str = "SWITCHBOARD_TEST_TIME_SCALE";

/// The scale when [`TIME_SCALE_VAR`] is not set.
const DEFAULT_TIME_SCALE: f64 = 3.0;

/// How long one awaited step may take on the reference machine, before
/// [`scaled`]: a frame, a process becoming ready, a condition coming true.
const BASE_DEADLINE: Duration = Duration::from_secs(20);

/// The factor every test deadline is multiplied by:
/// `SWITCHBOARD_TEST_TIME_SCALE` (a positive number), 3 when unset.
///
/// # Panics
/// When the variable is set to something that is not a positive number, so
/// a typo never silently runs the suite with the wrong deadlines.
pub fn time_scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| match std::env::var(TIME_SCALE_VAR) {
        Err(_) => DEFAULT_TIME_SCALE,
        Ok(text) => match text.trim().parse::<f64>() {
            Ok(scale) if scale.is_finite() && scale > 0.0 => scale,
            _ => panic!("{TIME_SCALE_VAR} must be a positive number, not {text:?}"),
        },
    })
}

/// `base` multiplied by [`time_scale`].
pub fn scaled(base: Duration) -> Duration {
    base.mul_f64(time_scale())
}

/// How long any awaited step may take before the test fails (20 s, scaled),
/// and how long [`progressing`] work may stand still.
pub fn deadline() -> Duration {
    scaled(BASE_DEADLINE)
}

/// Awaits `check` returning `Some`, re-checking every 50 ms, failing the
/// test with `what` after [`deadline`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let limit = deadline();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Free ports tried in turn for a process that finds its port taken: a
/// port found free may be taken (by another test's socket; tests run in
/// parallel) before the process binds it.
pub const PORT_ATTEMPTS: usize = 5;

/// Waits until a process just started is `ready`: true; false when it
/// exits first (its free port was taken meanwhile, say). The test fails
/// after a [`deadline`] of neither.
pub async fn ready_unless_exited<F, Fut>(
    child: &mut tokio::process::Child,
    what: &str,
    mut ready: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let limit = deadline();
    let until = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            tracing::warn!(%status, "{what}: exited before it was ready");
            return false;
        }
        if ready().await {
            return true;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "timed out after {limit:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Awaits work whose duration grows with its size: `check` answers
/// `Ok(value)` when it is done, or `Err(progress)` with where it stands (a
/// count, or a description that changes as the work moves). The test fails
/// only when `progress` has not changed for a whole [`deadline`], however
/// long the work takes in all.
pub async fn progressing<T, P, F, Fut>(what: &str, check: F) -> T
where
    P: PartialEq + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, P>>,
{
    progressing_for(what, deadline(), check).await
}

/// [`progressing`] with a longer allowed standstill, for work that the
/// system itself pauses on purpose (a redelivery after the consumer's ack
/// wait): `stall` is used as given, so add the system's pause to a
/// [`deadline`].
pub async fn progressing_for<T, P, F, Fut>(what: &str, stall: Duration, mut check: F) -> T
where
    P: PartialEq + Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, P>>,
{
    let mut last: Option<P> = None;
    let mut moved_at = tokio::time::Instant::now();
    loop {
        match check().await {
            Ok(value) => return value,
            Err(progress) => {
                let now = tokio::time::Instant::now();
                if last.as_ref() != Some(&progress) {
                    last = Some(progress);
                    moved_at = now;
                }
                assert!(
                    now.duration_since(moved_at) < stall,
                    "no progress in {stall:?} waiting for: {what}; stuck at {last:?}"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// Logs of the test process (RUST_LOG), once.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slow work that keeps moving passes, however long it takes in all.
    #[tokio::test(start_paused = true)]
    async fn progressing_waits_as_long_as_the_work_moves() {
        let began = tokio::time::Instant::now();
        let count = progressing("slow work", || async {
            // One step every 10 s: 100 steps take far longer than a deadline.
            let step = began.elapsed().as_secs() / 10;
            if step >= 100 {
                Ok(step)
            } else {
                Err(step)
            }
        })
        .await;
        assert_eq!(count, 100);
        assert!(began.elapsed() > deadline() * 10);
    }

    /// Work that stops moving fails after a deadline, not before.
    #[tokio::test(start_paused = true)]
    async fn progressing_fails_when_the_work_stands_still() {
        let began = tokio::time::Instant::now();
        let stuck = tokio::spawn(progressing("stuck work", move || async move {
            let step = (began.elapsed().as_secs() / 10).min(3);
            Err::<(), u64>(step)
        }));
        let failure = stuck.await.expect_err("stuck work must fail the wait");
        assert!(failure.is_panic());
        let took = began.elapsed();
        // Moved until 30 s, then stood still for one deadline.
        assert!(took >= deadline() + Duration::from_secs(30), "{took:?}");
        assert!(took < deadline() + Duration::from_secs(31), "{took:?}");
    }
}
