//! A still picture of a stream: one H.264 keyframe decoded, scaled and encoded as a
//! JPEG (FFmpeg's decoder, swscale and MJPEG encoder). Blocking: call it off the
//! async runtime (`spawn_blocking`).

use ffmpeg_next as ff;
use media::AvcConfig;
use media::avc::avcc_to_annexb;

/// Widest thumbnail asked for, in pixels.
pub const MAX_THUMBNAIL_WIDTH: u32 = 1920;
/// Narrowest thumbnail asked for, in pixels.
pub const MIN_THUMBNAIL_WIDTH: u32 = 16;

/// Why no thumbnail was made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbnailError {
    #[error("the width must be between {MIN_THUMBNAIL_WIDTH} and {MAX_THUMBNAIL_WIDTH} pixels")]
    Width,
    /// The keyframe did not decode to a picture.
    #[error("the keyframe did not decode to a picture")]
    NoPicture,
    #[error("FFmpeg: {0}")]
    Ffmpeg(#[from] ff::Error),
}

/// The JPEG of one keyframe (`data` in AVCC form, as the hub carries it), `width`
/// pixels wide (the picture's own width if `None`), the height keeping the aspect
/// ratio.
pub fn keyframe_jpeg(
    avc: &AvcConfig,
    data: &[u8],
    width: Option<u32>,
) -> Result<Vec<u8>, ThumbnailError> {
    if width.is_some_and(|w| !(MIN_THUMBNAIL_WIDTH..=MAX_THUMBNAIL_WIDTH).contains(&w)) {
        return Err(ThumbnailError::Width);
    }
    ff::init()?;
    let codec = ff::decoder::find(ff::codec::Id::H264).ok_or(ff::Error::DecoderNotFound)?;
    let mut decoder = ff::codec::context::Context::new_with_codec(codec)
        .decoder()
        .video()?;
    // In-band parameter sets: the decoder needs no extradata.
    let mut annexb = Vec::with_capacity(data.len() + 64);
    for ps in avc.sps.iter().chain(avc.pps.iter()) {
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(ps);
    }
    annexb.extend_from_slice(&avcc_to_annexb(data, avc.nal_length_size));
    let mut packet = ff::Packet::copy(&annexb);
    packet.set_flags(ff::codec::packet::Flags::KEY);
    packet.set_pts(Some(0));
    packet.set_dts(Some(0));
    decoder.send_packet(&packet)?;
    decoder.send_eof()?;
    let mut picture = ff::frame::Video::empty();
    decoder
        .receive_frame(&mut picture)
        .map_err(|_| ThumbnailError::NoPicture)?;

    let out_w = width.unwrap_or(picture.width()).max(2) & !1;
    let out_h = ((u64::from(out_w) * u64::from(picture.height())
        / u64::from(picture.width().max(1)))
    .max(2) as u32)
        & !1;
    let mut scaler = ff::software::scaling::Context::get(
        picture.format(),
        picture.width(),
        picture.height(),
        ff::format::Pixel::YUVJ420P,
        out_w,
        out_h,
        ff::software::scaling::Flags::AREA,
    )?;
    let mut scaled = ff::frame::Video::empty();
    scaler.run(&picture, &mut scaled)?;
    scaled.set_pts(Some(0));

    let codec = ff::encoder::find(ff::codec::Id::MJPEG).ok_or(ff::Error::EncoderNotFound)?;
    let mut encoder = ff::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()?;
    encoder.set_width(out_w);
    encoder.set_height(out_h);
    encoder.set_format(ff::format::Pixel::YUVJ420P);
    encoder.set_time_base(ff::Rational::new(1, 25));
    // About 1.5 bits a pixel for the one picture (the rate is per second at 25 fps).
    encoder.set_bit_rate((out_w as usize * out_h as usize * 3 / 2) * 25);
    let mut encoder = encoder.open_as(codec)?;
    encoder.send_frame(&scaled)?;
    encoder.send_eof()?;
    let mut jpeg = ff::Packet::empty();
    encoder
        .receive_packet(&mut jpeg)
        .map_err(|_| ThumbnailError::NoPicture)?;
    Ok(jpeg.data().map(<[u8]>::to_vec).unwrap_or_default())
}
