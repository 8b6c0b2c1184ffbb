//! The RTMP client (publishing) session fed arbitrary server bytes.
#![no_main]
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rtmp::{ClientConfig, ClientSession, HANDSHAKE_PACKET_LEN, PublishUrl};

fuzz_target!(|data: &[u8]| {
    let (pieces, _) = rivulet_fuzz::split(data);
    let start = Instant::now();
    let url = PublishUrl::parse("rtmp://127.0.0.1/live/key").expect("url");
    let mut c = ClientSession::new(
        ClientConfig::default(),
        url,
        start,
        [0; HANDSHAKE_PACKET_LEN],
    );
    let mut out = Vec::new();
    for (i, piece) in pieces.into_iter().enumerate() {
        let result = c.handle_input(piece);
        while c.poll_transmit(&mut out) {
            out.clear();
        }
        while c.poll_event().is_some() {}
        if c.is_publishing() {
            c.send_video(
                i as u32 * 33,
                Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]),
            );
            c.send_audio(i as u32 * 23, Bytes::from_static(&[0xaf, 1, 0x21]));
        }
        if let Err(e) = result {
            assert_eq!(c.error(), Some(&e));
            assert_eq!(c.handle_input(b"\x03"), Err(e));
            return;
        }
    }
    c.finish();
    c.handle_timeout(start + Duration::from_secs(3600));
});
