//! What the edge reads in an upstream's media playlist (sans-IO).
//!
//! An origin answers a blocking reload for a part older than its window at once, with
//! the playlist it has: right for a player that fell behind one origin, wrong for an
//! edge in front of two pipelines, where it means "this origin has no history there"
//! (typically one that has just restarted and whose window starts later than its
//! twin's). Forwarding it would take the viewer's playlist forward past parts it
//! never saw. [`answers_blocking`] tells the two apart, so the edge asks the next
//! upstream instead.

use media::live_path::MediaObject;

/// Whether `playlist` answers a blocking reload for `msn` (and `part`): the target is
/// inside its window and it lists the target or something after it (a part index
/// beyond a segment's last part means part 0 of the next segment, RFC 8216bis
/// §6.2.5.2). An ended playlist answers everything.
pub fn answers_blocking(playlist: &str, msn: u64, part: Option<u32>) -> bool {
    let mut first_msn = None;
    let mut last_part: Option<(u64, u32)> = None;
    let mut last_segment: Option<u64> = None;
    for line in playlist.lines() {
        if let Some(n) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            first_msn = n.trim().parse::<u64>().ok();
        } else if line.starts_with("#EXT-X-ENDLIST") {
            return true;
        } else if let Some(attrs) = line.strip_prefix("#EXT-X-PART:") {
            if let Some(id) = uri(attrs).and_then(part_id) {
                last_part = last_part.max(Some(id));
            }
        } else if let Some(MediaObject::Segment { msn }) = MediaObject::parse(line.trim()) {
            last_segment = last_segment.max(Some(msn));
        }
    }
    let Some(first) = first_msn else {
        return false;
    };
    if msn < first {
        return false;
    }
    match part {
        Some(p) => last_part.is_some_and(|last| last >= (msn, p)),
        None => last_segment.is_some_and(|s| s >= msn) || last_part.is_some_and(|(m, _)| m > msn),
    }
}

/// Whether `playlist` is a media playlist without a single complete segment (only
/// the parts of the open one): what an origin that has just (re)started serves for
/// its first seconds. hls.js cannot play from it (`levelEmptyError`, then a stall of
/// seconds), so while another upstream has segments the edge asks that one instead.
pub fn lacks_segments(playlist: &str) -> bool {
    playlist.contains("#EXT-X-MEDIA-SEQUENCE:") && !playlist.contains("#EXTINF:")
}

/// The `URI` attribute of an attribute list.
fn uri(attrs: &str) -> Option<&str> {
    let start = attrs.find("URI=\"")? + 5;
    attrs[start..].split('"').next()
}

/// `part-M-P.m4s` → (M, P).
fn part_id(uri: &str) -> Option<(u64, u32)> {
    match MediaObject::parse(uri.rsplit('/').next()?)? {
        MediaObject::Part { msn, part } => Some((msn, part)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAYLIST: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-TARGETDURATION:2\n\
        #EXT-X-MEDIA-SEQUENCE:40\n#EXT-X-MAP:URI=\"init-0.mp4\"\n\
        #EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:00.000Z\n\
        #EXT-X-PART:DURATION=0.33333,URI=\"part-40-0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.33333,URI=\"part-40-1.m4s\"\n\
        #EXTINF:2.00000,\nseg-40.m4s\n\
        #EXT-X-PROGRAM-DATE-TIME:2024-01-01T00:00:02.000Z\n\
        #EXT-X-PART:DURATION=0.33333,URI=\"part-41-0.m4s\",INDEPENDENT=YES\n\
        #EXT-X-PART:DURATION=0.33333,URI=\"part-41-1.m4s\"\n\
        #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-41-2.m4s\"\n";

    #[test]
    fn a_listed_part_or_a_later_one_answers() {
        assert!(answers_blocking(PLAYLIST, 41, Some(1)));
        assert!(answers_blocking(PLAYLIST, 41, Some(0)));
        assert!(answers_blocking(PLAYLIST, 40, Some(6)), "beyond segment 40");
        assert!(
            answers_blocking(PLAYLIST, 40, None),
            "segment 40 is complete"
        );
    }

    #[test]
    fn a_part_not_there_yet_or_before_the_window_does_not() {
        assert!(!answers_blocking(PLAYLIST, 41, Some(2)), "only hinted");
        assert!(!answers_blocking(PLAYLIST, 41, None), "segment 41 is open");
        assert!(
            !answers_blocking(PLAYLIST, 39, Some(5)),
            "before the window: this upstream lacks the history"
        );
        assert!(!answers_blocking("not a playlist", 1, Some(0)));
        let ended = format!("{PLAYLIST}#EXT-X-ENDLIST\n");
        assert!(answers_blocking(&ended, 41, Some(4)));
    }

    #[test]
    fn a_media_playlist_of_parts_only_lacks_segments() {
        assert!(!lacks_segments(PLAYLIST));
        let fresh = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
            #EXT-X-MAP:URI=\"init-0.mp4\"\n\
            #EXT-X-PART:DURATION=0.33333,URI=\"part-41-0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-41-1.m4s\"\n";
        assert!(lacks_segments(fresh));
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=150000\n144p/index.m3u8\n";
        assert!(
            !lacks_segments(master),
            "a multivariant playlist has no segments"
        );
    }
}
