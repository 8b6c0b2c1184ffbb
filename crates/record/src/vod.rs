//! What a finished recording is: its manifest (`recording.json`), and the VOD
//! playlists written beside its segments. Pure functions over the segment log.

use std::fmt::Write;

use media::live_path::MediaObject;
use package::VariantInfo;
use serde::{Deserialize, Serialize};

/// The manifest of a finished recording, stored as `ID/recording.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub id: String,
    pub stream: String,
    /// Wall clock of the first recorded segment, milliseconds since the Unix epoch.
    pub started_at: i64,
    /// When the stream ended, milliseconds since the Unix epoch.
    pub ended_at: i64,
    /// Media duration of the longest rendition, milliseconds.
    pub duration_ms: u64,
    /// Bytes of all init segments and segments written.
    pub bytes: u64,
    pub renditions: Vec<RecordedRendition>,
    /// Segments that could not be recorded (a full queue, a failing store).
    pub gaps: u64,
    /// Copied from the stream when it ended.
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    /// Copied from the stream when it ended: its VOD objects need the stream's
    /// playback token (`?token=`), as its live media did.
    #[serde(default)]
    pub private: bool,
    /// The poster's object name beside the manifest ([`crate::POSTER`]), if one was
    /// painted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poster: Option<String>,
}

/// One rendition of a recording.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedRendition {
    pub name: String,
    pub segments: u64,
    pub bytes: u64,
    pub duration_ms: u64,
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub codecs: String,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
}

/// One recorded segment, as the VOD playlist lists it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LoggedSegment {
    pub(crate) msn: u64,
    pub(crate) duration_ticks: i64,
    pub(crate) timescale: u32,
    /// A discontinuity in the stream (a segment missing before this one shows as a
    /// hole in the numbering instead).
    pub(crate) discontinuity: bool,
    pub(crate) init_version: u32,
    /// Wall clock at the segment's start, ms since the epoch (the DVR's PDT).
    pub(crate) program_date_ms: i64,
}

/// The object name of a recording's file: `ID/RENDITION/FILE` or `ID/FILE`.
pub(crate) fn object_path(
    id: &str,
    rendition: Option<&str>,
    file: &str,
) -> object_store::path::Path {
    match rendition {
        Some(r) => object_store::path::Path::from(format!("{id}/{r}/{file}")),
        None => object_store::path::Path::from(format!("{id}/{file}")),
    }
}

/// The manifest's file name.
pub(crate) const MANIFEST: &str = "recording.json";

/// The VOD media playlist of one rendition: every recorded segment, `EXT-X-MAP` where
/// the init segment changes, `EXT-X-DISCONTINUITY` where the stream had one or where a
/// segment is missing, `EXT-X-ENDLIST`.
pub(crate) fn media_playlist(segments: &[LoggedSegment]) -> String {
    let secs = |s: &LoggedSegment| s.duration_ticks as f64 / f64::from(s.timescale.max(1));
    let target = segments
        .iter()
        .map(|s| secs(s).round() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = writeln!(
        out,
        "#EXT-X-MEDIA-SEQUENCE:{}",
        segments.first().map_or(0, |s| s.msn)
    );
    let mut init = None;
    for (i, s) in segments.iter().enumerate() {
        if i > 0 && (s.discontinuity || segments[i - 1].msn + 1 != s.msn) {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if init != Some(s.init_version) {
            init = Some(s.init_version);
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{}\"",
                MediaObject::Init {
                    version: s.init_version
                }
            );
        }
        let _ = writeln!(
            out,
            "#EXTINF:{:.5},\n{}",
            secs(s),
            MediaObject::Segment { msn: s.msn }
        );
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// The VOD multivariant playlist over the renditions' media playlists.
pub(crate) fn master_playlist(recording: &Recording) -> String {
    let variants: Vec<(&str, VariantInfo)> = recording
        .renditions
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                VariantInfo {
                    bandwidth: r.bandwidth,
                    average_bandwidth: r.average_bandwidth,
                    codecs: r.codecs.clone(),
                    resolution: r.resolution,
                    frame_rate: r.frame_rate,
                },
            )
        })
        .collect();
    let mut session_data = vec![("com.rivulet.recording", recording.id.as_str())];
    if !recording.title.is_empty() {
        session_data.push(("com.rivulet.title", recording.title.as_str()));
    }
    package::multivariant_playlist(&variants, &session_data)
}

/// The objects of one rendition of a recording in MP4 order, read from its VOD
/// playlist: the init segment, then every segment. `None` when the rendition changed
/// its init segment (its tracks) during the recording: one MP4 cannot hold both.
pub(crate) fn mp4_objects(playlist: &str) -> Option<Vec<String>> {
    let mut init: Option<&str> = None;
    let mut segments = Vec::new();
    for line in playlist.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
            let uri = rest.strip_suffix('"')?;
            match init {
                Some(i) if i != uri => return None,
                _ => init = Some(uri),
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            segments.push(line.to_owned());
        }
    }
    let mut objects = vec![init?.to_owned()];
    objects.extend(segments);
    Some(objects)
}

/// A recording id is made by the recorder: the stream name and the start time. Checked
/// before it becomes part of an object name.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 96
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(msn: u64, discontinuity: bool, init_version: u32) -> LoggedSegment {
        LoggedSegment {
            msn,
            duration_ticks: 180_000,
            timescale: 90_000,
            discontinuity,
            init_version,
            program_date_ms: 0,
        }
    }

    #[test]
    fn media_playlist_is_vod_with_maps_and_discontinuities() {
        let p = media_playlist(&[seg(5, false, 1), seg(6, false, 1), seg(8, false, 1)]);
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(p.ends_with("#EXT-X-ENDLIST\n"));
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:5\n"));
        assert!(p.contains("#EXT-X-TARGETDURATION:2\n"));
        assert_eq!(p.matches("#EXT-X-MAP:URI=\"init-1.mp4\"").count(), 1);
        assert!(p.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.00000,\nseg-8.m4s\n"));
        assert_eq!(
            mp4_objects(&p),
            Some(vec![
                "init-1.mp4".to_owned(),
                "seg-5.m4s".to_owned(),
                "seg-6.m4s".to_owned(),
                "seg-8.m4s".to_owned()
            ])
        );
    }

    #[test]
    fn a_changed_init_segment_has_no_single_mp4() {
        let p = media_playlist(&[seg(1, false, 1), seg(2, true, 2)]);
        assert_eq!(p.matches("#EXT-X-MAP").count(), 2);
        assert_eq!(mp4_objects(&p), None);
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("studio-1700000000000"));
        assert!(!valid_id("../etc"));
        assert!(!valid_id(""));
        assert!(!valid_id("A"));
    }
}
