use std::num::NonZeroU32;

use bytes::Bytes;
use media::{AacConfig, CodecConfig, Frame, MediaTime, Track, TrackKind, Tracks};

use super::*;

fn audio_tracks() -> Tracks {
    Tracks {
        video: None,
        audio: Some(Track {
            kind: TrackKind::Audio,
            timescale: NonZeroU32::new(48_000).expect("non-zero"),
            codec: CodecConfig::Aac(AacConfig {
                asc: Bytes::from_static(&[0x11, 0x90]),
                object_type: 2,
                sample_rate: 48_000,
                channels: 2,
            }),
        }),
    }
}

fn video_frame(n: i64, keyframe: bool) -> Frame {
    let t = MediaTime::new(n * 3000, media::VIDEO_TIMESCALE);
    Frame {
        kind: TrackKind::Video,
        dts: t,
        pts: t,
        keyframe,
        data: Bytes::new(),
    }
}

fn frame_dts(e: Option<SubscriberEvent>) -> i64 {
    match e {
        Some(SubscriberEvent::Media(MediaEvent::Frame(f))) => f.dts.ticks,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[tokio::test]
async fn second_publisher_is_refused_until_first_leaves() {
    let hub = Hub::new();
    let first = hub.publish("cam", "a").expect("first publish");
    assert_eq!(
        hub.publish("cam", "b").err(),
        Some(HubError::AlreadyPublishing("cam".into()))
    );
    assert_eq!(hub.live_streams(), vec!["cam".to_owned()]);
    drop(first);
    assert!(hub.live_streams().is_empty());
    assert!(hub.publish("cam", "b").is_ok());
}

#[tokio::test]
async fn late_joiner_starts_at_last_keyframe_and_sees_the_end() {
    let hub = Hub::new();
    let publisher = hub.publish("cam", "a").expect("publish");
    publisher.send_tracks(audio_tracks());
    // Audio-only tracks announced, yet video frames decide the GOP only when there is video.
    let mut tracks = audio_tracks();
    tracks.video = Some(Track {
        kind: TrackKind::Video,
        timescale: media::VIDEO_TIMESCALE,
        codec: CodecConfig::Aac(AacConfig {
            asc: Bytes::new(),
            object_type: 2,
            sample_rate: 1,
            channels: 1,
        }),
    });
    publisher.send_tracks(tracks);
    publisher.send_frame(video_frame(0, true));
    publisher.send_frame(video_frame(1, false));
    publisher.send_frame(video_frame(2, true));
    publisher.send_frame(video_frame(3, false));
    let mut sub = hub.session("cam").expect("live").subscribe();
    assert!(matches!(
        sub.recv().await,
        Some(SubscriberEvent::Media(MediaEvent::Tracks(_)))
    ));
    assert_eq!(frame_dts(sub.recv().await), 6000);
    assert_eq!(frame_dts(sub.recv().await), 9000);
    publisher.send_frame(video_frame(4, false));
    drop(publisher);
    assert_eq!(frame_dts(sub.recv().await), 12000);
    assert!(sub.recv().await.is_none());
}

#[tokio::test]
async fn lagging_subscriber_skips_to_next_keyframe() {
    let hub = Hub::new();
    let publisher = hub.publish("cam", "a").expect("publish");
    let mut tracks = audio_tracks();
    tracks.video = Some(Track {
        kind: TrackKind::Video,
        timescale: media::VIDEO_TIMESCALE,
        codec: CodecConfig::Aac(AacConfig {
            asc: Bytes::new(),
            object_type: 2,
            sample_rate: 1,
            channels: 1,
        }),
    });
    publisher.send_tracks(tracks);
    let mut sub = hub.session("cam").expect("live").subscribe();
    assert!(matches!(
        sub.recv().await,
        Some(SubscriberEvent::Media(MediaEvent::Tracks(_)))
    ));
    for n in 0..(SESSION_CAPACITY as i64 + 10) {
        publisher.send_frame(video_frame(n, n == 0));
    }
    publisher.send_frame(video_frame(10_000, false));
    publisher.send_frame(video_frame(10_001, true));
    assert!(matches!(sub.recv().await, Some(SubscriberEvent::Skipped { missed }) if missed > 0));
    assert_eq!(frame_dts(sub.recv().await), 10_001 * 3000);
}

#[tokio::test]
async fn announcements_and_watch_follow_sessions() {
    let hub = Hub::new();
    let mut ann = hub.announcements();
    let mut watch = hub.watch_stream("cam");
    let publisher = hub.publish("cam", "peer").expect("publish");
    let session = ann.recv().await.expect("announced");
    assert_eq!(session.info().stream, "cam");
    watch.changed().await.expect("changed");
    assert!(watch.borrow_and_update().is_some());
    drop(publisher);
    watch.changed().await.expect("changed");
    assert!(watch.borrow().is_none());
    assert!(session.is_ended());
}

#[test]
fn a_session_counts_the_media_bytes_published_without_a_subscriber() {
    let hub = Hub::new();
    let publisher = hub.publish("cam", "peer").expect("publish");
    publisher.send_tracks(audio_tracks());
    for n in 0..3 {
        let mut f = video_frame(n, n == 0);
        f.data = Bytes::from(vec![0u8; 1000]);
        publisher.send_frame(f);
    }
    assert_eq!(publisher.session().media_bytes(), 3000);
}

#[test]
fn idr_requests_collapse_repeats_and_are_taken_once() {
    let requests = IdrRequests::default();
    assert!(requests.take().is_empty(), "nothing asked yet");
    let viewer_side = requests.clone();
    viewer_side.request("720p");
    viewer_side.request("720p");
    viewer_side.request("360p");
    let taken: Vec<String> = requests.take().iter().map(|r| r.to_string()).collect();
    assert_eq!(taken, ["720p", "360p"]);
    assert!(requests.take().is_empty(), "taken once");
    viewer_side.request("720p");
    assert_eq!(requests.take().len(), 1, "asked again after the take");
}
