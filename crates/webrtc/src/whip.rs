//! One WHIP publisher: offer → answer, ICE-lite on the caller's socket, media in.
//!
//! str0m depacketises the RTP into whole access units (`Event::MediaData`); this module
//! turns them into the hub's frames: H.264 from Annex B to length-prefixed NAL units
//! (as in avcC, what RTMP brings) with the decoder configuration built from the SPS and
//! PPS carried in-band, Opus packets as they are (the caller transcodes them to AAC).
//! RTP timestamps become media time on one timeline for both tracks: each track is
//! anchored at the arrival of its first packet, then follows its RTP clock (90 kHz
//! video, 48 kHz Opus).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use media::{AvcConfig, Frame, MediaTime, TrackKind};
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, MediaKind, Mid};
use str0m::{Event, IceConnectionState, Rtc};

use crate::peer::Transport;
use crate::session::{OfferError, SessionOutput, WhepConfig};

/// Keyframe requests (PLI) while waiting for one, at most this often.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
use media::opus::OPUS_RATE;

/// What a publisher's media became.
#[derive(Debug)]
pub enum WhipEvent {
    /// The H.264 decoder configuration (first, and whenever the SPS/PPS change): the
    /// video frames that follow are for it.
    VideoConfig(AvcConfig),
    /// One H.264 access unit (length-prefixed NAL units, 4-byte lengths), 90 kHz.
    Video(Frame),
    /// One Opus packet, 48 kHz.
    Opus(Frame),
}

/// Places one track's RTP times on the session's timeline.
#[derive(Debug)]
struct Timeline {
    rate: NonZeroU32,
    /// The first RTP time (extended, str0m's) and its media time.
    anchor: Option<(u64, i64)>,
    last: Option<i64>,
}

impl Timeline {
    fn new(rate: NonZeroU32) -> Self {
        Self {
            rate,
            anchor: None,
            last: None,
        }
    }

    /// The media time of RTP time `rtp` (at `rate`) that arrived `since_start` after
    /// the session's first media; `None` for time that goes back.
    fn place(&mut self, rtp: u64, since_start: Duration) -> Option<MediaTime> {
        let rate = u64::from(self.rate.get());
        let (first, base) = *self.anchor.get_or_insert_with(|| {
            let base = since_start.as_nanos() * u128::from(rate) / 1_000_000_000;
            (rtp, i64::try_from(base).unwrap_or(0))
        });
        let delta = i64::try_from(rtp.checked_sub(first)?).ok()?;
        let ticks = base.checked_add(delta)?;
        if self.last.is_some_and(|l| ticks < l) {
            return None;
        }
        self.last = Some(ticks);
        Some(MediaTime::new(ticks, self.rate))
    }
}

/// One publisher's WebRTC session.
pub struct WhipSession {
    rtc: Rtc,
    video: Option<Mid>,
    audio: Option<Mid>,
    connected: bool,
    created: Instant,
    /// The arrival of the first media: media time 0.
    start: Option<Instant>,
    video_time: Timeline,
    audio_time: Timeline,
    config: Option<AvcConfig>,
    /// No video is passed on until a keyframe: at the start, after a loss.
    waiting_for_keyframe: bool,
    last_keyframe_request: Option<Instant>,
    events: VecDeque<WhipEvent>,
}

impl WhipSession {
    /// Answers a publisher's `offer` (SDP text), which must send H.264 video; Opus
    /// audio is taken if offered. Other codecs are declined in the answer.
    pub fn answer(
        config: &WhepConfig,
        offer: &str,
        now: Instant,
    ) -> Result<(Self, String), OfferError> {
        let (rtc, answer) = crate::peer::accept_offer(config, config.builder(), offer, now)?;
        let (video_rate, audio_rate) = match (NonZeroU32::new(90_000), NonZeroU32::new(OPUS_RATE)) {
            (Some(v), Some(a)) => (v, a),
            _ => return Err(OfferError::Rejected("no clock rate".into())),
        };
        let session = Self {
            rtc,
            video: None,
            audio: None,
            connected: false,
            created: now,
            start: None,
            video_time: Timeline::new(video_rate),
            audio_time: Timeline::new(audio_rate),
            config: None,
            waiting_for_keyframe: true,
            last_keyframe_request: None,
            events: VecDeque::new(),
        };
        Ok((session, answer))
    }

    /// Whether the datagram belongs to this session (ICE ufrag, DTLS/SRTP peer).
    pub fn accepts(
        &self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) -> bool {
        crate::peer::receive(now, transport, source, destination, data)
            .is_some_and(|i| self.rtc.accepts(&i))
    }

    /// Handles a datagram [accepted](Self::accepts) for this session.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        transport: Transport,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        crate::peer::handle_datagram(&mut self.rtc, now, transport, source, destination, data);
    }

    /// Moves time forward.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !crate::peer::in_time(&mut self.rtc, self.connected, self.created, now) {
            return;
        }
        self.request_keyframe_if_waiting(now);
        crate::peer::handle_timeout(&mut self.rtc, now);
    }

    /// The next thing to do; call until it is a `Timeout` or `Closed`.
    /// Media found on the way is queued for [`Self::poll_event`].
    pub fn poll_output(&mut self) -> SessionOutput {
        loop {
            match crate::peer::poll(&mut self.rtc) {
                crate::peer::Polled::Output(out) => return out,
                crate::peer::Polled::Event(event) => {
                    if let Some(out) = self.handle_event(event) {
                        return out;
                    }
                }
            }
        }
    }

    /// Media that arrived, in order.
    pub fn poll_event(&mut self) -> Option<WhipEvent> {
        self.events.pop_front()
    }

    fn handle_event(&mut self, event: Event) -> Option<SessionOutput> {
        match event {
            Event::Connected => {
                self.connected = true;
                self.request_keyframe_if_waiting(Instant::now());
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                // ICE-lite: the publisher stopped its consent checks (RFC 7675).
                self.rtc.disconnect();
                return Some(SessionOutput::Closed);
            }
            Event::MediaAdded(added) => match added.kind {
                MediaKind::Video if self.video.is_none() => self.video = Some(added.mid),
                MediaKind::Audio if self.audio.is_none() => self.audio = Some(added.mid),
                _ => {}
            },
            Event::MediaData(data) => self.handle_media(data),
            _ => {}
        }
        None
    }

    fn handle_media(&mut self, data: MediaData) {
        let start = *self.start.get_or_insert(data.network_time);
        let since_start = data.network_time.saturating_duration_since(start);
        let codec = data.params.spec().codec;
        if Some(data.mid) == self.video && codec == Codec::H264 {
            self.handle_video(&data, since_start);
        } else if Some(data.mid) == self.audio && codec == Codec::Opus {
            let Some(t) = self
                .audio_time
                .place(rtp_ticks(&data, OPUS_RATE), since_start)
            else {
                return;
            };
            self.events.push_back(WhipEvent::Opus(Frame {
                kind: TrackKind::Audio,
                dts: t,
                pts: t,
                keyframe: true,
                // Shares str0m's depacketised payload (an `Arc`) instead of copying it.
                data: Bytes::from_owner(data.data),
            }));
        }
    }

    fn handle_video(&mut self, data: &MediaData, since_start: Duration) {
        if !data.contiguous && !self.waiting_for_keyframe {
            // Packets were lost that str0m could not recover: the pictures that follow
            // refer to a missing one. Wait for (and ask for) a keyframe.
            self.waiting_for_keyframe = true;
            self.last_keyframe_request = None;
        }
        let Some(t) = self.video_time.place(rtp_ticks(data, 90_000), since_start) else {
            return;
        };
        let unit = match assemble(&data.data) {
            Ok(unit) => unit,
            Err(e) => {
                tracing::debug!(error = %e, "WHIP video frame dropped");
                self.waiting_for_keyframe = true;
                return;
            }
        };
        if let Some(config) = unit.config
            && self.config.as_ref() != Some(&config)
        {
            self.config = Some(config.clone());
            self.events.push_back(WhipEvent::VideoConfig(config));
        }
        if self.config.is_none() || unit.data.is_empty() {
            return;
        }
        if self.waiting_for_keyframe {
            if !unit.keyframe {
                self.request_keyframe_if_waiting(Instant::now());
                return;
            }
            self.waiting_for_keyframe = false;
        }
        self.events.push_back(WhipEvent::Video(Frame {
            kind: TrackKind::Video,
            dts: t,
            pts: t,
            keyframe: unit.keyframe,
            data: unit.data,
        }));
    }

    /// Asks the publisher for a keyframe (PLI), at most every half second while one
    /// is wanted.
    fn request_keyframe_if_waiting(&mut self, now: Instant) {
        if !self.waiting_for_keyframe || !self.connected {
            return;
        }
        if self
            .last_keyframe_request
            .is_some_and(|t| now.saturating_duration_since(t) < KEYFRAME_REQUEST_INTERVAL)
        {
            return;
        }
        let Some(mid) = self.video else { return };
        let Some(mut writer) = self.rtc.writer(mid) else {
            return;
        };
        if writer.is_request_keyframe_possible(KeyframeRequestKind::Pli) {
            match writer.request_keyframe(None, KeyframeRequestKind::Pli) {
                Ok(()) => self.last_keyframe_request = Some(now),
                // No receive stream yet (no RTP seen): asked again on the next timeout.
                Err(e) => tracing::trace!(error = %e, "keyframe request not sent yet"),
            }
        }
    }

    /// Whether ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Whether the offer sent H.264 video (and the answer took it).
    pub fn has_video(&self) -> bool {
        self.video.is_some()
    }

    /// Whether the offer sent audio (Opus, if the answer took it).
    pub fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    /// Ends the session (WHIP DELETE).
    pub fn close(&mut self) {
        self.rtc.disconnect();
    }

    pub fn is_alive(&self) -> bool {
        self.rtc.is_alive()
    }
}

/// str0m's RTP time of `data` at `rate` ticks a second.
fn rtp_ticks(data: &MediaData, rate: u32) -> u64 {
    let t = data.time;
    let frequency = u64::from(t.denom());
    if frequency == u64::from(rate) {
        return t.numer();
    }
    u64::try_from(u128::from(t.numer()) * u128::from(rate) / u128::from(frequency.max(1)))
        .unwrap_or(0)
}

/// Why a depacketised H.264 access unit cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssembleError {
    #[error("the SPS/PPS in the stream do not make a decoder configuration: {0}")]
    ParameterSets(String),
}

/// One access unit as the hub carries it.
#[derive(Debug)]
pub struct AccessUnit {
    /// Length-prefixed (4 bytes) NAL units without SPS, PPS and access unit delimiters.
    pub data: Bytes,
    /// Whether it has an IDR slice.
    pub keyframe: bool,
    /// The decoder configuration from the SPS and PPS it carried, if it carried both.
    pub config: Option<AvcConfig>,
}

/// An Annex B access unit (what str0m's H.264 depacketiser gives) as the hub's frame.
pub fn assemble(annex_b: &[u8]) -> Result<AccessUnit, AssembleError> {
    let mut sps = Vec::new();
    let mut pps = Vec::new();
    let mut out = BytesMut::with_capacity(annex_b.len() + 16);
    let mut keyframe = false;
    for nal in media::avc::annexb_nalus(annex_b) {
        let Some(&header) = nal.first() else { continue };
        match header & 0x1f {
            7 => sps.push(Bytes::copy_from_slice(nal)),
            8 => pps.push(Bytes::copy_from_slice(nal)),
            // Access unit delimiters and filler: nothing for the decoder.
            9 | 12 => {}
            kind => {
                keyframe |= kind == 5;
                let Ok(len) = u32::try_from(nal.len()) else {
                    continue;
                };
                out.put_u32(len);
                out.put_slice(nal);
            }
        }
    }
    let config = if sps.is_empty() || pps.is_empty() {
        None
    } else {
        Some(
            AvcConfig::from_parameter_sets(&sps, &pps)
                .map_err(|e| AssembleError::ParameterSets(e.to_string()))?,
        )
    };
    Ok(AccessUnit {
        data: out.freeze(),
        keyframe,
        config,
    })
}

#[cfg(test)]
mod tests;
