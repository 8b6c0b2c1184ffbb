//! An LL-HLS viewer that records what it sees, for the A/B failover test and
//! benchmark: it follows blocking playlist reloads (`_HLS_msn`/`_HLS_part`), fetches
//! every new part in order as soon as a playlist lists it, and notes each part's media
//! time (from the `tfdt` and sample durations of its CMAF chunks), its arrival, and
//! which upstream of an edge answered (`X-Rivulet-Upstream`).
//!
//! It asserts nothing: [`ViewerLog`] holds the record and the figures drawn from it
//! (stalls, timeline gaps, regressions, upstream switches), and the caller decides.
//! (Shared with `tests/common` by `#[path]`: it uses no `crate::` paths.)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Video media time is in this timescale (ticks per second).
pub(crate) const TIMESCALE: i64 = 90_000;

/// One part as fetched.
#[derive(Clone, Debug)]
pub(crate) struct PartSeen {
    pub(crate) msn: u64,
    pub(crate) part: u32,
    /// Video decode time of its first sample and end of its last (90 kHz ticks).
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// Each chunk's (start, end): a part spliced from two upstreams shows here.
    pub(crate) chunks: Vec<(i64, i64)>,
    /// When its body was complete, since the viewer's clock started.
    pub(crate) arrived: Duration,
    pub(crate) upstream: Option<u32>,
}

/// One playlist as received.
#[derive(Clone, Debug)]
pub(crate) struct PlaylistSeen {
    pub(crate) at: Duration,
    pub(crate) media_sequence: u64,
    pub(crate) preload_hint: Option<(u64, u32)>,
    pub(crate) upstream: Option<u32>,
}

/// Something the viewer was refused or could not use.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) at: Duration,
    pub(crate) what: String,
}

/// Everything one viewer saw.
#[derive(Clone, Debug, Default)]
pub(crate) struct ViewerLog {
    pub(crate) parts: Vec<PartSeen>,
    pub(crate) playlists: Vec<PlaylistSeen>,
    pub(crate) failures: Vec<Failure>,
}

/// Shared with whoever runs the scenario: a stop flag, and the upstream of the
/// latest answers (to see when an edge has moved to a pipeline).
#[derive(Debug, Default)]
pub(crate) struct ViewerControl {
    pub(crate) stop: AtomicBool,
    /// `X-Rivulet-Upstream` of the latest playlist, +1 (0: none yet).
    pub(crate) upstream: AtomicU64,
    /// Consecutive playlists answered by that upstream.
    pub(crate) streak: AtomicU64,
    pub(crate) parts: AtomicU64,
}

impl ViewerControl {
    /// The upstream that answered the last `streak` playlists in a row.
    pub(crate) fn current_upstream(&self) -> Option<(u32, u64)> {
        let u = self.upstream.load(Ordering::Relaxed);
        (u > 0).then(|| ((u - 1) as u32, self.streak.load(Ordering::Relaxed)))
    }
}

/// Watches `base` (`http://EDGE/live/NAME/RENDITION`) until `control.stop` is set.
/// Failures before the first playlist (the stream starting) are not recorded; `ready`
/// bounds that wait.
pub(crate) async fn watch(
    client: reqwest::Client,
    base: String,
    control: Arc<ViewerControl>,
    clock: Instant,
    ready: Duration,
) -> ViewerLog {
    let mut log = ViewerLog::default();
    let playlist_url = format!("{base}/index.m3u8");
    let at = || clock.elapsed();
    // The first playlist: the stream may still be starting.
    let first = loop {
        if let Ok(r) = client.get(&playlist_url).send().await
            && r.status().is_success()
            && let Ok(text) = r.text().await
            && let Some(p) = Playlist::parse(&text)
            && p.preload_hint.is_some()
        {
            break p;
        }
        if clock.elapsed() > ready || control.stop.load(Ordering::Relaxed) {
            log.failures.push(Failure {
                at: at(),
                what: format!("{playlist_url} never became playable"),
            });
            return log;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut target = first.preload_hint.unwrap_or_default();
    while !control.stop.load(Ordering::Relaxed) {
        let (msn, part) = target;
        let url = format!("{playlist_url}?_HLS_msn={msn}&_HLS_part={part}");
        let (text, upstream) = match get(&client, &url).await {
            Ok((body, upstream)) => (String::from_utf8_lossy(&body).into_owned(), upstream),
            Err(e) => {
                log.failures.push(Failure {
                    at: at(),
                    what: format!("playlist {msn}.{part}: {e}"),
                });
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(playlist) = Playlist::parse(&text) else {
            log.failures.push(Failure {
                at: at(),
                what: format!("playlist {msn}.{part} is not a media playlist: {text}"),
            });
            continue;
        };
        log.playlists.push(PlaylistSeen {
            at: at(),
            media_sequence: playlist.media_sequence,
            preload_hint: playlist.preload_hint,
            upstream,
        });
        note_upstream(&control, upstream);
        // The part asked for, or, past the end of its segment, the next segment's first.
        let wanted = if playlist.has_part(msn, part) {
            (msn, part)
        } else if playlist.segment_parts(msn) == Some(part) && playlist.has_part(msn + 1, 0) {
            (msn + 1, 0)
        } else {
            log.failures.push(Failure {
                at: at(),
                what: format!(
                    "the answer to a blocking reload for {msn}.{part} does not list it \
                     (media sequence {}, hint {:?})",
                    playlist.media_sequence, playlist.preload_hint
                ),
            });
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let part_url = format!("{base}/part-{}-{}.m4s", wanted.0, wanted.1);
        match get(&client, &part_url).await {
            Ok((body, upstream)) => match media_span(&body) {
                Ok(chunks) if !chunks.is_empty() => {
                    log.parts.push(PartSeen {
                        msn: wanted.0,
                        part: wanted.1,
                        start: chunks[0].0,
                        end: chunks[chunks.len() - 1].1,
                        chunks,
                        arrived: at(),
                        upstream,
                    });
                    control.parts.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => log.failures.push(Failure {
                    at: at(),
                    what: format!("part {}.{} has no video", wanted.0, wanted.1),
                }),
                Err(e) => log.failures.push(Failure {
                    at: at(),
                    what: format!("part {}.{}: {e}", wanted.0, wanted.1),
                }),
            },
            Err(e) => log.failures.push(Failure {
                at: at(),
                what: format!("part {}.{}: {e}", wanted.0, wanted.1),
            }),
        }
        target = playlist.next_after(wanted);
    }
    log
}

fn note_upstream(control: &ViewerControl, upstream: Option<u32>) {
    let tagged = upstream.map_or(0, |u| u64::from(u) + 1);
    if control.upstream.swap(tagged, Ordering::Relaxed) == tagged {
        control.streak.fetch_add(1, Ordering::Relaxed);
    } else {
        control.streak.store(1, Ordering::Relaxed);
    }
}

/// A whole 200 answer and its `X-Rivulet-Upstream`, or why not.
async fn get(client: &reqwest::Client, url: &str) -> Result<(Bytes, Option<u32>), String> {
    let r = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = r.status();
    let upstream = r
        .headers()
        .get("x-rivulet-upstream")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = r.bytes().await.map_err(|e| format!("body: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    Ok((body, upstream))
}

/// Each CMAF chunk's video (start, end) in 90 kHz ticks: `tfdt`, plus the sum of its
/// sample durations.
pub(crate) fn media_span(body: &[u8]) -> Result<Vec<(i64, i64)>, String> {
    let mut spans = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        // A chunk is a moof and the mdat after it.
        let moof = box_len(rest)?;
        let mdat = box_len(rest.get(moof..).ok_or("truncated chunk")?)?;
        let chunk = rest.get(..moof + mdat).ok_or("truncated chunk")?;
        let summary = media::cmaf::inspect_fragment(chunk).map_err(|e| e.to_string())?;
        if let Some(video) = summary
            .tracks
            .iter()
            .find(|t| t.track_id == media::cmaf::VIDEO_TRACK_ID)
        {
            let start = i64::try_from(video.base_media_decode_time).map_err(|e| e.to_string())?;
            let duration: i64 = video.durations.iter().map(|d| i64::from(*d)).sum();
            spans.push((start, start + duration));
        }
        rest = &rest[moof + mdat..];
    }
    Ok(spans)
}

fn box_len(bytes: &[u8]) -> Result<usize, String> {
    let size = bytes
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_be_bytes)
        .ok_or("truncated box header")?;
    let size = usize::try_from(size).map_err(|e| e.to_string())?;
    if size < 8 || size > bytes.len() {
        return Err(format!("box of {size} bytes in {} left", bytes.len()));
    }
    Ok(size)
}

/// What the viewer reads in a media playlist.
#[derive(Debug, Default)]
struct Playlist {
    media_sequence: u64,
    /// Listed parts, in order.
    parts: Vec<(u64, u32)>,
    /// Complete segments (listed with `EXTINF`).
    segments: Vec<u64>,
    preload_hint: Option<(u64, u32)>,
}

impl Playlist {
    fn parse(text: &str) -> Option<Self> {
        let mut p = Playlist::default();
        let mut has_sequence = false;
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
                p.media_sequence = n.trim().parse().ok()?;
                has_sequence = true;
            } else if let Some(attrs) = line.strip_prefix("#EXT-X-PART:") {
                p.parts.push(part_id(uri(attrs)?)?);
            } else if let Some(attrs) = line.strip_prefix("#EXT-X-PRELOAD-HINT:") {
                p.preload_hint = uri(attrs).and_then(part_id);
            } else if let Some(m) = line
                .strip_prefix("seg-")
                .and_then(|s| s.strip_suffix(".m4s"))
            {
                p.segments.push(m.parse().ok()?);
            }
        }
        has_sequence.then_some(p)
    }

    fn has_part(&self, msn: u64, part: u32) -> bool {
        self.parts.contains(&(msn, part))
    }

    /// How many parts a complete segment has (if it is complete and its parts listed).
    fn segment_parts(&self, msn: u64) -> Option<u32> {
        self.segments
            .contains(&msn)
            .then(|| self.parts.iter().filter(|(m, _)| *m == msn).count() as u32)
    }

    /// The part after `id`: listed, or the next in the same segment, or (the segment
    /// being complete) the first of the next.
    fn next_after(&self, id: (u64, u32)) -> (u64, u32) {
        if let Some(i) = self.parts.iter().position(|p| *p == id)
            && let Some(next) = self.parts.get(i + 1)
        {
            return *next;
        }
        if self.segments.contains(&id.0) {
            (id.0 + 1, 0)
        } else {
            (id.0, id.1 + 1)
        }
    }
}

fn uri(attrs: &str) -> Option<&str> {
    let start = attrs.find("URI=\"")? + 5;
    attrs[start..].split('"').next()
}

fn part_id(uri: &str) -> Option<(u64, u32)> {
    let (m, p) = uri
        .rsplit('/')
        .next()?
        .strip_prefix("part-")?
        .strip_suffix(".m4s")?
        .split_once('-')?;
    Some((m.parse().ok()?, p.parse().ok()?))
}

/// A stall: the wait for a part beyond its own duration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stall {
    /// The part that came late, and when.
    pub(crate) msn: u64,
    pub(crate) part: u32,
    pub(crate) at: Duration,
    pub(crate) ms: f64,
}

impl ViewerLog {
    /// For each part after the first: the time between its arrival and the previous
    /// part's, minus its media duration. A viewer playing in real time needs a part
    /// per part duration; this is how much longer it waited (negative: a part came
    /// early, as after a stall, when parts already produced come back to back).
    pub(crate) fn stalls(&self) -> Vec<Stall> {
        self.parts
            .windows(2)
            .map(|w| {
                let gap = w[1].arrived.as_secs_f64() - w[0].arrived.as_secs_f64();
                let duration = (w[1].end - w[1].start) as f64 / TIMESCALE as f64;
                Stall {
                    msn: w[1].msn,
                    part: w[1].part,
                    at: w[1].arrived,
                    ms: (gap - duration) * 1000.0,
                }
            })
            .collect()
    }

    /// The longest stall.
    pub(crate) fn worst_stall(&self) -> Option<Stall> {
        self.stalls()
            .into_iter()
            .max_by(|a, b| a.ms.total_cmp(&b.ms))
    }

    /// The most the viewer fell behind real time since it was furthest ahead (ms):
    /// the buffer a player needs to never stall. Its lateness at part i is the
    /// arrival minus the media end, relative to the first part.
    pub(crate) fn lag_growth_ms(&self) -> f64 {
        let Some(first) = self.parts.first() else {
            return 0.0;
        };
        let mut least = f64::MAX;
        let mut worst = 0f64;
        for p in &self.parts {
            let lag = p.arrived.as_secs_f64() - (p.end - first.end) as f64 / TIMESCALE as f64;
            least = least.min(lag);
            worst = worst.max(lag - least);
        }
        worst * 1000.0
    }

    /// Places where the media timeline does not continue: a chunk or part whose start
    /// is not the previous one's end within `tolerance` ticks.
    pub(crate) fn timeline_gaps(&self, tolerance: i64) -> Vec<String> {
        let mut gaps = Vec::new();
        let mut previous: Option<(u64, u32, i64)> = None;
        for p in &self.parts {
            for (i, (start, end)) in p.chunks.iter().enumerate() {
                if let Some((m, n, last_end)) = previous
                    && (start - last_end).abs() > tolerance
                {
                    gaps.push(format!(
                        "part {}.{} chunk {i} starts at {start}, {} ms from the end of \
                         what came before ({m}.{n})",
                        p.msn,
                        p.part,
                        (start - last_end) as f64 * 1000.0 / TIMESCALE as f64
                    ));
                }
                previous = Some((p.msn, p.part, *end));
            }
        }
        gaps
    }

    /// Media sequence numbers going back: parts not strictly in order, a preload hint
    /// before an earlier one, `EXT-X-MEDIA-SEQUENCE` decreasing.
    pub(crate) fn regressions(&self) -> Vec<String> {
        let mut found = Vec::new();
        for w in self.parts.windows(2) {
            if (w[1].msn, w[1].part) <= (w[0].msn, w[0].part) {
                found.push(format!(
                    "part {}.{} after {}.{}",
                    w[1].msn, w[1].part, w[0].msn, w[0].part
                ));
            }
        }
        for w in self.playlists.windows(2) {
            if w[1].media_sequence < w[0].media_sequence {
                found.push(format!(
                    "media sequence {} after {} at {:?}",
                    w[1].media_sequence, w[0].media_sequence, w[1].at
                ));
            }
            if w[1].preload_hint < w[0].preload_hint {
                found.push(format!(
                    "preload hint {:?} after {:?} at {:?}",
                    w[1].preload_hint, w[0].preload_hint, w[1].at
                ));
            }
        }
        found
    }

    /// When the upstream answering playlists changed: (when, from, to).
    pub(crate) fn switches(&self) -> Vec<(Duration, Option<u32>, Option<u32>)> {
        self.playlists
            .windows(2)
            .filter(|w| w[0].upstream != w[1].upstream)
            .map(|w| (w[1].at, w[0].upstream, w[1].upstream))
            .collect()
    }

    /// The worst stall among parts that arrived within `window` of `at`.
    pub(crate) fn worst_stall_near(&self, at: Duration, window: Duration) -> Option<Stall> {
        self.stalls()
            .into_iter()
            .filter(|s| s.at >= at && s.at <= at + window)
            .max_by(|a, b| a.ms.total_cmp(&b.ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_parts_and_what_comes_next() {
        let text = "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n\
            #EXT-X-PART:DURATION=0.33,URI=\"part-7-0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PART:DURATION=0.33,URI=\"part-7-1.m4s\"\n#EXTINF:0.66,\nseg-7.m4s\n\
            #EXT-X-PART:DURATION=0.33,URI=\"part-8-0.m4s\",INDEPENDENT=YES\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-8-1.m4s\"\n";
        let p = Playlist::parse(text).expect("a playlist");
        assert_eq!(p.media_sequence, 7);
        assert_eq!(p.preload_hint, Some((8, 1)));
        assert_eq!(p.segment_parts(7), Some(2));
        assert_eq!(p.segment_parts(8), None);
        assert_eq!(p.next_after((7, 1)), (8, 0));
        assert_eq!(p.next_after((8, 0)), (8, 1));
        assert!(Playlist::parse("#EXTM3U\n").is_none());
    }

    #[test]
    fn figures_from_a_record() {
        let part = |msn, part, start: i64, arrived_ms| PartSeen {
            msn,
            part,
            start,
            end: start + 30_000,
            chunks: vec![(start, start + 30_000)],
            arrived: Duration::from_millis(arrived_ms),
            upstream: None,
        };
        let log = ViewerLog {
            parts: vec![
                part(1, 0, 0, 1000),
                part(1, 1, 30_000, 1333),
                // 1 s late, and a 100 ms hole in the media.
                part(1, 2, 69_000, 2667),
                part(1, 3, 99_000, 2700),
            ],
            ..Default::default()
        };
        let worst = log.worst_stall().expect("stalls");
        assert_eq!((worst.msn, worst.part), (1, 2));
        assert!((worst.ms - 1000.7).abs() < 1.0, "{}", worst.ms);
        assert_eq!(log.timeline_gaps(900).len(), 1);
        // Fell 1.33 s behind on the clock, of which 0.1 s the media hole made up.
        assert!(
            (log.lag_growth_ms() - 900.3).abs() < 1.0,
            "{}",
            log.lag_growth_ms()
        );
        assert!(log.regressions().is_empty());
    }
}
