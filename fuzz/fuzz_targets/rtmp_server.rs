//! The RTMP server session fed arbitrary client bytes, split at arbitrary points.
#![no_main]
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtmp::{HANDSHAKE_PACKET_LEN, ServerSession, SessionConfig, SessionEvent};

fuzz_target!(|data: &[u8]| {
    let (pieces, _) = rivulet_fuzz::split(data);
    let start = Instant::now();
    let mut s = ServerSession::new(
        SessionConfig::default(),
        start,
        [7; HANDSHAKE_PACKET_LEN],
        0,
    );
    let mut out = Vec::new();
    for (i, piece) in pieces.into_iter().enumerate() {
        let now = start + Duration::from_millis(i as u64);
        let result = s.handle_input(now, piece);
        s.check_invariants();
        while s.poll_transmit(&mut out) {
            out.clear();
        }
        while let Some(event) = s.poll_event() {
            if let SessionEvent::PublishRequested { .. } = event {
                s.accept_publish();
            }
        }
        if let Err(e) = result {
            // Failed for good: the same error again, no more events.
            assert_eq!(s.error(), Some(&e));
            assert!(s.is_closing());
            assert_eq!(s.handle_input(now, b"\x03more"), Err(e));
            assert!(s.poll_event().is_none());
            return;
        }
    }
    // An hour later the session has ended: failed on a timeout, or closed quietly after
    // the publisher's unpublish sequence.
    s.handle_timeout(start + Duration::from_secs(3600));
    assert!(s.error().is_some() || s.is_closing());
});
