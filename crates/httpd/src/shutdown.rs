//! How a role stops: [`signal`] completes on Ctrl-C or SIGTERM, and a [`Stop`] lets
//! every task of the role (servers, workers, watches) wait for the same stop.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

/// One stop that many tasks wait on ([`Stop::stopped`]); cloned, it is the same stop.
#[derive(Clone, Debug)]
pub struct Stop {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Stop {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Stop {
    /// A stop triggered only by [`Stop::trigger`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A stop triggered when `shutdown` completes (or by [`Stop::trigger`]).
    /// Needs a tokio runtime.
    pub fn on(shutdown: impl Future<Output = ()> + Send + 'static) -> Self {
        let stop = Self::new();
        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            trigger.trigger();
        });
        stop
    }

    /// Stops now: every [`Stop::stopped`] completes.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// Completes when the stop was triggered (at once if it already was).
    pub fn stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_waiter_sees_the_one_stop() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = Stop::on(async move {
            let _ = rx.await;
        });
        let early = tokio::spawn(stop.stopped());
        let _ = tx.send(());
        early.await.unwrap_or_else(|e| panic!("{e}"));
        // A waiter that comes after the stop completes at once.
        stop.clone().stopped().await;
    }
}
