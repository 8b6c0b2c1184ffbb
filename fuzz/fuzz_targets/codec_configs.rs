//! avcC, hvcC, av1C (and AV1 OBUs), AudioSpecificConfig and ADTS headers: parse, and
//! round-trip what can be written.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::{AacConfig, Av1Config, AvcConfig, HevcConfig, aac, av1, avc, hevc};

fuzz_target!(|data: &[u8]| {
    let bytes = Bytes::copy_from_slice(data);
    if let Ok(config) = AvcConfig::parse(bytes.clone()) {
        let _ = config.codec_string();
        // Rebuilt from its parameter sets, the record says the same.
        if let Ok(again) = AvcConfig::from_parameter_sets(&config.sps, &config.pps) {
            assert_eq!(again.sps, config.sps);
            assert_eq!(again.pps, config.pps);
        }
    }
    if let Ok(config) = HevcConfig::parse(bytes.clone()) {
        let _ = config.codec_string();
        let sets = |t| config.sets(t).cloned().collect::<Vec<_>>();
        // Rebuilt from its parameter sets, the record names the same stream.
        if let Ok(again) = HevcConfig::from_parameter_sets(
            &sets(hevc::NAL_VPS),
            &sets(hevc::NAL_SPS),
            &sets(hevc::NAL_PPS),
        ) {
            assert_eq!((again.width, again.height), (config.width, config.height));
        }
    }
    if let Ok(config) = Av1Config::parse(bytes.clone()) {
        let _ = config.codec_string();
        let again = Av1Config::from_sequence_header(&config.sequence_header)
            .expect("a parsed sequence header builds a record");
        assert_eq!((again.width, again.height), (config.width, config.height));
    }
    let _ = Av1Config::from_sequence_header(data);
    let stripped = av1::strip_temporal_delimiters(data);
    assert!(av1::obus(&stripped).all(|o| o.obu_type != av1::OBU_TEMPORAL_DELIMITER));
    let _ = av1::is_key_frame(data);
    let _ = hevc::has_irap(data, 4);
    if let Ok(config) = AacConfig::parse(bytes.clone()) {
        let _ = config.codec_string();
        let built = AacConfig::build(config.object_type, config.sample_rate, config.channels);
        if config.object_type < 31 && config.sample_rate < 1 << 24 {
            let again = AacConfig::parse(built.asc.clone()).expect("a built ASC parses");
            assert_eq!(
                (again.object_type, again.sample_rate, again.channels),
                (config.object_type, config.sample_rate, config.channels)
            );
        }
        if let Some(h) = aac::adts_header(&config, data.len()) {
            let (c, header_len, frame_len) = aac::parse_adts_header(&h).expect("our ADTS parses");
            assert_eq!((header_len, frame_len), (7, data.len() + 7));
            assert_eq!(
                (c.object_type, c.sample_rate, c.channels),
                (config.object_type, config.sample_rate, config.channels)
            );
        }
    }
    if let Some((config, header_len, frame_len)) = aac::parse_adts_header(data) {
        assert!(frame_len >= header_len);
        let _ = aac::adts_header(&config, frame_len - header_len);
    }
    // NAL unit framing of arbitrary access units.
    for size in [1, 2, 4] {
        let _ = avc::is_idr(data, size);
        let _ = avc::avcc_to_annexb(data, size).len();
    }
    let avcc = avc::annexb_to_avcc(data);
    let _ = avc::avcc_nalus(&avcc, 4).count();
});
