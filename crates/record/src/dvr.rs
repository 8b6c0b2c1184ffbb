//! DVR: the rewind window of a stream being recorded. The writer logs each segment
//! here as it takes it from the queue (its bytes kept in memory until the store has
//! them); the DVR playlists list the window from this log, and a recorded object is
//! served from memory while it is being written, from the store after.
//!
//! Recorded objects are named `RENDITION/rec-T/seg-N.m4s` below `/live/STREAM/`,
//! `T` being the recording's start in its id (`STREAM-T`): unique per session, so
//! cacheable as immutable, and the same on both pipelines of an A/B pair.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;

use bytes::Bytes;
use media::live_path::{DVR_PLAYLIST, MEDIA_PLAYLIST, MediaObject, recording_dir};
use package::VariantInfo;

use crate::vod::LoggedSegment;

/// One stream's DVR window, shared by its writer task and the HTTP handlers.
#[derive(Default)]
pub(crate) struct DvrLog {
    /// The recording's id and its start `T`, once recording.
    pub(crate) recording: Option<(String, u64)>,
    pub(crate) renditions: BTreeMap<String, DvrRendition>,
}

#[derive(Default)]
pub(crate) struct DvrRendition {
    /// The segments within the window, oldest first.
    pub(crate) segments: VecDeque<LoggedSegment>,
    pub(crate) variant: Option<VariantInfo>,
    /// Objects not in the store yet (being written): served from here meanwhile.
    pub(crate) pending: HashMap<MediaObject, Bytes>,
}

impl DvrLog {
    /// Logs `segment` of `rendition` and drops what fell out of the window
    /// (`window_ms` of program time before the newest segment).
    pub(crate) fn push(
        &mut self,
        rendition: &str,
        segment: LoggedSegment,
        variant: Option<VariantInfo>,
        window_ms: i64,
    ) {
        let r = self.renditions.entry(rendition.to_owned()).or_default();
        let newest = segment.program_date_ms;
        r.segments.push_back(segment);
        if variant.is_some() {
            r.variant = variant;
        }
        while r
            .segments
            .front()
            .is_some_and(|s| s.program_date_ms < newest - window_ms)
        {
            r.segments.pop_front();
        }
    }
}

/// Longest run of lost segments written as `EXT-X-GAP` entries; past it, a
/// discontinuity.
const MAX_GAP_ENTRIES: u64 = 1800;

/// A rendition's DVR media playlist: every segment of the window, a sliding window
/// (no `PLAYLIST-TYPE`, no `ENDLIST` while live), `EXT-X-PROGRAM-DATE-TIME` on every
/// segment, URIs into the recording's directory (`rec-T/seg-N.m4s`). `None` when
/// there is no segment yet.
pub(crate) fn media_playlist(
    recording: u64,
    segments: &VecDeque<LoggedSegment>,
    ended: bool,
) -> Option<String> {
    let first = segments.front()?;
    let secs = |s: &LoggedSegment| s.duration_ticks as f64 / f64::from(s.timescale.max(1));
    let target = segments
        .iter()
        .map(|s| secs(s).ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let dir = recording_dir(recording);
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{}", first.msn);
    let mut init = None;
    let mut previous: Option<&LoggedSegment> = None;
    for s in segments {
        // A segment the recording lost: an `EXT-X-GAP` entry in its place, so that
        // media sequence numbers stay segment numbers as the window slides (a player
        // matches reloads by them) and the timeline runs on.
        if let Some(p) = previous {
            let lost = s.msn.saturating_sub(p.msn + 1).min(MAX_GAP_ENTRIES);
            let ms = p.duration_ticks * 1000 / i64::from(p.timescale.max(1));
            for i in 0..lost {
                let _ = writeln!(
                    out,
                    "#EXT-X-GAP\n#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.5},\n{dir}/{}",
                    package::iso8601_millis(p.program_date_ms + ms * (i as i64 + 1)),
                    secs(p),
                    MediaObject::Segment { msn: p.msn + 1 + i }
                );
            }
            if s.discontinuity || p.msn + 1 + lost != s.msn {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
        }
        if init != Some(s.init_version) {
            init = Some(s.init_version);
            let _ = writeln!(
                out,
                "#EXT-X-MAP:URI=\"{dir}/{}\"",
                MediaObject::Init {
                    version: s.init_version
                }
            );
        }
        previous = Some(s);
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}\n#EXTINF:{:.5},\n{dir}/{}",
            package::iso8601_millis(s.program_date_ms),
            secs(s),
            MediaObject::Segment { msn: s.msn }
        );
    }
    if ended {
        out.push_str("#EXT-X-ENDLIST\n");
    }
    Some(out)
}

/// The DVR multivariant playlist: the renditions' DVR playlists.
pub(crate) fn multivariant_playlist(log: &DvrLog) -> Option<String> {
    let variants: Vec<(&str, VariantInfo)> = log
        .renditions
        .iter()
        .filter(|(_, r)| !r.segments.is_empty())
        .filter_map(|(name, r)| Some((name.as_str(), r.variant.clone()?)))
        .collect();
    if variants.is_empty() {
        return None;
    }
    let text = package::multivariant_playlist(&variants, &[]);
    // The live multivariant's URIs are `NAME/index.m3u8`; these point at the DVR ones.
    let suffix = format!("/{MEDIA_PLAYLIST}");
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.strip_suffix(&suffix) {
            Some(name) if !line.starts_with('#') => {
                let _ = writeln!(out, "{name}/{DVR_PLAYLIST}");
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(msn: u64, pdt: i64) -> LoggedSegment {
        LoggedSegment {
            msn,
            duration_ticks: 180_000,
            timescale: 90_000,
            discontinuity: false,
            init_version: 0,
            program_date_ms: pdt,
        }
    }

    #[test]
    fn the_window_slides_and_every_segment_has_a_date() {
        let mut log = DvrLog::default();
        for i in 0..10u64 {
            log.push(
                "720p",
                seg(i + 5, 1_000_000 + i as i64 * 2000),
                None,
                10_000,
            );
        }
        let r = &log.renditions["720p"];
        // 10 s before the newest (pdt 1_018_000): from 1_008_000 on, msn 9..=14.
        assert_eq!(r.segments.front().map(|s| s.msn), Some(9));
        let p = media_playlist(1_000_000, &r.segments, false).expect("segments");
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:9\n"));
        assert!(!p.contains("PLAYLIST-TYPE"));
        assert!(!p.contains("ENDLIST"));
        assert_eq!(p.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 6);
        assert!(p.contains("#EXT-X-MAP:URI=\"rec-1000000/init-0.mp4\"\n"));
        assert!(p.contains("#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:16:48.000Z\n#EXTINF:2.00000,\nrec-1000000/seg-9.m4s\n"));
        assert!(media_playlist(1, &VecDeque::new(), false).is_none());
    }

    #[test]
    fn a_lost_segment_is_a_gap_entry_and_numbering_holds() {
        let segments: VecDeque<_> = [seg(1, 0), seg(2, 2000), seg(4, 6000)].into();
        let p = media_playlist(7, &segments, false).expect("segments");
        assert!(
            p.contains("#EXT-X-GAP\n#EXT-X-PROGRAM-DATE-TIME:1970-01-01T00:00:04.000Z\n#EXTINF:2.00000,\nrec-7/seg-3.m4s\n"),
            "{p}"
        );
        assert!(!p.contains("DISCONTINUITY"), "{p}");
        assert_eq!(p.matches("#EXTINF").count(), 4);
    }

    #[test]
    fn the_multivariant_points_at_the_dvr_playlists() {
        let mut log = DvrLog::default();
        let variant = VariantInfo {
            bandwidth: 1_000_000,
            average_bandwidth: 900_000,
            codecs: "avc1.64001f".into(),
            resolution: Some((1280, 720)),
            frame_rate: Some(30.0),
        };
        log.push("720p", seg(1, 0), Some(variant), 60_000);
        let m = multivariant_playlist(&log).expect("a variant");
        assert!(m.contains("\n720p/dvr.m3u8\n"), "{m}");
        assert!(!m.contains("index.m3u8"));
    }
}
