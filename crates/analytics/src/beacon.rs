//! Player beacons: what a player reports about its own playback, in batches.
//!
//! Parse, don't validate: [`parse_batch`] turns request bytes into [`ValidBeacon`]s
//! or a [`BeaconError`] naming the field at fault; nothing else reaches the
//! aggregator or the database.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::cmcd::{Cmcd, MAX_ID_LEN};

/// The body of `POST /api/analytics/beacons`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BeaconBatch {
    /// 1 to [`MAX_BATCH`] beacons.
    pub beacons: Vec<Beacon>,
}

/// One report. Counters (`rebuffer_*`, `play_ms`, `rendition_switches`, `errors`,
/// `dropped_frames`) are what happened since the previous beacon of the session.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Beacon {
    /// The stream's public name.
    pub stream: String,
    /// The playback session; defaults to `cmcd.sid`, then to a hash of the client's
    /// address and user agent (as for its requests).
    #[serde(default)]
    pub session_id: Option<String>,
    /// When the player made the report, ms since the epoch; defaults to arrival time.
    /// Ignored if more than an hour off the server's clock.
    #[serde(default)]
    pub ts: Option<i64>,
    /// The rendition playing.
    #[serde(default)]
    pub rendition: Option<String>,
    /// From play request to first frame, ms (once per session).
    #[serde(default)]
    pub startup_ms: Option<f64>,
    /// Time spent playing since the previous beacon, ms.
    #[serde(default)]
    pub play_ms: Option<f64>,
    /// Stalls since the previous beacon.
    #[serde(default)]
    pub rebuffer_count: Option<u64>,
    /// Time spent stalled since the previous beacon, ms.
    #[serde(default)]
    pub rebuffer_ms: Option<f64>,
    #[serde(default)]
    pub rendition_switches: Option<u64>,
    /// Playback errors since the previous beacon.
    #[serde(default)]
    pub errors: Option<u64>,
    /// Distance from the live edge (wall clock minus the playing frame's
    /// `EXT-X-PROGRAM-DATE-TIME`), ms.
    #[serde(default)]
    pub live_latency_ms: Option<f64>,
    #[serde(default)]
    pub dropped_frames: Option<u64>,
    /// CMCD keys, as the player would send them with a request.
    #[serde(default)]
    pub cmcd: Option<Cmcd>,
}

/// A beacon that passed every check. Durations are whole milliseconds.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ValidBeacon {
    pub stream: String,
    pub session_id: Option<String>,
    pub ts: Option<i64>,
    pub rendition: Option<String>,
    pub startup_ms: Option<u64>,
    pub play_ms: u64,
    pub rebuffer_count: u64,
    pub rebuffer_ms: u64,
    pub rendition_switches: u64,
    pub errors: u64,
    pub live_latency_ms: Option<u64>,
    pub dropped_frames: u64,
    pub cmcd: Cmcd,
}

/// Why a beacon batch was refused (answered 400 with `field`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct BeaconError {
    /// The field at fault, as a path (`beacons[2].rebuffer_ms`), if one is.
    pub field: Option<String>,
    pub reason: String,
    /// A short label for the rejection metric.
    pub kind: &'static str,
}

/// Largest body accepted, bytes.
pub const MAX_BODY: usize = 64 * 1024;
/// Most beacons in one batch.
pub const MAX_BATCH: usize = 100;
/// Largest duration accepted (a day), ms: anything longer is a bug in the player.
pub const MAX_DURATION_MS: f64 = 86_400_000.0;
/// Largest count accepted in one beacon.
pub const MAX_COUNT: u64 = 1_000_000;

/// Parses and checks a batch.
pub fn parse_batch(body: &[u8]) -> Result<Vec<ValidBeacon>, BeaconError> {
    if body.len() > MAX_BODY {
        return Err(BeaconError {
            field: None,
            reason: format!("body larger than {MAX_BODY} bytes"),
            kind: "too_large",
        });
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let batch: BeaconBatch = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        BeaconError {
            field: (path != "." && path != "?").then_some(path),
            reason: format!("invalid JSON body: {}", e.inner()),
            kind: "malformed",
        }
    })?;
    if batch.beacons.is_empty() || batch.beacons.len() > MAX_BATCH {
        return Err(invalid(
            "beacons".into(),
            format!("a batch holds 1 to {MAX_BATCH} beacons"),
        ));
    }
    batch
        .beacons
        .into_iter()
        .enumerate()
        .map(|(i, b)| validate(b, &format!("beacons[{i}]")))
        .collect()
}

fn validate(b: Beacon, at: &str) -> Result<ValidBeacon, BeaconError> {
    let field = |name: &str| format!("{at}.{name}");
    let stream = b.stream.trim().to_owned();
    if media::live_path::check_stream_name(&stream).is_err() {
        return Err(invalid(field("stream"), "not a stream name".into()));
    }
    let id = |value: Option<String>, name: &str| -> Result<Option<String>, BeaconError> {
        match value {
            Some(v)
                if v.is_empty()
                    || v.chars().count() > MAX_ID_LEN
                    || v.chars().any(char::is_control) =>
            {
                Err(invalid(
                    field(name),
                    format!("must be 1 to {MAX_ID_LEN} printable characters"),
                ))
            }
            v => Ok(v),
        }
    };
    let duration = |value: Option<f64>, name: &str| -> Result<Option<u64>, BeaconError> {
        match value {
            None => Ok(None),
            Some(v) if !v.is_finite() || v < 0.0 => Err(invalid(
                field(name),
                format!("must be a duration of 0 ms or more, not {v}"),
            )),
            Some(v) if v > MAX_DURATION_MS => {
                Err(invalid(field(name), format!("{v} ms is longer than a day")))
            }
            // In range 0..=86.4e6, so the cast is exact after rounding.
            Some(v) => Ok(Some(v.round() as u64)),
        }
    };
    let count = |value: Option<u64>, name: &str| -> Result<u64, BeaconError> {
        match value {
            Some(v) if v > MAX_COUNT => {
                Err(invalid(field(name), format!("{v} is implausibly large")))
            }
            v => Ok(v.unwrap_or(0)),
        }
    };
    let cmcd = b.cmcd.unwrap_or_default();
    id(cmcd.sid.clone(), "cmcd.sid")?;
    id(cmcd.cid.clone(), "cmcd.cid")?;
    Ok(ValidBeacon {
        stream,
        session_id: id(b.session_id, "session_id")?,
        ts: b.ts,
        rendition: id(b.rendition, "rendition")?,
        startup_ms: duration(b.startup_ms, "startup_ms")?,
        play_ms: duration(b.play_ms, "play_ms")?.unwrap_or(0),
        rebuffer_count: count(b.rebuffer_count, "rebuffer_count")?,
        rebuffer_ms: duration(b.rebuffer_ms, "rebuffer_ms")?.unwrap_or(0),
        rendition_switches: count(b.rendition_switches, "rendition_switches")?,
        errors: count(b.errors, "errors")?,
        live_latency_ms: duration(b.live_latency_ms, "live_latency_ms")?,
        dropped_frames: count(b.dropped_frames, "dropped_frames")?,
        cmcd,
    })
}

fn invalid(field: String, reason: String) -> BeaconError {
    BeaconError {
        field: Some(field),
        reason,
        kind: "invalid",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_batch() {
        let body = br#"{"beacons":[{"stream":"cam","session_id":"s1","startup_ms":812.6,
            "rebuffer_count":1,"rebuffer_ms":250,"play_ms":9750,"live_latency_ms":1500,
            "cmcd":{"br":800,"bs":true,"sid":"s1","st":"l"}}]}"#;
        let b = &parse_batch(body).unwrap()[0];
        assert_eq!(b.startup_ms, Some(813));
        assert_eq!((b.rebuffer_count, b.rebuffer_ms, b.play_ms), (1, 250, 9750));
        assert_eq!(b.cmcd.br, Some(800));
    }

    #[test]
    fn refusals_name_the_field() {
        let cases: &[(&[u8], Option<&str>, &str)] = &[
            (b"{not json", None, "malformed"),
            (
                br#"{"beacons":[{"stream":"cam","rebuffer_ms":-5}]}"#,
                Some("beacons[0].rebuffer_ms"),
                "invalid",
            ),
            (
                br#"{"beacons":[{"stream":"cam"},{"stream":"cam","startup_ms":-0.5}]}"#,
                Some("beacons[1].startup_ms"),
                "invalid",
            ),
            (
                br#"{"beacons":[{"stream":"cam","dropped_frames":-1}]}"#,
                Some("beacons[0].dropped_frames"),
                "malformed",
            ),
            (
                br#"{"beacons":[{"stream":"cam","bogus":1}]}"#,
                Some("beacons[0].bogus"),
                "malformed",
            ),
            (
                br#"{"beacons":[{"stream":"a b"}]}"#,
                Some("beacons[0].stream"),
                "invalid",
            ),
            (br#"{"beacons":[]}"#, Some("beacons"), "invalid"),
            (
                br#"{"beacons":[{"stream":"cam","cmcd":{"br":-1}}]}"#,
                Some("beacons[0].cmcd.br"),
                "malformed",
            ),
        ];
        for (body, field, kind) in cases {
            let e = parse_batch(body).unwrap_err();
            assert_eq!(
                e.field.as_deref(),
                *field,
                "{}: {e}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(e.kind, *kind, "{e}");
        }
        let huge = format!(r#"{{"beacons":[{{"stream":"{}"}}]}}"#, "x".repeat(MAX_BODY));
        assert_eq!(parse_batch(huge.as_bytes()).unwrap_err().kind, "too_large");
    }
}
