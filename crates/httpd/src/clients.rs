//! Who is connected: counts per client address and in total, and each connection's
//! activity, so that the accept loop can refuse a newcomer or close an idle
//! connection to make room for it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::time::Instant;

/// Connections looked at for the longest-idle one when the total cap is reached: a
/// sample keeps admission cheap under a flood.
const EVICTION_SAMPLE: usize = 256;
/// Connections told to close that may still hold their descriptor beyond the cap: a
/// flood faster than evicted connections close is refused rather than let the
/// descriptors run out.
const EVICTION_SLACK: usize = 32;

/// What one connection shares with the table and its I/O.
#[derive(Debug)]
pub(crate) struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last byte read or written, or of the end
    /// of the last response.
    last_ms: AtomicU64,
    /// Requests whose response has not been fully sent.
    in_flight: AtomicUsize,
    /// Notified to close the connection (to make room for a newcomer).
    pub(crate) evict: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            evict: Notify::new(),
        }
    }

    pub(crate) fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    pub(crate) fn last(&self) -> Instant {
        self.started + std::time::Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A request started; its response (body included) holds the guard.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    TooManyFromClient,
    TooManyInTotal,
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refusal::TooManyFromClient => {
                "too many connections from your address; close some and retry"
            }
            Refusal::TooManyInTotal => "the server is at its connection limit; retry shortly",
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Refusal::TooManyFromClient => "per_client",
            Refusal::TooManyInTotal => "total",
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    per_client: HashMap<IpAddr, usize>,
    connections: HashMap<u64, Arc<Activity>>,
    next_id: u64,
}

/// The open connections of one server.
#[derive(Debug)]
pub(crate) struct Clients {
    table: Mutex<Table>,
    max_total: usize,
    max_per_client: usize,
    /// Notified whenever a connection closes (shutdown waits for none left).
    closed: Notify,
    evicted: AtomicU64,
}

/// Counters of one server's connections, for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnectionStats {
    /// Connections open now.
    pub(crate) open: usize,
    /// Idle connections closed to make room for new ones, since the start.
    pub(crate) evicted: u64,
}

impl Clients {
    pub(crate) fn new(max_total: usize, max_per_client: usize) -> Self {
        Self {
            table: Mutex::default(),
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            closed: Notify::new(),
            evicted: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a connection from `client`, closing an idle one if the server is full.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Ticket, Refusal> {
        let mut table = self.lock();
        if table.per_client.get(&client).copied().unwrap_or(0) >= self.max_per_client {
            return Err(Refusal::TooManyFromClient);
        }
        let open: usize = table.per_client.values().sum();
        if open >= self.max_total + EVICTION_SLACK {
            return Err(Refusal::TooManyInTotal);
        }
        if table.connections.len() >= self.max_total {
            // The longest-idle connection of a sample with nothing in flight goes: an
            // idle keep-alive (or a client that never sent a request) costs a
            // descriptor and serves nobody.
            let idle = table
                .connections
                .iter()
                .take(EVICTION_SAMPLE)
                .filter(|(_, a)| a.in_flight() == 0)
                .min_by_key(|(_, a)| a.last())
                .map(|(id, a)| (*id, a.clone()));
            let Some((id, victim)) = idle else {
                return Err(Refusal::TooManyInTotal);
            };
            // Out of the table now, so that the next newcomer picks another; its
            // per-client count goes when its task ends.
            table.connections.remove(&id);
            victim.evict.notify_one();
            self.evicted.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("http_connections_evicted_total").increment(1);
        }
        let id = table.next_id;
        table.next_id += 1;
        let activity = Arc::new(Activity::new());
        table.connections.insert(id, activity.clone());
        *table.per_client.entry(client).or_insert(0) += 1;
        metrics::gauge!("http_connections").increment(1.0);
        Ok(Ticket {
            clients: self.clone(),
            client,
            id,
            activity,
        })
    }

    pub(crate) fn stats(&self) -> ConnectionStats {
        let table = self.lock();
        ConnectionStats {
            open: table.per_client.values().sum(),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    /// Waits until no connection is open.
    pub(crate) async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().per_client.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// An admitted connection; dropping it releases its place.
#[derive(Debug)]
pub(crate) struct Ticket {
    clients: Arc<Clients>,
    client: IpAddr,
    id: u64,
    pub(crate) activity: Arc<Activity>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        {
            let mut table = self.clients.lock();
            table.connections.remove(&self.id);
            if let Some(n) = table.per_client.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    table.per_client.remove(&self.client);
                }
            }
        }
        metrics::gauge!("http_connections").decrement(1.0);
        self.clients.closed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test]
    async fn caps_per_client_and_makes_room_by_closing_the_idle() {
        let clients = Arc::new(Clients::new(3, 2));
        let a1 = clients.admit(ip(2)).expect("first");
        let _a2 = clients.admit(ip(2)).expect("second");
        assert_eq!(
            clients.admit(ip(2)).unwrap_err(),
            Refusal::TooManyFromClient
        );
        let busy = clients.admit(ip(3)).expect("another client");
        let _request = busy.activity.begin();
        // Full: an idle connection is closed to make room.
        let b = clients.admit(ip(4)).expect("room made");
        assert_eq!(clients.stats().evicted, 1);
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(1), async {
                // One of ip(2)'s idle connections was told to go.
                tokio::select! {
                    () = a1.activity.evict.notified() => {},
                    () = _a2.activity.evict.notified() => {},
                }
            })
            .await
            .is_ok()
        );
        drop(b);
        assert_eq!(
            clients.stats().open,
            3,
            "the evicted still count until they close"
        );
        let _request_b = clients.admit(ip(5)).expect("room").activity.begin();
    }

    #[tokio::test]
    async fn refuses_when_everyone_is_busy() {
        let clients = Arc::new(Clients::new(1, 1));
        let only = clients.admit(ip(2)).expect("first");
        let _busy = only.activity.begin();
        assert_eq!(clients.admit(ip(3)).unwrap_err(), Refusal::TooManyInTotal);
        drop(_busy);
        drop(only);
        clients.all_closed().await;
        assert_eq!(clients.stats().open, 0);
    }
}
