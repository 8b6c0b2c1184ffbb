#![allow(clippy::unwrap_used)]

use super::*;

/// A minimal in-memory publisher driving a server session, with a fake clock.
struct Pair {
    server: ServerSession,
    now: Instant,
    encoder: ChunkEncoder,
    decoder: ChunkDecoder,
    received: BytesMut,
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        Pair {
            server: ServerSession::new(SessionConfig::default(), now, [7; PACKET_LEN], 0),
            now,
            encoder: ChunkEncoder::default(),
            decoder: ChunkDecoder::new(ChunkLimits::default()),
            received: BytesMut::new(),
        }
    }

    fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        let r = self.server.handle_input(self.now, bytes);
        self.server.check_invariants();
        let mut out = Vec::new();
        if self.server.poll_transmit(&mut out) {
            self.received.extend_from_slice(&out);
        }
        r
    }

    fn handshake(&mut self) {
        let mut hello = Vec::new();
        handshake::client_hello(&[1; PACKET_LEN], 0, &mut hello);
        self.send_bytes(&hello).unwrap();
        assert_eq!(self.received.len(), 1 + 2 * PACKET_LEN);
        let s1 = self.received[1..1 + PACKET_LEN].to_vec();
        self.received.clear();
        self.send_bytes(&s1).unwrap();
    }

    fn send(&mut self, msg: Message) -> Result<(), RtmpError> {
        let mut bytes = Vec::new();
        self.encoder.encode(&msg, &mut bytes);
        self.send_bytes(&bytes)
    }

    fn command(&mut self, stream_id: u32, values: &[Amf0Value]) {
        self.send(command(stream_id, values)).unwrap();
    }

    /// Messages the server sent since the last call.
    fn replies(&mut self) -> Vec<Message> {
        let mut sent = Vec::new();
        if self.server.poll_transmit(&mut sent) {
            self.received.extend_from_slice(&sent);
        }
        let mut out = Vec::new();
        while let Some(m) = self.decoder.decode(&mut self.received).unwrap() {
            if let Some(m) = m {
                if m.type_id == SET_CHUNK_SIZE {
                    self.decoder.set_chunk_size(read_u32(&m.payload).unwrap());
                }
                out.push(m);
            }
        }
        out
    }

    fn events(&mut self) -> Vec<SessionEvent> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }

    fn connect_and_publish(&mut self, key: &str) -> Vec<SessionEvent> {
        self.handshake();
        let s = |v: &str| Amf0Value::String(v.into());
        self.command(
            0,
            &[
                s("connect"),
                Amf0Value::Number(1.0),
                Amf0Value::Object(vec![
                    ("app".into(), s("live")),
                    ("tcUrl".into(), s("rtmp://h/live")),
                ]),
            ],
        );
        self.command(
            0,
            &[
                s("releaseStream"),
                Amf0Value::Number(2.0),
                Amf0Value::Null,
                s(key),
            ],
        );
        self.command(
            0,
            &[
                s("FCPublish"),
                Amf0Value::Number(3.0),
                Amf0Value::Null,
                s(key),
            ],
        );
        self.command(
            0,
            &[s("createStream"), Amf0Value::Number(4.0), Amf0Value::Null],
        );
        self.command(
            1,
            &[
                s("publish"),
                Amf0Value::Number(5.0),
                Amf0Value::Null,
                s(key),
                s("live"),
            ],
        );
        self.events()
    }
}

fn status_code(m: &Message) -> Option<String> {
    let values = amf0::decode_all(&m.payload, &Limits::default()).ok()?;
    (values.first()?.as_str()? == "onStatus")
        .then(|| values.get(3)?.get("code")?.as_str().map(str::to_owned))?
}

#[test]
fn connect_publish_accept_and_media_flow() {
    let mut p = Pair::new();
    let events = p.connect_and_publish("abc?foo=1");
    assert_eq!(
        events[0],
        SessionEvent::Connected {
            app: "live".into(),
            tc_url: Some("rtmp://h/live".into())
        }
    );
    assert_eq!(
        events[1],
        SessionEvent::PublishRequested {
            app: "live".into(),
            stream_key: "abc".into(),
            stream_id: 1
        }
    );
    let replies = p.replies();
    assert!(replies.iter().any(|m| m.type_id == WINDOW_ACK_SIZE));
    assert!(replies.iter().any(|m| m.type_id == COMMAND_AMF0));
    // Media before acceptance is dropped.
    p.send(Message {
        chunk_stream_id: 6,
        timestamp: 0,
        type_id: VIDEO,
        stream_id: 1,
        payload: Bytes::from_static(&[0x17, 0, 0, 0, 0]),
    })
    .unwrap();
    assert!(p.events().is_empty());
    p.server.accept_publish();
    p.send_bytes(&[]).unwrap();
    assert!(
        p.replies()
            .iter()
            .any(|m| status_code(m).as_deref() == Some("NetStream.Publish.Start"))
    );
    p.encoder.set_chunk_size(100);
    p.send(control(SET_CHUNK_SIZE, u32_payload(100))).unwrap();
    p.send(Message {
        chunk_stream_id: 6,
        timestamp: 0x0100_0000,
        type_id: VIDEO,
        stream_id: 1,
        payload: Bytes::from(vec![0x27; 1000]),
    })
    .unwrap();
    let events = p.events();
    assert!(
        matches!(&events[..], [SessionEvent::Video { timestamp_ms: 0x0100_0000, body }] if body.len() == 1000)
    );
    let s = |v: &str| Amf0Value::String(v.into());
    p.command(
        1,
        &[
            s("FCUnpublish"),
            Amf0Value::Number(6.0),
            Amf0Value::Null,
            s("abc"),
        ],
    );
    assert_eq!(p.events(), vec![SessionEvent::Unpublished]);
}

#[test]
fn rejection_sends_an_error_status_and_closes() {
    let mut p = Pair::new();
    p.connect_and_publish("wrong");
    p.replies();
    p.server
        .reject_publish("NetStream.Publish.BadName", "stream key not recognised");
    p.send_bytes(&[]).unwrap();
    assert!(
        p.replies()
            .iter()
            .any(|m| status_code(m).as_deref() == Some("NetStream.Publish.BadName"))
    );
    assert!(p.server.is_closing());
}

#[test]
fn ping_acknowledgement_and_metadata() {
    let mut p = Pair::new();
    p.connect_and_publish("k");
    p.server.accept_publish();
    p.replies();
    p.send(user_control(USER_PING_REQUEST, &[0, 0, 1, 2]))
        .unwrap();
    assert!(
        p.replies().iter().any(
            |m| m.type_id == USER_CONTROL && m.payload[..2] == USER_PING_RESPONSE.to_be_bytes()
        )
    );
    let s = |v: &str| Amf0Value::String(v.into());
    let mut payload = Vec::new();
    for v in [
        s("@setDataFrame"),
        s("onMetaData"),
        Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(640.0))]),
    ] {
        amf0::encode(&v, &mut payload);
    }
    p.send(Message {
        chunk_stream_id: 4,
        timestamp: 0,
        type_id: DATA_AMF0,
        stream_id: 1,
        payload: Bytes::from(payload),
    })
    .unwrap();
    assert!(
        matches!(&p.events()[..], [SessionEvent::Metadata(m)] if m.get("width").and_then(Amf0Value::as_f64) == Some(640.0))
    );
    // Crossing the 2.5 MB window triggers an acknowledgement.
    p.encoder.set_chunk_size(65536);
    p.send(control(SET_CHUNK_SIZE, u32_payload(65536))).unwrap();
    for _ in 0..40 {
        p.send(Message {
            chunk_stream_id: 6,
            timestamp: 0,
            type_id: VIDEO,
            stream_id: 1,
            payload: Bytes::from(vec![0x27; 65536]),
        })
        .unwrap();
    }
    assert!(p.replies().iter().any(|m| m.type_id == ACKNOWLEDGEMENT));
}

#[test]
fn garbage_fails_the_session_and_keeps_failing() {
    let mut p = Pair::new();
    let err = p.send_bytes(&[0x06, 1, 2, 3]).unwrap_err();
    assert!(matches!(err, RtmpError::Malformed { .. }), "{err}");
    assert_eq!(p.send_bytes(&[3]).unwrap_err(), err);
    assert!(p.server.is_closing());

    let mut p = Pair::new();
    p.handshake();
    p.send(control(SET_CHUNK_SIZE, u32_payload(0x7fff_ffff)))
        .unwrap();
    let huge = [0x03, 0, 0, 0, 0xff, 0xff, 0xff, 0x14, 0, 0, 0, 0];
    assert!(matches!(
        p.send_bytes(&huge),
        Err(RtmpError::Violation { .. })
    ));

    let mut p = Pair::new();
    p.handshake();
    let truncated_connect = [
        0x02, 0x00, 0x07, b'c', b'o', b'n', b'n', b'e', b'c', b't', 0x00, 0x3f, 0xf0, 0, 0,
    ];
    let msg = Message {
        chunk_stream_id: 3,
        timestamp: 0,
        type_id: COMMAND_AMF0,
        stream_id: 0,
        payload: Bytes::copy_from_slice(&truncated_connect),
    };
    assert!(matches!(p.send(msg), Err(RtmpError::Malformed { .. })));
}

#[test]
fn timeouts() {
    let mut p = Pair::new();
    let deadline = p.server.poll_timeout().unwrap();
    p.server.handle_timeout(deadline);
    assert_eq!(
        p.server.error(),
        Some(&RtmpError::Timeout(
            "handshake not completed within --rtmp-handshake-timeout-ms"
        ))
    );
}

#[test]
fn unauthenticated_peer_cannot_make_the_session_buffer_more_than_the_setup_budget() {
    let mut p = Pair::new();
    p.handshake();
    // Set Chunk Size 4096, then 60 chunk streams × 4 KiB into 8 MiB messages.
    let mut scs = vec![0x02, 0, 0, 0, 0, 0, 4, SET_CHUNK_SIZE, 0, 0, 0, 0];
    scs.extend_from_slice(&4096u32.to_be_bytes());
    p.send_bytes(&scs).unwrap();
    let mut failure = None;
    for csid in 3..63u32 {
        let mut chunk = vec![csid as u8, 0, 0, 0, 0x80, 0, 0, VIDEO, 1, 0, 0, 0];
        chunk.extend_from_slice(&[0x17; 4096]);
        if let Err(e) = p.send_bytes(&chunk) {
            failure = Some((csid, e));
            break;
        }
    }
    let (csid, err) = failure.expect("the setup budget stops the attack");
    assert!(csid < 3 + 17, "stopped after {csid}");
    assert!(matches!(err, RtmpError::Violation { .. }), "{err}");
    assert!(
        err.to_string().contains("--rtmp-max-setup-buffered-bytes"),
        "the error names the rule: {err}"
    );
    // Failed: the buffers are gone and the session stays failed.
    assert_eq!(p.server.decoder.buffered(), 0);
    assert_eq!(p.send_bytes(&[0x03]), Err(err));
    assert!(p.server.is_closing());
}

#[test]
fn accepted_publisher_gets_the_larger_budget_and_is_told_when_over_it() {
    let mut p = Pair::new();
    let _ = p.connect_and_publish("key");
    p.server.accept_publish();
    let _ = p.replies();
    let mut scs = vec![0x02, 0, 0, 0, 0, 0, 4, SET_CHUNK_SIZE, 0, 0, 0, 0];
    scs.extend_from_slice(&(1u32 << 20).to_be_bytes());
    p.send_bytes(&scs).unwrap();
    let mut err = None;
    for csid in 3..63u32 {
        let mut chunk = vec![csid as u8, 0, 0, 0, 0x80, 0, 0, VIDEO, 1, 0, 0, 0];
        chunk.extend_from_slice(&vec![0x17; 1 << 20]);
        if let Err(e) = p.send_bytes(&chunk) {
            err = Some(e);
            break;
        }
        assert!(p.server.decoder.buffered() <= 16 << 20);
    }
    let err = err.expect("the total budget stops it");
    assert!(
        err.to_string().contains("--rtmp-max-buffered-bytes"),
        "{err}"
    );
    // The publisher is told why, on its stream.
    let codes: Vec<String> = p.replies().iter().filter_map(status_code).collect();
    assert_eq!(codes, vec!["NetStream.Publish.Rejected".to_owned()]);
}

#[test]
fn a_trickle_of_bytes_is_not_progress() {
    let mut p = Pair::new();
    p.handshake();
    let start = p.now;
    // One byte of a chunk header every 20 s: never a whole message.
    let header = [0x03u8, 0, 0, 0, 0, 0, 100, COMMAND_AMF0, 0, 0, 0, 0];
    for byte in header {
        p.now += Duration::from_secs(20);
        if p.server.poll_timeout().is_some_and(|t| t <= p.now) {
            p.server.handle_timeout(p.now);
            break;
        }
        p.send_bytes(&[byte]).unwrap();
    }
    let err = p.server.error().cloned().expect("closed");
    assert!(matches!(err, RtmpError::Timeout(_)), "{err}");
    assert!(p.now - start <= Duration::from_secs(40), "closed late");
}

#[test]
fn a_publisher_that_never_publishes_is_closed_after_the_setup_timeout() {
    let mut p = Pair::new();
    p.handshake();
    // Small complete messages (acknowledgements) every 5 s keep it from being idle…
    for _ in 0..3 {
        p.now += Duration::from_secs(5);
        p.send(control(ACKNOWLEDGEMENT, u32_payload(1))).unwrap();
        if p.server.poll_timeout().is_some_and(|t| t <= p.now) {
            p.server.handle_timeout(p.now);
        }
    }
    // …but not from having to ask to publish.
    assert_eq!(
        p.server.error(),
        Some(&RtmpError::Timeout(
            "no publish request within --rtmp-setup-timeout-ms"
        ))
    );
}

#[test]
fn once_publishing_only_media_counts_as_progress() {
    let mut p = Pair::new();
    let _ = p.connect_and_publish("key");
    p.server.accept_publish();
    let idle = SessionConfig::default().idle_timeout;
    p.now += idle / 2;
    p.send(control(ACKNOWLEDGEMENT, u32_payload(1))).unwrap();
    p.now += idle / 2 + Duration::from_millis(1);
    assert!(p.server.poll_timeout().is_some_and(|t| t <= p.now));
    p.server.handle_timeout(p.now);
    assert!(matches!(p.server.error(), Some(RtmpError::Timeout(_))));
    let codes: Vec<String> = p.replies().iter().filter_map(status_code).collect();
    assert!(
        codes.contains(&"NetStream.Publish.Idle".to_owned()),
        "{codes:?}"
    );
}

#[test]
fn stop_publish_tells_the_encoder_why_and_closes() {
    let mut p = Pair::new();
    let _ = p.connect_and_publish("key");
    p.server.accept_publish();
    let _ = p.replies();
    p.server
        .stop_publish("NetStream.Publish.Rejected", "above the bitrate cap");
    assert!(p.server.is_closing());
    let codes: Vec<String> = p.replies().iter().filter_map(status_code).collect();
    assert_eq!(codes, vec!["NetStream.Publish.Rejected".to_owned()]);
}

#[test]
fn random_input_never_panics() {
    let mut seed = 0xdead_beef_cafe_f00d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..300 {
        let mut p = Pair::new();
        if round % 2 == 0 {
            p.handshake();
        }
        for _ in 0..20 {
            let len = (next() % 300) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = p.send_bytes(&bytes);
        }
    }
}

#[test]
fn the_unpublish_sequence_is_answered_to_its_end() {
    let s = |v: &str| Amf0Value::String(v.into());
    // FCUnpublish, then deleteStream: open until the peer closes (GStreamer's rtmp2sink
    // fails at end of stream when the server closes first).
    let mut p = Pair::new();
    let _ = p.connect_and_publish("key");
    p.server.accept_publish();
    let _ = p.replies();
    p.command(
        0,
        &[
            s("FCUnpublish"),
            Amf0Value::Number(6.0),
            Amf0Value::Null,
            s("key"),
        ],
    );
    assert!(matches!(p.events().as_slice(), [SessionEvent::Unpublished]));
    assert!(
        !p.server.is_closing(),
        "closed in the middle of the sequence"
    );
    let results: Vec<Message> = p.replies();
    assert!(
        results.iter().any(|m| {
            amf0::decode_all(&m.payload, &Limits::default())
                .ok()
                .and_then(|v| v.first().and_then(|n| n.as_str().map(str::to_owned)))
                .as_deref()
                == Some("_result")
        }),
        "FCUnpublish is answered"
    );
    p.command(
        1,
        &[
            s("deleteStream"),
            Amf0Value::Number(7.0),
            Amf0Value::Null,
            Amf0Value::Number(1.0),
        ],
    );
    assert!(!p.server.is_closing(), "the peer closes first");
    assert!(p.replies().is_empty(), "deleteStream takes no answer");
    assert!(p.events().is_empty(), "one Unpublished per publish");

    // A publisher that stops and never closes: closed after the linger, quietly (not
    // as a failure).
    let mut p = Pair::new();
    let _ = p.connect_and_publish("key");
    p.server.accept_publish();
    p.command(
        0,
        &[
            s("FCUnpublish"),
            Amf0Value::Number(6.0),
            Amf0Value::Null,
            s("key"),
        ],
    );
    assert!(!p.server.is_closing());
    let deadline = p.server.poll_timeout().unwrap();
    assert!(deadline <= p.now + UNPUBLISH_LINGER);
    p.server.handle_timeout(deadline);
    assert!(p.server.is_closing());
    assert!(p.server.error().is_none());
}

#[test]
fn enhanced_rtmp_fourccs_are_answered() {
    let mut p = Pair::new();
    p.handshake();
    let s = |v: &str| Amf0Value::String(v.into());
    p.command(
        0,
        &[
            s("connect"),
            Amf0Value::Number(1.0),
            Amf0Value::Object(vec![
                ("app".into(), s("live")),
                (
                    "fourCcList".into(),
                    Amf0Value::StrictArray(vec![s("hvc1"), s("av01"), s("vp09")]),
                ),
                (
                    "videoFourCcInfoMap".into(),
                    Amf0Value::Object(vec![("hvc1".into(), Amf0Value::Number(1.0))]),
                ),
            ]),
        ],
    );
    let result = p
        .replies()
        .into_iter()
        .find_map(|m| {
            let values = amf0::decode_all(&m.payload, &Limits::default()).ok()?;
            (values.first()?.as_str()? == "_result").then(|| values[2].clone())
        })
        .expect("connect answered");
    let list: Vec<String> = match result.get("fourCcList") {
        Some(Amf0Value::StrictArray(v)) => v
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect(),
        other => panic!("no fourCcList: {other:?}"),
    };
    assert_eq!(list, ["avc1", "hvc1", "av01", "mp4a"]);
    let map = result.get("videoFourCcInfoMap").expect("v2 map answered");
    assert_eq!(map.get("av01").and_then(Amf0Value::as_f64), Some(1.0));
    assert!(map.get("vp09").is_none());
}
