//! FLV video/audio tag bodies (legacy and Enhanced RTMP), FLV file/tag headers, and the
//! ingest assembler fed tags with arbitrary timestamps.
#![no_main]
use arbitrary::Arbitrary;
use bytes::Bytes;
use ingest::{Assembled, StreamAssembler};
use libfuzzer_sys::fuzz_target;
use media::flv;

#[derive(Arbitrary, Debug)]
enum Tag {
    Video(u32, Vec<u8>),
    Audio(u32, Vec<u8>),
    Metadata(Vec<u8>),
    File(Vec<u8>),
}

fuzz_target!(|tags: Vec<Tag>| {
    if rivulet_fuzz::debug() {
        eprintln!("{tags:#?}");
    }
    let mut assembler = StreamAssembler::new();
    let mut out = Vec::new();
    let mut last_video = None;
    for tag in tags {
        match tag {
            Tag::Video(ts, body) => {
                let body = Bytes::from(body);
                if let Ok(tag) = flv::parse_video_tag(body.clone()) {
                    // What parses as legacy AVC writes back to the same packet.
                    if let flv::VideoPacket::AvcNalus { .. }
                    | flv::VideoPacket::AvcSequenceHeader(_) = tag.packet
                    {
                        if body[0] & 0x80 == 0 {
                            let mut w = Vec::new();
                            flv::write_video_tag(tag.frame_type, &tag.packet, &mut w);
                            assert_eq!(flv::parse_video_tag(Bytes::from(w)), Ok(tag));
                        }
                    }
                }
                let _ = assembler.handle_video(ts, body, &mut out);
            }
            Tag::Audio(ts, body) => {
                let body = Bytes::from(body);
                if let Ok(
                    p @ (flv::AudioPacket::AacRaw(_) | flv::AudioPacket::AacSequenceHeader(_)),
                ) = flv::parse_audio_tag(body.clone())
                {
                    let mut w = Vec::new();
                    flv::write_audio_tag(&p, &mut w);
                    assert_eq!(flv::parse_audio_tag(Bytes::from(w)), Ok(p));
                }
                let _ = assembler.handle_audio(ts, body, &mut out);
            }
            Tag::Metadata(body) => {
                if let Ok((_, values)) = flv::parse_script_data(&body) {
                    if let Some(v) = values.first() {
                        assembler.handle_metadata(v);
                    }
                }
            }
            Tag::File(data) => {
                let data = Bytes::from(data);
                let _ = flv::parse_file_header(&data);
                if let Some(h) = flv::parse_tag_header(&data) {
                    let mut w = Vec::new();
                    flv::write_tag_header(&h, &mut w);
                    assert_eq!(flv::parse_tag_header(&w), Some(h));
                }
                let _ = flv::file_tags(&data);
            }
        }
        // Video frames come out in decode order.
        for a in out.drain(..) {
            if let Assembled::Frame(f) = a {
                if f.kind == media::TrackKind::Video {
                    if let Some(prev) = last_video {
                        assert!(
                            f.dts.ticks > prev,
                            "video dts {} after {}",
                            f.dts.ticks,
                            prev
                        );
                    }
                    last_video = Some(f.dts.ticks);
                }
            }
        }
    }
});
