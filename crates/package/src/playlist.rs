//! Playlist text: LL-HLS media playlists and the multivariant playlist.

use std::fmt::Write;

use crate::object::MediaObject;
use crate::time_format::iso8601_millis;

/// A sibling rendition's progress, for `EXT-X-RENDITION-REPORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenditionReport {
    /// The sibling's media playlist, relative to this one (e.g. `../720p/index.m3u8`).
    pub uri: String,
    pub last_msn: Option<u64>,
    pub last_part: Option<u32>,
}

/// What the multivariant playlist says about a rendition.
#[derive(Clone, Debug, PartialEq)]
pub struct VariantInfo {
    /// Peak segment bit rate (bits/s) over the window.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub codecs: String,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
}

pub(crate) struct PlaylistSegment {
    pub(crate) msn: u64,
    /// `None` for the open segment.
    pub(crate) duration_secs: Option<f64>,
    pub(crate) program_date_ms: i64,
    pub(crate) discontinuity: bool,
    pub(crate) init_version: u32,
    /// Complete parts: (duration in seconds, independent).
    pub(crate) parts: Vec<(f64, bool)>,
}

pub(crate) struct MediaPlaylist<'a> {
    /// `PART-TARGET` (ms): the rendition's, see `RenditionPackager::part_target_ms`.
    pub(crate) part_target_ms: u32,
    /// `EXT-X-TARGETDURATION`: at least every EXTINF rounded to the nearest second.
    pub(crate) target_duration: u64,
    pub(crate) discontinuity_sequence: u64,
    pub(crate) segments: Vec<PlaylistSegment>,
    pub(crate) preload_hint: Option<(u64, u32)>,
    pub(crate) reports: &'a [RenditionReport],
    pub(crate) ended: bool,
    pub(crate) skip: bool,
}

/// `ticks` in whole seconds, rounded to the nearest as RFC 8216bis rounds EXTINF against
/// TARGETDURATION.
pub(crate) fn rounded_secs(ticks: i64, timescale: i64) -> u64 {
    let timescale = timescale.max(1);
    u64::try_from((ticks + timescale / 2) / timescale).unwrap_or(0)
}

pub(crate) fn render_media_playlist(p: &MediaPlaylist<'_>) -> String {
    let mut out = String::with_capacity(4096);
    let target = p.target_duration;
    let part_target = f64::from(p.part_target_ms) / 1000.0;
    let skip_until = 6.0 * target as f64;
    let _ = writeln!(out, "#EXTM3U");
    let _ = writeln!(out, "#EXT-X-VERSION:9");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(
        out,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={skip_until:.1},PART-HOLD-BACK={:.3}",
        3.0 * part_target
    );
    let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_target:.3}");
    let first_msn = p.segments.first().map_or(0, |s| s.msn);
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
    if p.discontinuity_sequence > 0 {
        let _ = writeln!(
            out,
            "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
            p.discontinuity_sequence
        );
    }

    // Delta update: skip the oldest complete segments while what remains after them
    // still spans at least CAN-SKIP-UNTIL.
    let mut skipped = 0;
    if p.skip {
        let total: f64 = p
            .segments
            .iter()
            .map(|s| s.duration_secs.unwrap_or(0.0))
            .sum();
        let mut remaining = total;
        for s in &p.segments {
            let Some(d) = s.duration_secs else { break };
            if remaining - d < skip_until {
                break;
            }
            remaining -= d;
            skipped += 1;
        }
        if skipped > 0 {
            let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
        }
    }

    // Parts are listed only for the segments that lie wholly within the last three
    // target durations (RFC 8216bis §4.4.4.9: part tags further from the end SHOULD be
    // removed; strict parsers such as hls-parser refuse them). The open segment always
    // has its parts: they are all it has.
    let mut from_end = 0.0;
    let mut parts_from = p.segments.len();
    for (i, s) in p.segments.iter().enumerate().rev() {
        from_end += s
            .duration_secs
            .unwrap_or_else(|| s.parts.iter().map(|(d, _)| d).sum());
        if from_end > 3.0 * target as f64 && s.duration_secs.is_some() {
            break;
        }
        parts_from = i;
    }

    let mut map_version = None;
    for (i, s) in p.segments.iter().enumerate().skip(skipped) {
        if s.discontinuity && i > skipped {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
        }
        if map_version != Some(s.init_version) {
            let uri = MediaObject::Init {
                version: s.init_version,
            }
            .file_name();
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{uri}\"");
            map_version = Some(s.init_version);
        }
        let _ = writeln!(
            out,
            "#EXT-X-PROGRAM-DATE-TIME:{}",
            iso8601_millis(s.program_date_ms)
        );
        if i >= parts_from {
            for (index, (duration, independent)) in s.parts.iter().enumerate() {
                let uri = MediaObject::Part {
                    msn: s.msn,
                    part: index as u32,
                }
                .file_name();
                let independent = if *independent { ",INDEPENDENT=YES" } else { "" };
                let _ = writeln!(
                    out,
                    "#EXT-X-PART:DURATION={duration:.5},URI=\"{uri}\"{independent}"
                );
            }
        }
        if let Some(d) = s.duration_secs {
            let _ = writeln!(out, "#EXTINF:{d:.5},");
            let _ = writeln!(out, "{}", MediaObject::Segment { msn: s.msn }.file_name());
        }
    }
    if let Some((msn, part)) = p.preload_hint {
        let uri = MediaObject::Part { msn, part }.file_name();
        let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{uri}\"");
    }
    for r in p.reports {
        let _ = write!(out, "#EXT-X-RENDITION-REPORT:URI=\"{}\"", r.uri);
        if let Some(msn) = r.last_msn {
            let _ = write!(out, ",LAST-MSN={msn}");
        }
        if let Some(part) = r.last_part {
            let _ = write!(out, ",LAST-PART={part}");
        }
        out.push('\n');
    }
    if p.ended {
        let _ = writeln!(out, "#EXT-X-ENDLIST");
    }
    out
}

/// The multivariant playlist for `variants` (name, facts), listing each as
/// `NAME/index.m3u8`, with `EXT-X-SESSION-DATA` entries (DATA-ID, VALUE).
pub fn multivariant_playlist(
    variants: &[(&str, VariantInfo)],
    session_data: &[(&str, &str)],
) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (id, value) in session_data {
        let _ = writeln!(
            out,
            "#EXT-X-SESSION-DATA:DATA-ID=\"{}\",VALUE=\"{}\"",
            quoted(id),
            quoted(value)
        );
    }
    let mut sorted: Vec<_> = variants.iter().collect();
    sorted.sort_by_key(|(_, v)| std::cmp::Reverse(v.bandwidth));
    for (name, v) in sorted {
        let _ = write!(
            out,
            "#EXT-X-STREAM-INF:BANDWIDTH={},AVERAGE-BANDWIDTH={}",
            v.bandwidth, v.average_bandwidth
        );
        let _ = write!(out, ",CODECS=\"{}\"", quoted(&v.codecs));
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = v.frame_rate {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        let _ = writeln!(out, "\n{}", media::live_path::media_playlist_uri(name));
    }
    out
}

/// A quoted-string value: HLS forbids `"`, CR and LF inside; replace them.
fn quoted(s: &str) -> String {
    s.chars()
        .map(|c| {
            if matches!(c, '"' | '\r' | '\n') {
                '\''
            } else {
                c
            }
        })
        .collect()
}
