//! One test per rule of `docs/ab-pipelines.md` ("What the edge does while A catches
//! up", "Input health") and of the edge's settings, on the state machine alone: two
//! upstreams A (0) and B (1), a clock that only moves when a test moves it.

use super::*;

const A: usize = 0;
const B: usize = 1;

fn config() -> FailoverConfig {
    FailoverConfig {
        first_byte_timeout: Duration::from_secs(8),
        stall_limit: Duration::from_millis(1002),
        body_stall_timeout: Duration::from_secs(2),
        max_playlist_bytes: 1 << 20,
        max_media_bytes: 64 << 20,
    }
}

fn two() -> Upstreams {
    Upstreams::new(&["http://a".to_owned(), "http://b".to_owned()])
}

fn key(path: &str, query: Option<&str>) -> CacheKey {
    CacheKey::new(path, query).expect("a valid key")
}

fn playlist() -> CacheKey {
    key("/live/cam/720p/index.m3u8", None)
}

fn blocking(msn: u64, part: u32) -> CacheKey {
    key(
        "/live/cam/720p/index.m3u8",
        Some(&format!("_HLS_msn={msn}&_HLS_part={part}")),
    )
}

fn part() -> CacheKey {
    key("/live/cam/720p/part-41-1.m4s", None)
}

fn segment() -> CacheKey {
    key("/live/cam/720p/seg-40.m4s", None)
}

/// A media playlist whose window is segments 40 and 41 (41 open, parts 41.0 and 41.1).
const WINDOW_40: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:40\n\
    #EXT-X-MAP:URI=\"init-0.mp4\"\n\
    #EXT-X-PART:DURATION=0.33333,URI=\"part-40-0.m4s\",INDEPENDENT=YES\n\
    #EXTINF:2.00000,\nseg-40.m4s\n\
    #EXT-X-PART:DURATION=0.33333,URI=\"part-41-0.m4s\",INDEPENDENT=YES\n\
    #EXT-X-PART:DURATION=0.33333,URI=\"part-41-1.m4s\"\n\
    #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-41-2.m4s\"\n";

/// What a (re)started origin serves for its first seconds: parts, no whole segment.
const PARTS_ONLY: &str = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:41\n\
    #EXT-X-MAP:URI=\"init-0.mp4\"\n\
    #EXT-X-PART:DURATION=0.33333,URI=\"part-41-0.m4s\",INDEPENDENT=YES\n\
    #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-41-1.m4s\"\n";

/// Asks for the next attempt, checks which upstream it goes to, and returns how long
/// it may wait for the first byte.
fn next_is(f: &mut Failover<'_, &'static str>, now: Instant, upstream: usize) -> Duration {
    let attempt = f.next(now).expect("an upstream to try");
    assert_eq!(attempt.upstream, upstream, "asked the wrong upstream");
    attempt.first_byte
}

/// The current attempt answers `status` with a playlist body (read whole).
fn answer(
    f: &mut Failover<'_, &'static str>,
    now: Instant,
    status: u16,
    input: Option<&str>,
    body: &'static str,
) -> Verdict<&'static str> {
    let plan = f.handle_head(now, status);
    assert!(matches!(plan, BodyPlan::Whole { .. }), "{plan:?}");
    f.handle_answer(now, status, input.map(str::as_bytes), body.as_bytes(), body)
}

#[test]
fn the_preferred_upstream_is_asked_first() {
    let upstreams = two();
    let key = playlist();
    let mut f = Failover::new(&upstreams, &key, config());
    let now = Instant::now();
    let attempt = next_is(&mut f, now, A);
    assert_eq!(attempt, config().first_byte_timeout);
    assert_eq!(
        answer(&mut f, now, 200, Some("ok"), WINDOW_40),
        Verdict::Serve(WINDOW_40)
    );
    assert!(!upstreams.is_down(A) && !upstreams.is_down(B));
}

#[test]
fn a_connect_error_marks_the_upstream_down_and_the_request_moves_on_at_once() {
    let upstreams = two();
    let key = segment();
    let now = Instant::now();
    let mut f = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
    f.handle_error(now, AttemptError::Transport("connection refused".into()));
    assert!(upstreams.is_down(A));
    next_is(&mut f, now, B);
    // The next request does not even try A.
    let mut g: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    next_is(&mut g, now, B);
}

#[test]
fn a_first_byte_timeout_on_an_object_marks_the_upstream_down() {
    let upstreams = two();
    let key = segment();
    let now = Instant::now();
    let mut f: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
    f.handle_error(now, AttemptError::NoAnswerInTime);
    assert!(upstreams.is_down(A));
    next_is(&mut f, now, B);
    f.handle_error(now, AttemptError::NoAnswerInTime);
    assert_eq!(f.next(now), None);
    assert_eq!(
        f.finish(),
        Err(UpstreamError::NoAnswer {
            upstream: "http://b".into(),
            wait: config().first_byte_timeout
        })
    );
}

#[test]
fn a_down_upstream_is_used_again_only_after_three_good_probes_in_a_row() {
    let upstreams = two();
    let key = playlist();
    let now = Instant::now();
    upstreams.mark_down(A);
    for _ in 0..2 {
        upstreams.probed(A, true);
    }
    let mut f: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, B);
    upstreams.probed(A, true);
    let mut f: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
}

#[test]
fn a_blocking_reload_held_beyond_the_stall_limit_moves_the_stream_for_5_s() {
    let upstreams = two();
    let key = blocking(41, 2);
    let now = Instant::now();
    let mut f: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    let attempt = next_is(&mut f, now, A);
    assert_eq!(attempt, config().stall_limit);
    f.handle_error(now, AttemptError::NoAnswerInTime);
    assert!(!upstreams.is_down(A), "stalled for this stream, not down");
    next_is(&mut f, now, B);
    // Other requests for the stream avoid A for 5 s; other streams do not.
    let mut g: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    next_is(&mut g, now + Duration::from_millis(4_900), B);
    let mut g: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    next_is(&mut g, now + Duration::from_secs(5), A);
    let other = key_of_other_stream();
    let mut h: Failover<'_, &'static str> = Failover::new(&upstreams, &other, config());
    next_is(&mut h, now, A);
}

fn key_of_other_stream() -> CacheKey {
    key(
        "/live/other/720p/index.m3u8",
        Some("_HLS_msn=41&_HLS_part=2"),
    )
}

#[test]
fn a_part_held_beyond_the_stall_limit_moves_the_stream_too() {
    let upstreams = two();
    let key = part();
    let now = Instant::now();
    let mut f: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    assert_eq!(next_is(&mut f, now, A), config().stall_limit);
    f.handle_error(now, AttemptError::NoAnswerInTime);
    assert!(!upstreams.is_down(A));
    next_is(&mut f, now, B);
}

#[test]
fn the_last_upstream_gets_the_full_hold_time_and_the_body_stall_timeout() {
    let upstreams = two();
    let key = part();
    let now = Instant::now();
    let mut f: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    assert_eq!(next_is(&mut f, now, A), config().stall_limit);
    let BodyPlan::Stream { idle, .. } = f.handle_head(now, 200) else {
        panic!("a part is streamed");
    };
    assert_eq!(idle, config().stall_limit, "not the last: the stall limit");
    f.handle_stream_error(now, 0, BodyError::Idle(idle));
    // Nowhere else to go: B may hold the request as long as a part can take, and its
    // body gets the body stall timeout.
    assert_eq!(next_is(&mut f, now, B), config().first_byte_timeout);
    let BodyPlan::Stream { idle, .. } = f.handle_head(now, 200) else {
        panic!("a part is streamed");
    };
    assert_eq!(idle, config().body_stall_timeout);
}

#[test]
fn a_playlist_that_skips_the_asked_part_goes_to_the_other_upstream_and_avoids_this_one_for_5_s() {
    let upstreams = two();
    // A restarted: its window starts at 40, the viewer asks for 39.5.
    let key = blocking(39, 5);
    let now = Instant::now();
    let mut f = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
    assert_eq!(
        answer(&mut f, now, 200, Some("ok"), WINDOW_40),
        Verdict::TryNext
    );
    next_is(&mut f, now, B);
    let b_playlist = "from B";
    assert_eq!(
        f.handle_answer(now, 200, Some(b"ok"), WINDOW_40.as_bytes(), b_playlist),
        Verdict::Serve(b_playlist),
        "the last candidate is served as it is"
    );
    let mut g: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    next_is(&mut g, now + Duration::from_secs(4), B);
    // A playlist that lists the part is served from A.
    let key = blocking(41, 1);
    let mut h = Failover::new(&upstreams, &key, config());
    next_is(&mut h, now + Duration::from_secs(5), A);
    assert_eq!(
        answer(&mut h, now, 200, Some("ok"), WINDOW_40),
        Verdict::Serve(WINDOW_40)
    );
}

#[test]
fn a_playlist_without_a_complete_segment_goes_to_the_other_upstream_this_time_only() {
    let upstreams = two();
    let key = playlist();
    let now = Instant::now();
    let mut f = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
    assert_eq!(
        answer(&mut f, now, 200, Some("ok"), PARTS_ONLY),
        Verdict::TryNext
    );
    next_is(&mut f, now, B);
    assert_eq!(
        answer(&mut f, now, 200, Some("ok"), WINDOW_40),
        Verdict::Serve(WINDOW_40)
    );
    // No cool-down: at a stream's start every pipeline looks like that.
    let mut g = Failover::new(&upstreams, &key, config());
    next_is(&mut g, now, A);
    // And when B cannot answer at all, A's playlist is better than nothing.
    assert_eq!(
        answer(&mut g, now, 200, Some("ok"), PARTS_ONLY),
        Verdict::TryNext
    );
    next_is(&mut g, now, B);
    g.handle_error(now, AttemptError::Transport("connection refused".into()));
    assert_eq!(g.next(now), None);
    assert_eq!(g.finish(), Ok(PARTS_ONLY));
}

#[test]
fn a_non_2xx_answer_fails_over_and_only_a_5xx_marks_the_upstream_down() {
    let upstreams = two();
    let key = segment();
    let now = Instant::now();
    // A part or an object A lacks is a 404, and the edge asks B.
    let mut f = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
    assert_eq!(answer(&mut f, now, 404, None, "404 A"), Verdict::TryNext);
    assert!(!upstreams.is_down(A));
    next_is(&mut f, now, B);
    assert!(matches!(f.handle_head(now, 200), BodyPlan::Stream { .. }));
    // A 5xx is a broken upstream.
    let mut g = Failover::new(&upstreams, &key, config());
    next_is(&mut g, now, A);
    assert_eq!(answer(&mut g, now, 503, None, "503 A"), Verdict::TryNext);
    assert!(upstreams.is_down(A));
}

#[test]
fn when_every_upstream_answers_an_error_the_last_one_is_served() {
    let upstreams = two();
    let key = segment();
    let now = Instant::now();
    let mut f = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
    assert_eq!(answer(&mut f, now, 404, None, "404 A"), Verdict::TryNext);
    next_is(&mut f, now, B);
    assert_eq!(
        answer(&mut f, now, 404, None, "404 B"),
        Verdict::Serve("404 B")
    );
}

#[test]
fn a_playlist_whose_input_is_unwell_prefers_the_other_pipeline_for_5_s() {
    let upstreams = two();
    let key = playlist();
    let now = Instant::now();
    let mut f = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
    assert_eq!(
        answer(&mut f, now, 200, Some("black"), "black A"),
        Verdict::TryNext
    );
    next_is(&mut f, now, B);
    assert_eq!(
        answer(&mut f, now, 200, Some("ok"), WINDOW_40),
        Verdict::Serve(WINDOW_40)
    );
    let mut g: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    next_is(&mut g, now + Duration::from_secs(4), B);
    let mut g: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    next_is(&mut g, now + Duration::from_secs(5), A);
}

#[test]
fn if_every_upstream_reports_an_unwell_input_the_answer_is_served_anyway() {
    let upstreams = two();
    let key = playlist();
    let now = Instant::now();
    // Both pipelines see the same broken input: viewers keep what there is.
    let mut f = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
    assert_eq!(
        answer(&mut f, now, 200, Some("silent"), "silent A"),
        Verdict::TryNext
    );
    next_is(&mut f, now, B);
    assert_eq!(
        answer(&mut f, now, 200, Some("silent"), "silent B"),
        Verdict::Serve("silent B")
    );
    // B has no playlist at all: A's is served, not B's error.
    let upstreams = two();
    let mut g = Failover::new(&upstreams, &key, config());
    next_is(&mut g, now, A);
    assert_eq!(
        answer(&mut g, now, 200, Some("stalled"), "stalled A"),
        Verdict::TryNext
    );
    next_is(&mut g, now, B);
    assert_eq!(answer(&mut g, now, 404, None, "404 B"), Verdict::TryNext);
    assert_eq!(g.next(now), None);
    assert_eq!(g.finish(), Ok("stalled A"));
}

#[test]
fn a_media_body_broken_off_continues_from_the_next_upstream_after_the_boxes_sent() {
    let upstreams = two();
    let key = part();
    let now = Instant::now();
    let mut f: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
    assert_eq!(
        f.handle_head(now, 200),
        BodyPlan::Stream {
            idle: config().stall_limit,
            max_bytes: config().max_media_bytes,
            skip_boxes: 0,
            send_head: true,
        }
    );
    f.handle_stream_error(now, 3, BodyError::Transport("connection reset".into()));
    assert!(upstreams.is_down(A));
    next_is(&mut f, now, B);
    assert_eq!(
        f.handle_head(now, 200),
        BodyPlan::Stream {
            idle: config().body_stall_timeout,
            max_bytes: config().max_media_bytes,
            skip_boxes: 3,
            send_head: false,
        },
        "viewers keep the first head and the three boxes they have"
    );
}

#[test]
fn a_broken_off_object_is_not_finished_with_another_answer() {
    let upstreams = two();
    let key = part();
    let now = Instant::now();
    let mut f = Failover::new(&upstreams, &key, config());
    next_is(&mut f, now, A);
    let _ = f.handle_head(now, 200);
    f.handle_stream_error(now, 2, BodyError::Idle(config().stall_limit));
    next_is(&mut f, now, B);
    assert_eq!(answer(&mut f, now, 404, None, "404 B"), Verdict::TryNext);
    assert_eq!(f.next(now), None);
    assert_eq!(
        f.finish(),
        Err(UpstreamError::CannotContinue {
            upstream: "http://b".into(),
            status: 404
        })
    );
}

#[test]
fn bodies_are_bounded_per_kind() {
    let upstreams = two();
    let now = Instant::now();
    let seg = segment();
    let mut f: Failover<'_, &'static str> = Failover::new(&upstreams, &seg, config());
    next_is(&mut f, now, A);
    let BodyPlan::Whole {
        max_bytes,
        deadline,
        ..
    } = f.handle_head(now, 404)
    else {
        panic!("an error answer is read whole");
    };
    assert_eq!(max_bytes, config().max_playlist_bytes, "an error is small");
    assert_eq!(deadline, now + config().first_byte_timeout);
    let list = playlist();
    let mut g: Failover<'_, &'static str> = Failover::new(&upstreams, &list, config());
    next_is(&mut g, now, A);
    assert!(matches!(
        g.handle_head(now, 200),
        BodyPlan::Whole { max_bytes, .. } if max_bytes == config().max_playlist_bytes
    ));
}

#[test]
fn without_upstreams_nothing_is_tried_and_the_error_says_so() {
    let upstreams = Upstreams::new(&[]);
    let key = playlist();
    let mut f: Failover<'_, &'static str> = Failover::new(&upstreams, &key, config());
    assert_eq!(f.next(Instant::now()), None);
    assert_eq!(f.finish(), Err(UpstreamError::NoUpstream));
}
