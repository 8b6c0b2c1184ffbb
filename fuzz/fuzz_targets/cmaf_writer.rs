//! The CMAF writer driven by an arbitrary frame sequence, cut into chunks: every chunk
//! reads back as written (sizes, durations, flags, offsets), the mdat holds exactly the
//! samples' bytes, and tfdt never goes back.
#![no_main]
use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::cmaf::{self, Sample, TrackFragment};

#[derive(Arbitrary, Debug)]
struct Frame {
    audio: bool,
    duration: u32,
    composition_offset: i32,
    keyframe: bool,
    len: u8,
    /// Close the chunk after this frame.
    cut: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    video: bool,
    audio_rate: u8,
    start: [u32; 2],
    frames: Vec<Frame>,
}

fuzz_target!(|input: Input| {
    if rivulet_fuzz::debug() {
        eprintln!("{input:#?}");
    }
    let rates = [8000, 22050, 44100, 48000, 96000];
    let rate = rates[usize::from(input.audio_rate) % rates.len()];
    let tracks = rivulet_fuzz::tracks(input.video, Some(rate));
    let init = cmaf::init_segment(&tracks).expect("init segment");
    assert!(u32::from_be_bytes([init[0], init[1], init[2], init[3]]) as usize <= init.len());

    // Per track: the next decode time.
    let mut next = [u64::from(input.start[0]), u64::from(input.start[1])];
    let mut last_tfdt = [None::<u64>, None];
    let mut pending: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    let mut sequence = 0u32;
    let n = input.frames.len();
    for (i, f) in input.frames.into_iter().enumerate() {
        let t = usize::from(f.audio || !input.video);
        pending[t].push(Sample {
            duration: f.duration,
            composition_offset: f.composition_offset,
            keyframe: f.keyframe,
            data: Bytes::from(vec![f.len; usize::from(f.len)]),
        });
        if !(f.cut || i + 1 == n) {
            continue;
        }
        let mut frags = Vec::new();
        for (t, samples) in pending.iter_mut().enumerate() {
            let base = next[t];
            next[t] += samples.iter().map(|s| u64::from(s.duration)).sum::<u64>();
            frags.push(TrackFragment {
                track_id: [cmaf::VIDEO_TRACK_ID, cmaf::AUDIO_TRACK_ID][t],
                base_media_decode_time: base,
                samples: std::mem::take(samples),
            });
        }
        sequence += 1;
        let chunk = cmaf::fragment(sequence, &frags).expect("fragment");
        let summary = cmaf::inspect_fragment(&chunk).expect("our chunk reads back");
        assert_eq!(summary.sequence_number, sequence);
        let written: Vec<&TrackFragment> = frags.iter().filter(|f| !f.samples.is_empty()).collect();
        assert_eq!(summary.tracks.len(), written.len());
        let mut payload = 0;
        for (s, w) in summary.tracks.iter().zip(&written) {
            assert_eq!(s.track_id, w.track_id);
            assert_eq!(s.base_media_decode_time, w.base_media_decode_time);
            let t = usize::from(w.track_id == cmaf::AUDIO_TRACK_ID);
            if let Some(prev) = last_tfdt[t] {
                assert!(s.base_media_decode_time >= prev, "tfdt went back");
            }
            last_tfdt[t] = Some(s.base_media_decode_time);
            assert_eq!(
                s.sizes,
                w.samples
                    .iter()
                    .map(|x| x.data.len() as u32)
                    .collect::<Vec<_>>()
            );
            assert_eq!(
                s.durations,
                w.samples.iter().map(|x| x.duration).collect::<Vec<_>>()
            );
            assert_eq!(
                s.keyframes,
                w.samples.iter().map(|x| x.keyframe).collect::<Vec<_>>()
            );
            assert_eq!(
                s.composition_offsets,
                w.samples
                    .iter()
                    .map(|x| i64::from(x.composition_offset))
                    .collect::<Vec<_>>()
            );
            payload += s.sizes.iter().map(|&x| x as usize).sum::<usize>();
        }
        assert_eq!(summary.mdat_len, payload);
        // The moof's size field plus the mdat's is the chunk.
        let moof_len = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) as usize;
        assert_eq!(moof_len + payload + 8, chunk.len());
    }
});
