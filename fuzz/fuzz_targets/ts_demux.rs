//! The MPEG-TS demuxer fed arbitrary bytes at arbitrary split points: it never panics,
//! and within one program map its frames keep decode order per track.
#![no_main]
use libfuzzer_sys::fuzz_target;
use media::TrackKind;
use ts::{DemuxEvent, Demuxer, PACKET_LEN, SYNC_BYTE};

fuzz_target!(|data: &[u8]| {
    let (pieces, stream) = rivulet_fuzz::split(data);
    // Half the inputs as they are; the other half with every 188th byte a sync byte,
    // so the fuzzer reaches the PSI and PES layers instead of the resync loop.
    let aligned: Vec<u8>;
    let pieces = if stream.first().is_some_and(|b| b & 1 == 1) {
        let mut bytes = stream.to_vec();
        for packet in bytes.chunks_mut(PACKET_LEN) {
            packet[0] = SYNC_BYTE;
        }
        aligned = bytes;
        vec![&aligned[..]]
    } else {
        pieces
    };
    let mut demuxer = Demuxer::new();
    let mut last = [None::<i64>; 2];
    let mut check = |demuxer: &mut Demuxer| {
        while let Some(event) = demuxer.poll_event() {
            match event {
                DemuxEvent::Program(_) => last = [None, None],
                // A new AAC configuration may count in another sample rate.
                DemuxEvent::Tracks(_) => last[1] = None,
                DemuxEvent::Frame(f) => {
                    let i = usize::from(f.kind == TrackKind::Audio);
                    if let Some(prev) = last[i] {
                        assert!(
                            f.dts.ticks > prev,
                            "{:?} dts {} after {prev}",
                            f.kind,
                            f.dts.ticks
                        );
                    }
                    last[i] = Some(f.dts.ticks);
                    assert!(f.pts.ticks >= f.dts.ticks);
                }
                _ => {}
            }
        }
    };
    for piece in pieces {
        demuxer.push(piece);
        check(&mut demuxer);
    }
    demuxer.finish();
    check(&mut demuxer);
});
