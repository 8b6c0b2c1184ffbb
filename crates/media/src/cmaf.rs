//! The CMAF / fragmented-MP4 writer (ISO/IEC 23000-19, ISO/IEC 14496-12), on top of
//! `mp4-atom`'s box types.
//!
//! - [`init_segment`]: `ftyp` + `moov` for the tracks of a rendition (video is track
//!   [`VIDEO_TRACK_ID`], audio [`AUDIO_TRACK_ID`], present or not).
//! - [`fragment`]: one CMAF chunk, `moof` + `mdat`, with one `traf` per track.
//!
//! The writer serialises what it is given: durations, base times and offsets are
//! computed by the packager.

use bytes::Bytes;
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Atom, Audio, Av01, Av1c, Avc1, Avcc, Codec, Dinf, Dref, Encode, Esds, FourCC, Ftyp, Hdlr, Hvc1,
    Hvcc, Mdhd, Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsc, Stsd, Stsz,
    Stts, Tfdt, Tfhd, Tkhd, Traf, Trak, Trex, Trun, TrunEntry, Url, Visual, Vmhd,
};

use crate::frame::TrackKind;
use crate::track::{CodecConfig, Track, Tracks};

pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;

/// The track id of a kind in every Rivulet fMP4 stream.
pub fn track_id(kind: TrackKind) -> u32 {
    match kind {
        TrackKind::Video => VIDEO_TRACK_ID,
        TrackKind::Audio => AUDIO_TRACK_ID,
    }
}

/// Why a box could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CmafError {
    #[error("no tracks to describe")]
    NoTracks,
    #[error("{0}: {1}")]
    Box(&'static str, mp4_atom::Error),
    #[error("mdat of {0} bytes does not fit a 32-bit box")]
    TooLarge(usize),
    #[error("{0} is not packaged in CMAF (the transcoder turns it into AAC)")]
    Unsupported(&'static str),
}

/// One sample of a track fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// In the track's timescale.
    pub duration: u32,
    /// `pts - dts`, in the track's timescale.
    pub composition_offset: i32,
    pub keyframe: bool,
    pub data: Bytes,
}

/// The samples of one track in one chunk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackFragment {
    pub track_id: u32,
    /// `tfdt`: the decode time of the first sample, in the track's timescale.
    pub base_media_decode_time: u64,
    pub samples: Vec<Sample>,
}

/// `ftyp` + `moov` describing `tracks`.
pub fn init_segment(tracks: &Tracks) -> Result<Bytes, CmafError> {
    if tracks.video.is_none() && tracks.audio.is_none() {
        return Err(CmafError::NoTracks);
    }
    let ftyp = Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands: vec![
            FourCC::new(b"iso6"),
            FourCC::new(b"cmfc"),
            FourCC::new(b"mp41"),
        ],
    };
    let mut trak = Vec::new();
    let mut trex = Vec::new();
    for track in tracks.iter() {
        let id = track_id(track.kind);
        trak.push(trak_for(track, id)?);
        trex.push(Trex {
            track_id: id,
            default_sample_description_index: 1,
            ..Default::default()
        });
    }
    let moov = Moov {
        mvhd: Mvhd {
            timescale: 1000,
            rate: 1.into(),
            volume: 1.into(),
            next_track_id: 3,
            ..Default::default()
        },
        mvex: Some(Mvex { mehd: None, trex }),
        trak,
        ..Default::default()
    };
    let mut out = Vec::new();
    ftyp.encode(&mut out)
        .map_err(|e| CmafError::Box("ftyp", e))?;
    moov.encode(&mut out)
        .map_err(|e| CmafError::Box("moov", e))?;
    Ok(Bytes::from(out))
}

/// The visual sample entry fields of a picture size.
fn visual(width: u32, height: u32) -> Visual {
    Visual {
        data_reference_index: 1,
        width: width.min(u32::from(u16::MAX)) as u16,
        height: height.min(u32::from(u16::MAX)) as u16,
        horizresolution: 72.into(),
        vertresolution: 72.into(),
        frame_count: 1,
        compressor: "".into(),
        depth: 24,
    }
}

fn trak_for(track: &Track, id: u32) -> Result<Trak, CmafError> {
    let (handler, codec, width, height, minf_media) = match &track.codec {
        CodecConfig::Mp3(_) => return Err(CmafError::Unsupported("MP3")),
        CodecConfig::Opus(_) => return Err(CmafError::Unsupported("Opus")),
        CodecConfig::Avc(avc) => {
            let avcc =
                Avcc::decode_body(&mut &avc.record[..]).map_err(|e| CmafError::Box("avcC", e))?;
            let codec = Codec::Avc1(Avc1 {
                visual: visual(avc.width, avc.height),
                avcc,
                ..Default::default()
            });
            (b"vide", codec, avc.width, avc.height, true)
        }
        CodecConfig::Hevc(hevc) => {
            let hvcc =
                Hvcc::decode_body(&mut &hevc.record[..]).map_err(|e| CmafError::Box("hvcC", e))?;
            // `hvc1`: the parameter sets are in the sample entry (CMAF, HLS, and what
            // Safari and Chrome expect).
            let codec = Codec::Hvc1(Hvc1 {
                visual: visual(hevc.width, hevc.height),
                hvcc,
                ..Default::default()
            });
            (b"vide", codec, hevc.width, hevc.height, true)
        }
        CodecConfig::Av1(av1) => {
            let av1c =
                Av1c::decode_body(&mut &av1.record[..]).map_err(|e| CmafError::Box("av1C", e))?;
            let codec = Codec::Av01(Av01 {
                visual: visual(av1.width, av1.height),
                av1c,
                ..Default::default()
            });
            (b"vide", codec, av1.width, av1.height, true)
        }
        CodecConfig::Aac(aac) => {
            let esds = Esds {
                es_desc: EsDescriptor {
                    es_id: id as u16,
                    dec_config: DecoderConfig {
                        object_type_indication: 0x40,
                        stream_type: 5,
                        up_stream: 0,
                        dec_specific: Some(DecoderSpecific {
                            profile: 0,
                            freq_index: 0,
                            chan_conf: 0,
                            raw: aac.asc.to_vec(),
                        }),
                        ..Default::default()
                    },
                    sl_config: SLConfig::default(),
                    ..Default::default()
                },
            };
            let audio = Audio {
                data_reference_index: 1,
                channel_count: u16::from(aac.channels),
                sample_size: 16,
                // 16.16 fixed point; rates above 65535 Hz do not fit and are written as 0
                // (the AudioSpecificConfig carries the real rate).
                sample_rate: u16::try_from(aac.sample_rate).unwrap_or(0).into(),
            };
            let codec = Codec::Mp4a(Mp4a {
                audio,
                esds,
                btrt: None,
                taic: None,
            });
            (b"soun", codec, 0, 0, false)
        }
    };
    Ok(Trak {
        tkhd: Tkhd {
            track_id: id,
            enabled: true,
            in_movie: true,
            volume: if minf_media { 0.into() } else { 1.into() },
            width: (width.min(u32::from(u16::MAX)) as u16).into(),
            height: (height.min(u32::from(u16::MAX)) as u16).into(),
            ..Default::default()
        },
        mdia: Mdia {
            mdhd: Mdhd {
                timescale: track.timescale.get(),
                language: "und".into(),
                ..Default::default()
            },
            hdlr: Hdlr {
                handler: handler.into(),
                name: "Rivulet".into(),
            },
            minf: Minf {
                vmhd: minf_media.then(Vmhd::default),
                smhd: (!minf_media).then(Smhd::default),
                dinf: Dinf {
                    dref: Dref {
                        entries: vec![Url::default().into()],
                    },
                },
                stbl: Stbl {
                    stsd: Stsd {
                        codecs: vec![codec],
                    },
                    stts: Stts::default(),
                    stsc: Stsc::default(),
                    stsz: Stsz::default(),
                    stco: Some(Stco::default()),
                    ..Default::default()
                },
                ..Default::default()
            },
        },
        ..Default::default()
    })
}

/// One CMAF chunk: `moof` + `mdat`. Tracks with no samples are left out.
pub fn fragment(sequence_number: u32, tracks: &[TrackFragment]) -> Result<Bytes, CmafError> {
    let tracks: Vec<&TrackFragment> = tracks.iter().filter(|t| !t.samples.is_empty()).collect();
    let payload: usize = tracks
        .iter()
        .flat_map(|t| &t.samples)
        .map(|s| s.data.len())
        .sum();
    let mdat_len = payload + 8;
    if u32::try_from(mdat_len).is_err() {
        return Err(CmafError::TooLarge(mdat_len));
    }
    // The data offsets depend on the size of the moof, which does not depend on their
    // values: encode once with zero offsets to measure it, then for real.
    let mut moof = build_moof(sequence_number, &tracks, 0);
    let mut measure = Vec::new();
    moof.encode(&mut measure)
        .map_err(|e| CmafError::Box("moof", e))?;
    let moof_len = measure.len();
    moof = build_moof(sequence_number, &tracks, moof_len + 8);
    let mut out = Vec::with_capacity(moof_len + mdat_len);
    moof.encode(&mut out)
        .map_err(|e| CmafError::Box("moof", e))?;
    debug_assert_eq!(out.len(), moof_len);
    out.extend_from_slice(&(mdat_len as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    for sample in tracks.iter().flat_map(|t| &t.samples) {
        out.extend_from_slice(&sample.data);
    }
    Ok(Bytes::from(out))
}

fn build_moof(sequence_number: u32, tracks: &[&TrackFragment], first_data_offset: usize) -> Moof {
    let mut offset = first_data_offset;
    let traf = tracks
        .iter()
        .map(|t| {
            let entries = t
                .samples
                .iter()
                .map(|s| TrunEntry {
                    duration: Some(s.duration),
                    size: Some(s.data.len() as u32),
                    flags: Some(sample_flags(s.keyframe)),
                    cts: Some(i64::from(s.composition_offset)),
                })
                .collect::<Vec<_>>();
            let trun = Trun {
                data_offset: Some(offset as i32),
                samples: entries.into(),
            };
            offset += t.samples.iter().map(|s| s.data.len()).sum::<usize>();
            Traf {
                tfhd: Tfhd {
                    track_id: t.track_id,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: t.base_media_decode_time,
                }),
                trun: vec![trun],
                ..Default::default()
            }
        })
        .collect();
    Moof {
        mfhd: Mfhd { sequence_number },
        traf,
    }
}

/// ISO/IEC 14496-12 §8.8.3.1 sample flags.
fn sample_flags(keyframe: bool) -> u32 {
    if keyframe {
        // sample_depends_on = 2 (depends on no other sample)
        0x0200_0000
    } else {
        // sample_depends_on = 1, sample_is_non_sync_sample = 1
        0x0101_0000
    }
}

/// What a chunk says, read back (for tests and diagnostics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentSummary {
    pub sequence_number: u32,
    /// Per track: (track id, tfdt, sample durations, keyframe flags, composition offsets).
    pub tracks: Vec<TrackSummary>,
    pub mdat_len: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackSummary {
    pub track_id: u32,
    pub base_media_decode_time: u64,
    pub durations: Vec<u32>,
    pub keyframes: Vec<bool>,
    pub composition_offsets: Vec<i64>,
    pub sizes: Vec<u32>,
}

/// Decodes one `moof` + `mdat`.
pub fn inspect_fragment(bytes: &[u8]) -> Result<FragmentSummary, CmafError> {
    use mp4_atom::Decode;
    let mut buf = bytes;
    let moof = Moof::decode(&mut buf).map_err(|e| CmafError::Box("moof", e))?;
    let mdat = mp4_atom::Mdat::decode(&mut buf).map_err(|e| CmafError::Box("mdat", e))?;
    let tracks = moof
        .traf
        .iter()
        .map(|t| {
            let samples: Vec<TrunEntry> = t.trun.iter().flat_map(|r| r.samples.iter()).collect();
            TrackSummary {
                track_id: t.tfhd.track_id,
                base_media_decode_time: t.tfdt.as_ref().map_or(0, |d| d.base_media_decode_time),
                durations: samples.iter().map(|s| s.duration.unwrap_or(0)).collect(),
                keyframes: samples
                    .iter()
                    .map(|s| s.flags.is_some_and(|f| f & 0x0001_0000 == 0))
                    .collect(),
                composition_offsets: samples.iter().map(|s| s.cts.unwrap_or(0)).collect(),
                sizes: samples.iter().map(|s| s.size.unwrap_or(0)).collect(),
            }
        })
        .collect();
    Ok(FragmentSummary {
        sequence_number: moof.mfhd.sequence_number,
        tracks,
        mdat_len: mdat.data.len(),
    })
}

/// The first H.264 keyframe of a CMAF segment, with the decoder configuration of its
/// init segment: what a still picture of the segment is painted from. `init` is
/// `ftyp` + `moov`, `fragment` one `moof` + `mdat` (a chunk). `Ok(None)` when the video
/// track is not H.264 or the chunk has no video keyframe.
pub fn first_avc_keyframe(
    init: &[u8],
    fragment: &[u8],
) -> Result<Option<(crate::AvcConfig, Bytes)>, CmafError> {
    use mp4_atom::Decode;
    let mut buf = init;
    Ftyp::decode(&mut buf).map_err(|e| CmafError::Box("ftyp", e))?;
    let moov = Moov::decode(&mut buf).map_err(|e| CmafError::Box("moov", e))?;
    let avcc = moov
        .trak
        .iter()
        .filter(|t| t.tkhd.track_id == VIDEO_TRACK_ID)
        .flat_map(|t| t.mdia.minf.stbl.stsd.codecs.iter())
        .find_map(|c| match c {
            Codec::Avc1(avc1) => Some(&avc1.avcc),
            _ => None,
        });
    let Some(avcc) = avcc else {
        return Ok(None);
    };
    let mut record = Vec::new();
    avcc.encode_body(&mut record)
        .map_err(|e| CmafError::Box("avcC", e))?;
    let Ok(config) = crate::AvcConfig::parse(Bytes::from(record)) else {
        return Ok(None);
    };
    let mut buf = fragment;
    let moof = Moof::decode(&mut buf).map_err(|e| CmafError::Box("moof", e))?;
    let Some(traf) = moof.traf.iter().find(|t| t.tfhd.track_id == VIDEO_TRACK_ID) else {
        return Ok(None);
    };
    // Our chunks' data offsets count from the start of the moof (default-base-is-moof).
    for trun in &traf.trun {
        let mut offset = usize::try_from(trun.data_offset.unwrap_or(0)).unwrap_or(usize::MAX);
        for sample in &trun.samples {
            let size = sample.size.unwrap_or(0) as usize;
            let keyframe = sample.flags.is_some_and(|f| f & 0x0001_0000 == 0);
            if keyframe {
                return Ok(fragment
                    .get(offset..offset.saturating_add(size))
                    .map(|data| (config.clone(), Bytes::copy_from_slice(data))));
            }
            offset = offset.saturating_add(size);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use mp4_atom::Decode;

    use super::*;
    use crate::{AacConfig, AvcConfig};

    const SPS: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0xfb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00,
        0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
    ];
    const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0];

    fn tracks() -> Tracks {
        let avc =
            AvcConfig::from_parameter_sets(&[Bytes::from_static(SPS)], &[Bytes::from_static(PPS)])
                .expect("avc");
        Tracks {
            video: Some(Track {
                kind: TrackKind::Video,
                timescale: crate::VIDEO_TIMESCALE,
                codec: CodecConfig::Avc(avc),
            }),
            audio: Some(Track {
                kind: TrackKind::Audio,
                timescale: NonZeroU32::new(48_000).expect("non-zero"),
                codec: CodecConfig::Aac(AacConfig::build(2, 48_000, 2)),
            }),
        }
    }

    #[test]
    fn first_avc_keyframe_is_found_in_a_chunk() {
        let init = init_segment(&tracks()).expect("init");
        let video = TrackFragment {
            track_id: VIDEO_TRACK_ID,
            base_media_decode_time: 0,
            samples: vec![
                Sample {
                    duration: 3000,
                    composition_offset: 0,
                    keyframe: false,
                    data: Bytes::from_static(b"PPPP"),
                },
                Sample {
                    duration: 3000,
                    composition_offset: 0,
                    keyframe: true,
                    data: Bytes::from_static(b"KEYFRAME"),
                },
            ],
        };
        let audio = TrackFragment {
            track_id: AUDIO_TRACK_ID,
            base_media_decode_time: 0,
            samples: vec![Sample {
                duration: 1024,
                composition_offset: 0,
                keyframe: true,
                data: Bytes::from_static(b"AAC"),
            }],
        };
        let chunk = fragment(1, &[audio, video]).expect("fragment");
        let (avc, data) = first_avc_keyframe(&init, &chunk)
            .expect("parses")
            .expect("a keyframe");
        assert_eq!(&data[..], b"KEYFRAME");
        assert_eq!(&avc.sps[0][..], SPS);
        let no_key = fragment(
            2,
            &[TrackFragment {
                track_id: VIDEO_TRACK_ID,
                base_media_decode_time: 0,
                samples: vec![Sample {
                    duration: 3000,
                    composition_offset: 0,
                    keyframe: false,
                    data: Bytes::from_static(b"PPPP"),
                }],
            }],
        )
        .expect("fragment");
        assert_eq!(first_avc_keyframe(&init, &no_key).expect("parses"), None);
        assert!(first_avc_keyframe(b"junk", &chunk).is_err());
    }

    #[test]
    fn init_segment_round_trips() {
        let bytes = init_segment(&tracks()).expect("init");
        let mut buf = &bytes[..];
        let ftyp = Ftyp::decode(&mut buf).expect("ftyp");
        assert_eq!(ftyp.major_brand, FourCC::new(b"iso6"));
        let moov = Moov::decode(&mut buf).expect("moov");
        assert!(buf.is_empty());
        assert_eq!(moov.trak.len(), 2);
        let video = &moov.trak[0];
        assert_eq!(video.tkhd.track_id, VIDEO_TRACK_ID);
        assert_eq!(video.mdia.mdhd.timescale, 90_000);
        match &video.mdia.minf.stbl.stsd.codecs[0] {
            Codec::Avc1(avc1) => {
                assert_eq!((avc1.visual.width, avc1.visual.height), (320, 240));
                assert_eq!(avc1.avcc.sequence_parameter_sets[0], SPS);
            }
            other => panic!("expected avc1, got {other:?}"),
        }
        let audio = &moov.trak[1];
        assert_eq!(audio.mdia.mdhd.timescale, 48_000);
        match &audio.mdia.minf.stbl.stsd.codecs[0] {
            Codec::Mp4a(mp4a) => {
                let dsi = mp4a
                    .esds
                    .es_desc
                    .dec_config
                    .dec_specific
                    .as_ref()
                    .expect("dsi");
                assert_eq!(dsi.raw, vec![0x11, 0x90]);
                assert_eq!(mp4a.audio.channel_count, 2);
            }
            other => panic!("expected mp4a, got {other:?}"),
        }
        assert_eq!(moov.mvex.expect("mvex").trex.len(), 2);
    }

    #[test]
    fn fragment_round_trips_with_negative_offsets_and_points_at_its_data() {
        let video = TrackFragment {
            track_id: VIDEO_TRACK_ID,
            base_media_decode_time: 1 << 40,
            samples: vec![
                Sample {
                    duration: 3000,
                    composition_offset: 6000,
                    keyframe: true,
                    data: Bytes::from_static(b"AAAA"),
                },
                Sample {
                    duration: 3000,
                    composition_offset: -3000,
                    keyframe: false,
                    data: Bytes::from_static(b"BB"),
                },
            ],
        };
        let audio = TrackFragment {
            track_id: AUDIO_TRACK_ID,
            base_media_decode_time: 96_000,
            samples: vec![Sample {
                duration: 1024,
                composition_offset: 0,
                keyframe: true,
                data: Bytes::from_static(b"CCC"),
            }],
        };
        let empty = TrackFragment {
            track_id: 9,
            base_media_decode_time: 0,
            samples: vec![],
        };
        let bytes = fragment(7, &[video, audio, empty]).expect("fragment");
        let summary = inspect_fragment(&bytes).expect("decodes");
        assert_eq!(summary.sequence_number, 7);
        assert_eq!(summary.tracks.len(), 2);
        assert_eq!(summary.tracks[0].base_media_decode_time, 1 << 40);
        assert_eq!(summary.tracks[0].composition_offsets, vec![6000, -3000]);
        assert_eq!(summary.tracks[0].keyframes, vec![true, false]);
        assert_eq!(summary.tracks[1].durations, vec![1024]);
        assert_eq!(summary.mdat_len, 9);
        // The data offsets (from the start of the moof) point at each track's bytes.
        let moof = Moof::decode(&mut &bytes[..]).expect("moof");
        let at = |i: usize| moof.traf[i].trun[0].data_offset.expect("offset") as usize;
        assert_eq!(&bytes[at(0)..at(0) + 6], b"AAAABB");
        assert_eq!(&bytes[at(1)..at(1) + 3], b"CCC");
    }
}
