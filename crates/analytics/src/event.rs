//! Delivery events: one per playlist, part or segment request an origin or edge
//! answered. What servers send to the analytics server, in batches.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::cmcd::Cmcd;

/// One answered request. Unknown fields are ignored (unlike in beacons): a newer
/// edge may send an older analytics server fields it does not know yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeliveryEvent {
    /// When the request arrived, milliseconds since the Unix epoch.
    pub ts: i64,
    /// The stream's public name.
    pub stream: String,
    /// The rendition, for media playlists and media objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendition: Option<String>,
    pub kind: ObjectKind,
    /// HTTP status of the answer.
    pub status: u16,
    /// Body bytes sent (fewer than the object's size if the client went away).
    pub bytes: u64,
    /// From the request's arrival to the answer's headers, microseconds; for a held
    /// request (blocking reload, preload-hinted part) this includes the wait.
    pub ttfb_us: u64,
    /// The client's address (after trusted-proxy `X-Forwarded-For`).
    #[schema(value_type = String)]
    pub client: IpAddr,
    /// The playback session (see `docs/api.md`, "Sessions": CMCD `sid`, player id, or a
    /// salted hash).
    pub session: String,
    /// The node that served the request.
    pub edge: String,
    /// The upstream (base URL of an origin or shield) that the edge got the answer
    /// from; absent from origins' events and from older edges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// CMCD keys the request carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmcd: Option<Box<Cmcd>>,
}

/// What was requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// `master.m3u8`.
    Multivariant,
    /// A media playlist.
    Playlist,
    /// A CMAF init segment.
    Init,
    /// An LL-HLS part.
    Part,
    /// A whole segment.
    Segment,
    /// Anything else under a stream's path (answered 404).
    Other,
    /// A WebRTC (WHEP) viewer's media over the last few seconds: the server reports
    /// each session periodically while it plays, with the bytes it sent.
    #[serde(rename = "webrtc")]
    WebRtc,
}

impl ObjectKind {
    /// Media data, as opposed to playlists: what bitrate figures are about.
    pub fn is_media(self) -> bool {
        matches!(
            self,
            ObjectKind::Part | ObjectKind::Segment | ObjectKind::WebRtc
        )
    }
}

/// The body of `POST /api/analytics/events`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct DeliveryBatch {
    pub events: Vec<DeliveryEvent>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Longest stream name, bytes: the one rule every role shares (`media::live_path`).
pub const MAX_STREAM_NAME_LEN: usize = media::live_path::MAX_STREAM_NAME_LEN;
/// Longest edge or ingest node name, characters: the metadata server's rule
/// (`meta::MAX_NODE_LEN`), written again for the same reason.
pub const MAX_NODE_NAME_LEN: usize = 255;
