//! Service-manager readiness: `Type=notify` units learn that a role is up only once
//! its listeners are bound (so a dependent unit, or `systemctl start`, waits for a
//! server that answers), and a unit with `WatchdogSec=` gets a heartbeat from the
//! runtime. Outside systemd (no `NOTIFY_SOCKET`) both do nothing.

use std::time::Duration;

/// Tells the service manager the role is ready (its sockets are listening), and
/// starts the watchdog heartbeat if the manager asked for one (`WATCHDOG_USEC`).
pub(crate) fn notify_ready() {
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
        tracing::warn!("cannot tell the service manager we are ready: {e}");
    }
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tokio::spawn(watchdog(interval));
    }
}

/// Pings the watchdog at half its interval, as sd_watchdog_enabled(3) advises. It
/// runs on the same runtime as the servers: a runtime that stops making progress
/// stops the pings, and systemd restarts the service.
async fn watchdog(interval: Duration) {
    let mut tick = tokio::time::interval((interval / 2).max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]) {
            tracing::warn!("cannot ping the service manager's watchdog: {e}");
        }
    }
}
