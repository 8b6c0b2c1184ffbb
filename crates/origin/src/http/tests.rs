use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use http_body_util::BodyExt;
use media::{
    AacConfig, AvcConfig, CodecConfig, Frame, MediaTime, Track, TrackKind, Tracks, VIDEO_TIMESCALE,
};
use tower::ServiceExt;

use crate::live::{LiveStream, LiveStreams, OriginConfig};

const SPS: &[u8] = &[
    0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10,
    0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

/// The geometry these tests were written for: 334 ms parts, six of 10 frames at 30 fps
/// in a 2 s segment (the default is 201 ms).
fn config() -> OriginConfig {
    OriginConfig {
        packager: package::PackagerConfig {
            part_target_ms: 334,
            ..package::PackagerConfig::default()
        },
        ..OriginConfig::default()
    }
}

fn live() -> (LiveStreams, Arc<LiveStream>) {
    let streams = LiveStreams::new(config());
    let stream = streams.get_or_create("cam");
    stream.handle_session_start();
    stream.handle_announce(Arc::from([hub::AnnouncedRendition {
        name: Arc::from("source"),
        declared: None,
    }]));
    stream.handle_tracks("source", source_tracks(), SystemTime::now());
    (streams, stream)
}

/// H.264 (from SPS/PPS above) and AAC.
fn source_tracks() -> Arc<Tracks> {
    let avc =
        AvcConfig::from_parameter_sets(&[Bytes::from_static(SPS)], &[Bytes::from_static(PPS)])
            .unwrap();
    Arc::new(Tracks {
        video: Some(Track {
            kind: TrackKind::Video,
            timescale: VIDEO_TIMESCALE,
            codec: CodecConfig::Avc(avc),
        }),
        audio: Some(Track {
            kind: TrackKind::Audio,
            timescale: NonZeroU32::new(48_000).unwrap(),
            codec: CodecConfig::Aac(AacConfig::build(2, 48_000, 2)),
        }),
    })
}

/// Pushes video frames `from..to` (30 fps, keyframe every 60).
fn push(stream: &LiveStream, from: i64, to: i64) {
    for n in from..to {
        let t = MediaTime::new(n * 3000, VIDEO_TIMESCALE);
        let frame = Frame {
            kind: TrackKind::Video,
            dts: t,
            pts: t,
            keyframe: n % 60 == 0,
            data: Bytes::from(vec![0x41; 100]),
        };
        stream.handle_frame("source", frame, SystemTime::now(), Instant::now());
    }
}

async fn get(streams: &LiveStreams, uri: &str) -> (StatusCode, axum::http::HeaderMap, Bytes) {
    let response = super::router(streams.clone())
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test]
async fn statuses_and_cache_headers() {
    let (streams, stream) = live();
    push(&stream, 0, 130);
    let (status, headers, body) = get(&streams, "/live/nope/master.m3u8").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(String::from_utf8_lossy(&body).contains("offline"));

    let (status, headers, body) = get(&streams, "/live/cam/master.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/vnd.apple.mpegurl"
    );
    assert!(String::from_utf8_lossy(&body).contains("source/index.m3u8"));

    let (status, headers, _) = get(&streams, "/live/cam/source/index.m3u8").await;
    assert_eq!(
        (status, &headers[header::CACHE_CONTROL]),
        (StatusCode::OK, &"no-cache".parse().unwrap())
    );
    assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");

    for bad in [
        "_HLS_part=1",
        "_HLS_msn=x",
        "_HLS_msn=1&_HLS_part=-1",
        "_HLS_msn=99",
    ] {
        let (status, headers, _) =
            get(&streams, &format!("/live/cam/source/index.m3u8?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    }
    assert_eq!(
        get(&streams, "/live/cam/720p/index.m3u8").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&streams, "/live/cam/source/../../etc/passwd").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&streams, "/live/cam/source/seg-x.m4s").await.0,
        StatusCode::NOT_FOUND
    );

    let (status, headers, body) = get(&streams, "/live/cam/source/seg-0.m4s").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=300, immutable"
    );
    assert_eq!(
        headers[header::CONTENT_LENGTH],
        body.len().to_string().as_str()
    );
    assert_eq!(&body[4..8], b"moof");
    let (_, _, playlist) = get(&streams, "/live/cam/source/index.m3u8").await;
    let playlist = String::from_utf8_lossy(&playlist).into_owned();
    let map = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap();
    let (status, _, init) = get(&streams, &format!("/live/cam/source/{map}")).await;
    assert_eq!((status, &init[4..8]), (StatusCode::OK, &b"ftyp"[..]));
}

#[tokio::test]
async fn a_blocking_reload_is_answered_once_the_part_exists() {
    let (streams, stream) = live();
    push(&stream, 0, 15);
    // Part 0-1 completes with frame 19; ask for it before it exists.
    let request = tokio::spawn({
        let streams = streams.clone();
        async move {
            get(
                &streams,
                "/live/cam/source/index.m3u8?_HLS_msn=0&_HLS_part=1",
            )
            .await
        }
    });
    tokio::task::yield_now().await;
    push(&stream, 15, 25);
    let (status, headers, body) = request.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CACHE_CONTROL],
        "public, max-age=0, s-maxage=1"
    );
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("URI=\"part-0-1.m4s\""), "{text}");
}

#[tokio::test]
async fn a_blocking_reload_for_a_stream_without_media_is_refused_at_once() {
    // Live, tracks known, no frame yet: a restarted origin of an A/B pair.
    let (streams, stream) = live();
    // (Held, it would end in 503 after three target durations.)
    let (status, headers, _) = get(
        &streams,
        "/live/cam/source/index.m3u8?_HLS_msn=40&_HLS_part=2",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    // A plain request still waits for the first part.
    let plain = tokio::spawn({
        let streams = streams.clone();
        async move { get(&streams, "/live/cam/source/index.m3u8").await }
    });
    tokio::task::yield_now().await;
    push(&stream, 0, 12);
    assert_eq!(plain.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn the_hinted_part_is_streamed_while_it_grows() {
    let (streams, stream) = live();
    push(&stream, 0, 12);
    // Part 0-1 has frames 10 and 11 so far: it is growing.
    let response = super::router(streams.clone())
        .oneshot(
            Request::get("/live/cam/source/part-0-1.m4s")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get(header::CONTENT_LENGTH).is_none());
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[4..8], b"moof");
    let rest = tokio::spawn(async move { body.collect().await.unwrap().to_bytes().len() });
    push(&stream, 12, 25);
    assert!(
        rest.await.unwrap() > 0,
        "the rest of the part arrived as it was produced"
    );
    let complete = get(&streams, "/live/cam/source/part-0-1.m4s").await;
    assert_eq!(complete.0, StatusCode::OK);
    assert!(complete.1.get(header::CONTENT_LENGTH).is_some());
}

#[tokio::test]
async fn the_title_is_session_data_in_the_multivariant_playlist() {
    let (streams, stream) = live();
    push(&stream, 0, 130);
    let (_, _, body) = get(&streams, "/live/cam/master.m3u8").await;
    assert!(!String::from_utf8_lossy(&body).contains("EXT-X-SESSION-DATA"));

    streams.set_title("cam", Some("Say \"hi\""));
    let (_, _, body) = get(&streams, "/live/cam/master.m3u8").await;
    assert!(
        String::from_utf8_lossy(&body)
            .contains("#EXT-X-SESSION-DATA:DATA-ID=\"com.rivulet.title\",VALUE=\"Say 'hi'\"\n"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    streams.set_title("cam", None);
    let (_, _, body) = get(&streams, "/live/cam/master.m3u8").await;
    assert!(!String::from_utf8_lossy(&body).contains("EXT-X-SESSION-DATA"));
}

#[tokio::test]
async fn playlists_and_the_health_endpoint_report_the_input() {
    let (streams, stream) = live();
    push(&stream, 0, 15);
    let (status, headers, _) = get(&streams, "/live/cam/source/index.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[super::INPUT_HEADER], "ok");
    let (status, headers, body) = get(&streams, "/live/cam/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["input"], "ok");
    assert_eq!(json["phase"], "live");
    // The publisher leaves: the playlist still answers, and says the input is lost.
    stream.handle_publisher_gone();
    let (status, headers, _) = get(&streams, "/live/cam/master.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[super::INPUT_HEADER], "lost");
    let (status, _, body) = get(&streams, "/live/cam/health").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (&json["input"], &json["reason"]),
        (&"lost".into(), &"no publisher".into())
    );
    assert_eq!(
        get(&streams, "/live/nope/health").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_multivariant_playlist_waits_for_every_announced_rendition() {
    let (streams, stream) = live();
    let announced = |name: &str, declared: Option<hub::DeclaredRate>| hub::AnnouncedRendition {
        name: Arc::from(name),
        declared,
    };
    stream.handle_announce(Arc::from([
        announced("source", None),
        announced(
            "360p",
            Some(hub::DeclaredRate {
                peak: 1_000_000,
                average: 800_000,
            }),
        ),
    ]));
    push(&stream, 0, 30);
    // The source has media, the 360p rung not yet: no playlist with half the ladder.
    assert!(stream.variants().is_none());

    stream.handle_tracks("360p", source_tracks(), SystemTime::now());
    for n in 0..30 {
        let t = MediaTime::new(n * 3000, VIDEO_TIMESCALE);
        let frame = Frame {
            kind: TrackKind::Video,
            dts: t,
            pts: t,
            keyframe: n % 60 == 0,
            data: Bytes::from(vec![0x41; 100]),
        };
        stream.handle_frame("360p", frame, SystemTime::now(), Instant::now());
    }
    let variants = stream.variants().expect("whole now");
    let names: Vec<&str> = variants.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["source", "360p"]);
    // The rung at its configured rate; the passthrough at what was measured.
    assert_eq!(
        (variants[1].1.bandwidth, variants[1].1.average_bandwidth),
        (1_000_000, 800_000)
    );
    let measured = variants[0].1.bandwidth;
    assert!(measured > 0);
    let (status, _, body) = get(&streams, "/live/cam/master.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("BANDWIDTH=1000000,AVERAGE-BANDWIDTH=800000"));

    // A new session waits for its own announcement.
    stream.handle_publisher_gone();
    stream.handle_session_start();
    assert!(stream.variants().is_none());
}

#[tokio::test]
async fn held_requests_are_bounded_per_client_and_per_stream() {
    let bounded = LiveStreams::new(OriginConfig {
        held: httpd::HeldLimits {
            per_stream: 3,
            per_client: 2,
        },
        ..config()
    });
    let cam = bounded.get_or_create("cam");
    cam.handle_session_start();
    let avc =
        AvcConfig::from_parameter_sets(&[Bytes::from_static(SPS)], &[Bytes::from_static(PPS)])
            .unwrap();
    cam.handle_tracks(
        "source",
        Arc::new(Tracks {
            video: Some(Track {
                kind: TrackKind::Video,
                timescale: VIDEO_TIMESCALE,
                codec: CodecConfig::Avc(avc),
            }),
            audio: None,
        }),
        SystemTime::now(),
    );
    push(&cam, 0, 15);
    let router = super::router(bounded);
    let ask = |client: [u8; 4]| {
        let router = router.clone();
        async move {
            let mut request = Request::get("/live/cam/source/index.m3u8?_HLS_msn=0&_HLS_part=1")
                .body(Body::empty())
                .unwrap();
            request.extensions_mut().insert(axum::extract::ConnectInfo(
                std::net::SocketAddr::from((client, 40000)),
            ));
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let settle = || async {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    };
    let a1 = tokio::spawn(ask([10, 0, 0, 1]));
    let a2 = tokio::spawn(ask([10, 0, 0, 1]));
    settle().await;
    let (status, reason) = ask([10, 0, 0, 1]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{reason}");
    assert!(reason.contains("too many of your requests"), "{reason}");
    let b1 = tokio::spawn(ask([10, 0, 0, 2]));
    settle().await;
    let (status, reason) = ask([10, 0, 0, 3]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{reason}");
    assert!(
        reason.contains("too many requests are waiting on this stream"),
        "{reason}"
    );
    // The held ones are answered when the part exists.
    push(&cam, 15, 25);
    for held in [a1, a2, b1] {
        let (status, text) = held.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{text}");
        assert!(text.contains("part-0-1.m4s"), "{text}");
    }
    // And their places are free again.
    let (status, _) = ask([10, 0, 0, 1]).await;
    assert_eq!(status, StatusCode::OK);
}

/// Pushes video frames `from..to` of a 30 fps stream with a keyframe every `gop`.
fn push_gop(stream: &LiveStream, from: i64, to: i64, gop: i64) {
    for n in from..to {
        let t = MediaTime::new(n * 3000, VIDEO_TIMESCALE);
        let frame = Frame {
            kind: TrackKind::Video,
            dts: t,
            pts: t,
            keyframe: n % gop == 0,
            data: Bytes::from(vec![0x41; 100]),
        };
        stream.handle_frame("source", frame, SystemTime::now(), Instant::now());
    }
}

#[tokio::test]
async fn a_hinted_part_that_lands_in_a_new_segment_is_answered_with_it() {
    let (streams, stream) = live();
    // Frame 49 completes part 0-4; the playlist hints part 0-5.
    push(&stream, 0, 50);
    let (_, _, body) = get(&streams, "/live/cam/source/index.m3u8").await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(
        text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part-0-5.m4s\""),
        "{text}"
    );
    let hinted = tokio::spawn({
        let streams = streams.clone();
        async move { get(&streams, "/live/cam/source/part-0-5.m4s").await }
    });
    tokio::task::yield_now().await;
    // The publisher leaves and comes back: segment 0 ends after five parts, and the
    // next part made is segment 1's first.
    stream.handle_publisher_gone();
    stream.handle_session_start();
    // Between the sessions, the ended segment's next number still waits for the part.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!hinted.is_finished(), "answered before the part existed");
    push(&stream, 0, 12);
    let (status, _, bytes) = hinted.await.unwrap();
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    let (status, _, first) = get(&streams, "/live/cam/source/part-1-0.m4s").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, first, "the hinted name carries the part made next");
    // Further numbers of the ended segment never exist.
    assert_eq!(
        get(&streams, "/live/cam/source/part-0-6.m4s").await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_part_that_cannot_exist_is_refused_at_once_with_a_reason() {
    let (streams, stream) = live();
    push(&stream, 0, 130);
    let started = std::time::Instant::now();
    for query in [
        // Segment 0 ended with 6 parts.
        "_HLS_msn=0&_HLS_part=7",
        // Far beyond the Advance Part Limit of the open segment and the next one.
        "_HLS_msn=2&_HLS_part=40",
        "_HLS_msn=3&_HLS_part=40",
    ] {
        let (status, headers, body) =
            get(&streams, &format!("/live/cam/source/index.m3u8?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert!(
            String::from_utf8_lossy(&body).contains("_HLS_part"),
            "{query}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // Not held (a held request would take seconds).
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // The part just past a complete segment is the next segment's first: answered.
    let (status, _, _) = get(
        &streams,
        "/live/cam/source/index.m3u8?_HLS_msn=0&_HLS_part=6",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_blocking_reload_waits_three_of_the_playlists_target_durations() {
    let (streams, stream) = live();
    // 8 s keyframe interval with the default 2 s segment target: TARGETDURATION 8.
    push_gop(&stream, 0, 3 * 240 + 10, 240);
    let (_, _, body) = get(&streams, "/live/cam/source/index.m3u8").await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(text.contains("#EXT-X-TARGETDURATION:8\n"), "{text}");
    // Segment 3 completes at frame 960; a legal request for it is held longer than
    // three configured segment targets (6 s).
    let request = tokio::spawn({
        let streams = streams.clone();
        async move { get(&streams, "/live/cam/source/index.m3u8?_HLS_msn=3").await }
    });
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    assert!(!request.is_finished(), "given up before 3 x TARGETDURATION");
    push_gop(&stream, 3 * 240 + 10, 4 * 240 + 1, 240);
    let (status, _, body) = request.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("seg-3.m4s"));
}

/// The path of the init segment the media playlist of `cam/source` names (its name is
/// a checksum of its bytes).
async fn init_path(streams: &LiveStreams) -> String {
    let playlist = get(streams, "/live/cam/source/index.m3u8").await.2;
    let playlist = String::from_utf8_lossy(&playlist).into_owned();
    let map = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI=\""))
        .and_then(|l| l.split('"').next())
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    format!("/live/cam/source/{map}")
}

/// What a shared cache in front (Varnish, nginx, a CDN) needs with no special
/// knowledge: every kind of answer says how long it may be kept, and none varies by
/// the request's `Origin` (CORS answers `*`), so one copy serves every embedding site.
#[tokio::test]
async fn every_answer_tells_a_shared_cache_how_to_keep_it_and_varies_by_nothing() {
    let (streams, stream) = live();
    push(&stream, 0, 130);
    let init = init_path(&streams).await;
    let cases = [
        ("/live/cam/master.m3u8", "no-cache"),
        ("/live/cam/source/index.m3u8", "no-cache"),
        (
            "/live/cam/source/index.m3u8?_HLS_msn=1&_HLS_part=0",
            "public, max-age=0, s-maxage=1",
        ),
        (init.as_str(), "public, max-age=300, immutable"),
        (
            "/live/cam/source/seg-0.m4s",
            "public, max-age=300, immutable",
        ),
        (
            "/live/cam/source/part-1-0.m4s",
            "public, max-age=300, immutable",
        ),
        ("/live/cam/source/seg-999.m4s", "no-store"),
        ("/live/nope/master.m3u8", "no-store"),
    ];
    for (uri, cache) in cases {
        for origin in [None, Some("https://a.example"), Some("https://b.example")] {
            let mut request = Request::get(uri);
            if let Some(o) = origin {
                request = request.header(header::ORIGIN, o);
            }
            let response = super::router(streams.clone())
                .oneshot(request.body(Body::empty()).unwrap())
                .await
                .unwrap();
            let headers = response.headers();
            assert_eq!(headers[header::CACHE_CONTROL], cache, "{uri}");
            assert!(
                headers.get(header::VARY).is_none(),
                "{uri} varies by {:?}",
                headers.get(header::VARY)
            );
            if origin.is_some() {
                assert_eq!(headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*", "{uri}");
            }
        }
    }
}

#[tokio::test]
async fn private_streams_need_a_token_on_every_object_and_pass_it_on() {
    use access::playback::{Grant, PlaybackKeys};
    let keys = PlaybackKeys::parse(&["k1=0123456789abcdef-secret"]).unwrap();
    let streams = LiveStreams::new(OriginConfig {
        playback_keys: keys.clone(),
        ..config()
    });
    let stream = streams.get_or_create("cam");
    stream.handle_session_start();
    stream.handle_announce(Arc::from([hub::AnnouncedRendition {
        name: Arc::from("source"),
        declared: None,
    }]));
    stream.handle_tracks("source", source_tracks(), SystemTime::now());
    push(&stream, 0, 130);
    let public_playlist = get(&streams, "/live/cam/source/index.m3u8").await.2;
    let init = init_path(&streams).await;

    streams.set_private("cam", true);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |stream: &str, expires: u64| {
        keys.sign(&Grant {
            stream: stream.into(),
            expires,
            ip: None,
            session: None,
        })
        .unwrap()
    };
    let good = token("cam", now + 60);
    let objects = [
        "/live/cam/master.m3u8",
        "/live/cam/source/index.m3u8",
        init.as_str(),
        "/live/cam/source/seg-0.m4s",
        "/live/cam/source/part-1-0.m4s",
    ];
    for object in objects {
        let (status, headers, body) = get(&streams, object).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{object}");
        assert_eq!(headers["x-rivulet-access"], "private");
        assert!(
            String::from_utf8_lossy(&body).contains("?token="),
            "{object}"
        );
        for (bad, want) in [
            (token("cam", now - 1), StatusCode::FORBIDDEN),
            (token("other", now + 60), StatusCode::FORBIDDEN),
            (format!("{good}x"), StatusCode::UNAUTHORIZED),
        ] {
            let (status, _, _) = get(&streams, &format!("{object}?token={bad}")).await;
            assert_eq!(status, want, "{object} {bad}");
        }
        let (status, headers, _) = get(&streams, &format!("{object}?token={good}")).await;
        assert_eq!(status, StatusCode::OK, "{object}");
        assert_eq!(headers["x-rivulet-access"], "private");
    }
    let (_, _, body) = get(
        &streams,
        &format!("/live/cam/source/index.m3u8?token={good}"),
    )
    .await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    for line in text
        .lines()
        .filter(|l| l.contains(".m4s") || l.contains(".mp4"))
    {
        assert!(line.contains(&format!("?token={good}")), "{line}");
    }
    // Back to public: byte for byte what it was.
    streams.set_private("cam", false);
    let (status, headers, body) = get(&streams, "/live/cam/source/index.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("x-rivulet-access").is_none());
    assert_eq!(body, public_playlist);
}

/// The tap (for WebRTC): the current tracks first, then every frame with its ingest
/// wall clock, sharing the frame's bytes; nothing is sent while nobody listens.
#[tokio::test]
async fn the_tap_sees_current_tracks_then_frames_by_reference() {
    let (_streams, stream) = live();
    push(&stream, 0, 3); // before anyone taps: not buffered for later
    let (current, mut rx) = stream.tap();
    assert!(matches!(
        current.as_slice(),
        [crate::TappedMedia::Tracks { rendition, .. }] if &**rendition == "source"
    ));
    let at = SystemTime::now();
    let data = Bytes::from(vec![0x65; 50]);
    let t = MediaTime::new(9000, VIDEO_TIMESCALE);
    stream.handle_frame(
        "source",
        Frame {
            kind: TrackKind::Video,
            dts: t,
            pts: t,
            keyframe: true,
            data: data.clone(),
        },
        at,
        Instant::now(),
    );
    match rx.try_recv() {
        Ok(crate::TappedMedia::Frame {
            rendition,
            frame,
            at: tapped_at,
        }) => {
            assert_eq!(&*rendition, "source");
            assert_eq!(tapped_at, at);
            assert_eq!(frame.data.as_ptr(), data.as_ptr(), "shared, not copied");
        }
        other => panic!("expected the frame, got {other:?}"),
    }
    assert!(
        rx.try_recv().is_err(),
        "the frames before the tap are not replayed"
    );
}

#[tokio::test]
async fn a_withdrawn_rendition_leaves_the_master_the_reports_and_its_playlist() {
    let (streams, stream) = live();
    let announce = |names: &[&str]| {
        let set: Vec<_> = names
            .iter()
            .map(|n| hub::AnnouncedRendition {
                name: Arc::from(*n),
                declared: None,
            })
            .collect();
        stream.handle_announce(Arc::from(set));
    };
    announce(&["source", "360p"]);
    stream.handle_tracks("360p", source_tracks(), SystemTime::now());
    for n in 0..90 {
        let t = MediaTime::new(n * 3000, VIDEO_TIMESCALE);
        for rendition in ["source", "360p"] {
            let frame = Frame {
                kind: TrackKind::Video,
                dts: t,
                pts: t,
                keyframe: n % 60 == 0,
                data: Bytes::from(vec![0x41; 100]),
            };
            stream.handle_frame(rendition, frame, SystemTime::now(), Instant::now());
        }
    }
    let text = |b: &Bytes| String::from_utf8_lossy(b).into_owned();
    let (_, _, master) = get(&streams, "/live/cam/master.m3u8").await;
    assert!(
        text(&master).contains("360p/index.m3u8"),
        "{}",
        text(&master)
    );
    let (_, _, source) = get(&streams, "/live/cam/source/index.m3u8").await;
    assert!(text(&source).contains("RENDITION-REPORT:URI=\"../360p/index.m3u8\""));
    let (_, _, rung) = get(&streams, "/live/cam/360p/index.m3u8").await;
    let segment = text(&rung)
        .lines()
        .find(|l| !l.starts_with('#') && !l.is_empty())
        .expect("a complete segment")
        .to_owned();

    stream.handle_withdraw("360p");
    let (status, _, master) = get(&streams, "/live/cam/master.m3u8").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text(&master).contains("360p"), "{}", text(&master));
    let (_, _, source) = get(&streams, "/live/cam/source/index.m3u8").await;
    assert!(!text(&source).contains("360p"), "{}", text(&source));
    let (status, headers, body) = get(&streams, "/live/cam/360p/index.m3u8").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert!(text(&body).contains("withdrawn"), "{}", text(&body));
    // A blocking reload on it is refused at once too, not held.
    let (status, _, _) = get(&streams, "/live/cam/360p/index.m3u8?_HLS_msn=1&_HLS_part=0").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Its parts already listed stay available to the players fetching them.
    let (status, _, _) = get(&streams, &format!("/live/cam/360p/{segment}")).await;
    assert_eq!(status, StatusCode::OK);

    // A new session that makes it again lists it again.
    announce(&["source", "360p"]);
    let (status, _, _) = get(&streams, "/live/cam/360p/index.m3u8").await;
    assert_eq!(status, StatusCode::OK);
}
