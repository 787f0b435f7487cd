//! The subscription sweeper: every `--sweep-interval` it applies the lifecycle transitions time has made due
//! (pending deactivations, prepaid expiry), makes sure the broker refuses every deactivated or expired
//! agent (`App::reconcile_broker`), renews yearly and quarterly plans and mails their renewal
//! reminders (`App::sweep_renewals`), drives update rollouts (`App::drive_rollouts`: next stages, and
//! updates silent for 30 minutes failed), and forgets idle rate-limit buckets.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::api::rate_limit::ActivationLimiter;
use crate::app::App;

/// Sweeps every `interval` (first at once) until `shutdown` completes.
pub async fn run(
    app: App,
    limiter: Arc<ActivationLimiter>,
    interval: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(interval.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticks.tick() => {
                match app.sweep().await {
                    Ok(0) => debug!("subscription sweep: nothing due"),
                    Ok(n) => info!(changes = n, "subscription sweep applied changes"),
                    Err(e) => warn!(error = %e, "subscription sweep failed; retrying at the next interval"),
                }
                // After the sweep, so an agent it just deactivated is covered too.
                if let Err(e) = app.reconcile_broker().await {
                    warn!(error = %e, "deactivated and expired agents not checked in the broker; retrying at the next interval");
                }
                match app.sweep_renewals().await {
                    Ok(done) if done == Default::default() => debug!("renewal sweep: nothing due"),
                    Ok(done) => info!(renewed = done.renewed, reminders = done.reminders, "renewal sweep done"),
                    Err(e) => warn!(error = %e, "renewal sweep failed; retrying at the next interval"),
                }
                match app.drive_rollouts().await {
                    Ok(0) => debug!("rollouts: no update sent"),
                    Ok(n) => info!(sent = n, "rollouts: updates sent"),
                    Err(e) => warn!(error = %e, "rollouts not driven; retrying at the next interval"),
                }
                limiter.forget_idle();
            }
        }
    }
    debug!("sweeper stopped");
}
