//! Rivulet's CDN edge: what lets one origin serve many viewers.
//!
//! - [`Edge`]: a pull-through cache for `/live/…` keyed by path and the LL-HLS query
//!   ([`CacheKey`]), bounded in bytes (moka, least recently used out first), expiring
//!   per the upstream's `Cache-Control` ([`policy`]). Concurrent misses for one key
//!   make exactly one upstream request ([`fetch`]); its bytes reach every waiter as
//!   they arrive, so a part still being produced upstream streams to all of them.
//! - [`upstream`]: several origins (or a shield edge) in order of preference, with
//!   health probes that bring an upstream back only after it has stayed healthy;
//!   [`failover`]: which of them answers a request (connect errors, timeouts, 5xx,
//!   stalled or lagging playlists, unwell inputs), a sans-IO state machine driven by
//!   a short loop with the HTTP client.
//! - Private streams: an upstream's `X-Rivulet-Access: private` tells the edge to
//!   check each viewer's playback token (`access::playback`) before serving from the
//!   cache; the token is not part of the [`CacheKey`], playlists are rewritten per
//!   viewer with their own token, and the edge's upstream requests carry a token it
//!   signs itself ([`EdgeConfig::playback_keys`]).
//! - `/api/…` is passed through to the upstream uncached, for the viewer page an
//!   edge serves (metadata, its event stream, QoE beacons).
//! - [`route`]: the router that sends each stream's viewers to one edge (rendezvous
//!   hashing on the stream name among healthy edges), so they share its cache.

mod api;
pub mod boxes;
pub mod failover;
pub mod fetch;
pub mod key;
pub mod options;
pub mod playlist;
pub mod policy;
pub mod route;
mod server;
pub mod upstream;

pub use key::CacheKey;
pub use server::{Edge, EdgeConfig};
