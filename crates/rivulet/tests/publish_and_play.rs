//! A real ffmpeg publishes over RTMP; the LL-HLS output is read back over HTTP with
//! real parsers and decoded by ffmpeg.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const KEY: &str = "k3y-for-e2e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_play_block_stream_and_decode() {
    let server = Server::start(&[
        "--stream",
        &format!("e2e={KEY}"),
        "--grace-period-ms",
        "1500",
    ]);
    let mut ffmpeg = publish(&format!("{}/live/{KEY}", server.rtmp), 9);

    // Multivariant playlist: one variant with honest attributes, parsed by a real parser.
    let master = get_when_ready(
        &server.url("/live/e2e/master.m3u8"),
        Duration::from_secs(15),
    )
    .await;
    let parsed =
        m3u8_rs::parse_master_playlist_res(master.as_bytes()).expect("valid multivariant playlist");
    assert_eq!(parsed.variants.len(), 1, "{master}");
    let variant = &parsed.variants[0];
    assert!(variant.bandwidth > 0);
    assert!(variant.average_bandwidth.is_some(), "{master}");
    let codecs = variant.codecs.clone().unwrap();
    assert!(
        codecs.starts_with("avc1.64") && codecs.contains("mp4a.40.2"),
        "{codecs}"
    );
    let res = variant.resolution.unwrap();
    assert_eq!((res.width, res.height), (320, 240));
    assert!(
        (variant.frame_rate.unwrap() - 30.0).abs() < 0.01,
        "{master}"
    );
    let media_url = server.url(&format!("/live/e2e/{}", variant.uri));

    // Media playlist: the LL-HLS tags, consistent with each other.
    let playlist = get_when_ready(&media_url, Duration::from_secs(10)).await;
    m3u8_rs::parse_media_playlist_res(playlist.as_bytes()).expect("valid media playlist");
    for tag in [
        "#EXT-X-VERSION:",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MAP:URI=",
        "#EXT-X-PROGRAM-DATE-TIME:",
        "#EXT-X-PART-INF:PART-TARGET=0.201",
        "#EXT-X-PART:",
        "#EXT-X-PRELOAD-HINT:TYPE=PART",
    ] {
        assert!(playlist.contains(tag), "missing {tag} in\n{playlist}");
    }
    let control = playlist
        .lines()
        .find(|l| l.starts_with("#EXT-X-SERVER-CONTROL:"))
        .unwrap();
    assert!(control.contains("CAN-BLOCK-RELOAD=YES"), "{control}");
    let hold_back: f64 = attr(control, "PART-HOLD-BACK").unwrap().parse().unwrap();
    assert!(hold_back >= 3.0 * 0.201 - 1e-9, "{control}");
    assert!(attr(control, "CAN-SKIP-UNTIL").is_some(), "{control}");
    for part in playlist.lines().filter(|l| l.starts_with("#EXT-X-PART:")) {
        let d: f64 = attr(part, "DURATION").unwrap().parse().unwrap();
        assert!(d <= 0.201 + 1e-9, "part longer than PART-TARGET: {part}");
    }

    // Blocking reload: ask for the part after the hinted one; the answer lists it, and
    // the playlist we had did not.
    let (hint_msn, hint_part) = preload_hint(&playlist);
    let target = format!("part-{hint_msn}-{hint_part}.m4s");
    let lists_part = |text: &str, uri: &str| {
        text.lines()
            .any(|l| l.starts_with("#EXT-X-PART:") && l.contains(&format!("URI=\"{uri}\"")))
    };
    assert!(!lists_part(&playlist, &target), "{playlist}");
    let blocked = get_text(&format!(
        "{media_url}?_HLS_msn={hint_msn}&_HLS_part={hint_part}"
    ))
    .await;
    assert_eq!(blocked.0, 200, "{}", blocked.1);
    let next_segment_started = lists_part(&blocked.1, &format!("part-{}-0.m4s", hint_msn + 1));
    assert!(
        lists_part(&blocked.1, &target) || next_segment_started,
        "blocking reload returned before {target}:\n{}",
        blocked.1
    );

    // The preload-hinted part streams its first bytes before the part is complete:
    // its first chunk arrives before a blocking reload for that same part returns.
    let playlist = get_text(&media_url).await.1;
    let (m, p) = preload_hint(&playlist);
    let part_url = media_url.replace("index.m3u8", &format!("part-{m}-{p}.m4s"));
    let client = client();
    let mut part_response = client.get(&part_url).send().await.unwrap();
    assert_eq!(part_response.status(), 200);
    assert!(
        part_response.content_length().is_none(),
        "a growing part must be streamed, not sent whole"
    );
    let reload = tokio::spawn({
        let url = format!("{media_url}?_HLS_msn={m}&_HLS_part={p}");
        async move {
            let r = client.get(url).send().await.unwrap();
            r.text().await.unwrap();
            Instant::now()
        }
    });
    let first_chunk = part_response.chunk().await.unwrap().expect("a first chunk");
    let first_bytes_at = Instant::now();
    assert_eq!(
        &first_chunk[4..8],
        b"moof",
        "a part starts with a CMAF chunk"
    );
    let mut part_len = first_chunk.len();
    while let Some(c) = part_response.chunk().await.unwrap() {
        part_len += c.len();
    }
    let part_complete_at = reload.await.unwrap();
    assert!(
        first_bytes_at < part_complete_at,
        "first bytes of the hinted part came only after it completed"
    );
    assert!(
        part_len > first_chunk.len(),
        "the part grew after its first chunk"
    );

    // Let the publish finish and the grace period pass: the playlist ends.
    let status = tokio::task::spawn_blocking(move || ffmpeg.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "ffmpeg publisher failed");
    let deadline = Instant::now() + Duration::from_secs(15);
    let ended = loop {
        let (_, text) = get_text(&media_url).await;
        if text.contains("#EXT-X-ENDLIST") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no EXT-X-ENDLIST after the grace period:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // Every segment starts with an IDR frame.
    let dir = tempfile::tempdir().unwrap();
    let media = m3u8_rs::parse_media_playlist_res(ended.as_bytes()).unwrap();
    let init_uri = ended
        .lines()
        .find(|l| l.starts_with("#EXT-X-MAP"))
        .and_then(|l| attr(l, "URI"))
        .unwrap();
    let init = reqwest::get(media_url.replace("index.m3u8", init_uri))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(!media.segments.is_empty());
    for segment in &media.segments {
        let bytes = reqwest::get(media_url.replace("index.m3u8", &segment.uri))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let first = first_video_frame(
            &dir.path().join(format!("{}.mp4", segment.uri)),
            &init,
            &bytes,
        );
        assert!(
            first.starts_with("1,I"),
            "segment {} does not start with an IDR: {first:?}",
            segment.uri
        );
    }

    // ffmpeg reads the whole ended stream back from the multivariant playlist and decodes
    // every frame without an error.
    let master_url = server.url("/live/e2e/master.m3u8");
    let (ok, out, err) = run(Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_entries",
            "stream=codec_type,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&master_url));
    assert!(
        ok && err.trim().is_empty(),
        "ffprobe reported errors: {err}"
    );
    let video_frames: u64 = out
        .lines()
        .find(|l| l.starts_with("video"))
        .and_then(|l| l.split(',').nth(1))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        video_frames,
        9 * 30,
        "every published frame is in the playlist window:\n{out}"
    );
    let (ok, _, err) = run(Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&master_url)
        .args(["-f", "null", "-"]));
    assert!(ok && err.trim().is_empty(), "decode errors: {err}");
}
