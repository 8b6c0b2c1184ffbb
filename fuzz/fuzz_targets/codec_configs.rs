//! avcC, AudioSpecificConfig and ADTS headers: parse, and round-trip what can be written.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use media::{AacConfig, AvcConfig, aac, avc};

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
