#![allow(clippy::unwrap_used)]

use super::*;
use crate::{ServerSession, SessionConfig, SessionEvent};

/// Our client against our server, bytes shuttled in memory.
struct Link {
    client: ClientSession,
    server: ServerSession,
    now: Instant,
    server_events: Vec<SessionEvent>,
    client_events: Vec<ClientEvent>,
}

impl Link {
    fn new(url: &str) -> Self {
        let now = Instant::now();
        Link {
            client: ClientSession::new(
                ClientConfig::default(),
                PublishUrl::parse(url).unwrap(),
                now,
                [3; PACKET_LEN],
            ),
            server: ServerSession::new(SessionConfig::default(), now, [9; PACKET_LEN], 0),
            now,
            server_events: Vec::new(),
            client_events: Vec::new(),
        }
    }

    /// Moves bytes both ways, `step` bytes at a time, until neither side has output.
    fn pump(&mut self, step: usize) -> Result<(), ClientError> {
        loop {
            let mut to_server = Vec::new();
            let mut to_client = Vec::new();
            let a = self.client.poll_transmit(&mut to_server);
            let b = self.server.poll_transmit(&mut to_client);
            if !a && !b {
                return Ok(());
            }
            for piece in to_server.chunks(step) {
                self.server.handle_input(self.now, piece).unwrap();
                self.server.check_invariants();
            }
            while let Some(e) = self.server.poll_event() {
                if matches!(e, SessionEvent::PublishRequested { ref stream_key, .. } if stream_key == "good")
                {
                    self.server.accept_publish();
                } else if matches!(e, SessionEvent::PublishRequested { .. }) {
                    self.server
                        .reject_publish("NetStream.Publish.BadName", "stream key not recognised");
                }
                self.server_events.push(e);
            }
            for piece in to_client.chunks(step) {
                self.client.handle_input(piece)?;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
        }
    }
}

#[test]
fn publishes_to_our_server_at_any_read_size() {
    for step in [1, 7, 128, 1537, 100_000] {
        let mut link = Link::new("rtmp://127.0.0.1:1935/live/good");
        link.pump(step).unwrap();
        assert_eq!(
            link.client_events,
            vec![ClientEvent::Connected, ClientEvent::Publishing],
            "read size {step}"
        );
        assert!(link.client.is_publishing());
        link.client
            .send_metadata(vec![("width".into(), Amf0Value::Number(1280.0))]);
        let big = Bytes::from(vec![0x17; 200_000]);
        link.client.send_video(40, big.clone());
        link.client
            .send_audio(0xff_ffff + 5, Bytes::from_static(&[0xaf, 1, 2]));
        link.pump(step).unwrap();
        let media: Vec<_> = link
            .server_events
            .iter()
            .filter(|e| {
                !matches!(
                    e,
                    SessionEvent::Connected { .. } | SessionEvent::PublishRequested { .. }
                )
            })
            .cloned()
            .collect();
        assert_eq!(media.len(), 3, "read size {step}: {media:?}");
        assert!(
            matches!(&media[0], SessionEvent::Metadata(m) if m.get("width").and_then(Amf0Value::as_f64) == Some(1280.0))
        );
        assert_eq!(
            media[1],
            SessionEvent::Video {
                timestamp_ms: 40,
                body: big
            }
        );
        assert_eq!(
            media[2],
            SessionEvent::Audio {
                timestamp_ms: 0xff_ffff + 5,
                body: Bytes::from_static(&[0xaf, 1, 2])
            }
        );
        link.client.finish();
        link.pump(step).unwrap();
        assert_eq!(link.server_events.last(), Some(&SessionEvent::Unpublished));
    }
}

#[test]
fn a_refused_key_is_an_error_naming_the_code() {
    let mut link = Link::new("rtmp://127.0.0.1/live/wrong");
    let err = link.pump(4096).unwrap_err();
    assert!(
        matches!(&err, ClientError::Refused { code, .. } if code == "NetStream.Publish.BadName"),
        "{err}"
    );
    assert!(
        err.to_string().contains("stream key not recognised"),
        "{err}"
    );
    assert!(!link.client.is_publishing());
    // A failed session stays failed.
    assert_eq!(link.client.handle_input(&[0]), Err(err));
}

#[test]
fn setup_times_out_without_answers() {
    let now = Instant::now();
    let mut client = ClientSession::new(
        ClientConfig::default(),
        PublishUrl::parse("rtmp://h/live/k").unwrap(),
        now,
        [0; PACKET_LEN],
    );
    let deadline = client.poll_timeout().unwrap();
    client.handle_timeout(deadline - Duration::from_millis(1));
    assert!(client.error().is_none());
    client.handle_timeout(deadline);
    assert!(matches!(client.error(), Some(ClientError::Timeout(_))));
    assert_eq!(client.poll_timeout(), None);
}

#[test]
fn an_http_server_is_not_mistaken_for_rtmp() {
    let mut client = ClientSession::new(
        ClientConfig::default(),
        PublishUrl::parse("rtmp://h/live/k").unwrap(),
        Instant::now(),
        [0; PACKET_LEN],
    );
    let err = client
        .handle_input(b"HTTP/1.1 400 Bad Request\r\n")
        .unwrap_err();
    assert!(err.to_string().contains("handshake version 72"), "{err}");
}

#[test]
fn urls_parse_and_hide_their_keys() {
    let url = PublishUrl::parse("rtmp://example.com/live/s3cret-key").unwrap();
    assert_eq!(
        (url.host.as_str(), url.port, url.app.as_str()),
        ("example.com", 1935, "live")
    );
    assert_eq!(url.stream_key, "s3cret-key");
    assert_eq!(url.to_string(), "rtmp://example.com:1935/live/s3c…");
    let url = PublishUrl::parse("rtmp://[::1]:1940/app/inst/key?x=1").unwrap();
    assert_eq!(
        (url.host.as_str(), url.port, url.app.as_str()),
        ("::1", 1940, "app/inst")
    );
    assert_eq!(url.stream_key, "key?x=1");
    assert_eq!(url.tc_url(), "rtmp://[::1]:1940/app/inst");
    let url = PublishUrl::parse("rtmps://live-api-s.facebook.com/rtmp/KEY").unwrap();
    assert!(url.tls);
    assert_eq!((url.port, url.app.as_str()), (443, "rtmp"));
    assert_eq!(
        url.to_string(),
        "rtmps://live-api-s.facebook.com:443/rtmp/KEY…"
    );
    assert!(!PublishUrl::parse("rtmp://h/live/k").unwrap().tls);
    for (bad, why) in [
        ("http://h/live/k", "only rtmp://"),
        ("rtmp://h", "expected rtmp://"),
        ("rtmp://h/live/", "stream key is missing"),
        ("rtmp://h/key", "no stream key"),
        ("rtmp://h:99999/live/k", "not a port"),
        ("rtmp://:1935/live/k", "host is missing"),
    ] {
        let err = PublishUrl::parse(bad).unwrap_err().to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
    let err = PublishUrl::parse("rtmp://h:x/live/topsecret")
        .unwrap_err()
        .to_string();
    assert!(!err.contains("topsecret"), "{err}");
}
