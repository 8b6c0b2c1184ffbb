//! Input health: whether a stream's input is worth watching from this pipeline.
//!
//! A dead connection is easy to see; an input that is connected but sends nothing
//! (an encoder frozen, a network path that stalls), sends a black picture (a camera
//! unplugged upstream of the encoder) or silence (a microphone or line cut) is not. [`InputHealth`] is told of frames and of
//! the picture level (from the transcoder's decoded pictures) and says, at a given
//! instant, whether the input is `ok` or why not. The origin reports it on every
//! playlist (`X-Rivulet-Input`) and at `/live/NAME/health`, so that an edge in front of
//! two pipelines (A/B) prefers the one whose input is fine.
//!
//! Sans-IO: time is an argument.

use std::time::{Duration, Instant};

/// Thresholds, from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthConfig {
    /// No frame for this long while a publisher is connected: `stalled`.
    pub stall_after: Duration,
    /// A black picture for this long: `black`.
    pub black_after: Duration,
    /// Silent audio for this long: `silent`.
    pub silent_after: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            stall_after: Duration::from_millis(2000),
            black_after: Duration::from_millis(5000),
            silent_after: Duration::from_millis(10_000),
        }
    }
}

impl HealthConfig {
    /// The thresholds given in milliseconds (`None`: the default).
    pub fn from_ms(stall: Option<u64>, black: Option<u64>, silent: Option<u64>) -> Self {
        let d = Self::default();
        let ms = |given: Option<u64>, default| given.map_or(default, Duration::from_millis);
        Self {
            stall_after: ms(stall, d.stall_after),
            black_after: ms(black, d.black_after),
            silent_after: ms(silent, d.silent_after),
        }
    }
}

/// The state of a stream's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputState {
    Ok,
    /// Connected, but no frame for longer than the stall threshold.
    Stalled,
    /// The picture has been black for longer than the black threshold.
    Black,
    /// The audio has been silent for longer than the silence threshold.
    Silent,
    /// No publisher (gone, in the grace period, or never came).
    Lost,
}

impl InputState {
    /// As in `X-Rivulet-Input` and the health endpoint.
    pub fn as_str(self) -> &'static str {
        match self {
            InputState::Ok => "ok",
            InputState::Stalled => "stalled",
            InputState::Black => "black",
            InputState::Silent => "silent",
            InputState::Lost => "lost",
        }
    }
}

/// A stream's input health, fed with what arrives.
#[derive(Clone, Debug)]
pub struct InputHealth {
    config: HealthConfig,
    connected: bool,
    last_frame: Option<Instant>,
    /// When the picture went black (and has stayed black since).
    black_since: Option<Instant>,
    /// When the audio went silent (and has stayed silent since).
    silent_since: Option<Instant>,
    since: Instant,
}

impl InputHealth {
    pub fn new(config: HealthConfig, now: Instant) -> Self {
        Self {
            config,
            connected: false,
            last_frame: None,
            black_since: None,
            silent_since: None,
            since: now,
        }
    }

    /// A publisher arrived.
    pub fn handle_session_start(&mut self, now: Instant) {
        self.connected = true;
        self.last_frame = None;
        self.black_since = None;
        self.silent_since = None;
        self.since = now;
    }

    /// The publisher left.
    pub fn handle_session_end(&mut self, now: Instant) {
        self.connected = false;
        self.since = now;
    }

    /// A frame (audio or video) arrived from the publisher.
    pub fn handle_frame(&mut self, now: Instant) {
        self.last_frame = Some(now);
    }

    /// A decoded picture was (or was not) black.
    pub fn handle_picture(&mut self, now: Instant, black: bool) {
        match (black, self.black_since) {
            (true, None) => self.black_since = Some(now),
            (false, Some(_)) => self.black_since = None,
            _ => {}
        }
    }

    /// The decoded audio was (or was not) silent.
    pub fn handle_audio(&mut self, now: Instant, silent: bool) {
        match (silent, self.silent_since) {
            (true, None) => self.silent_since = Some(now),
            (false, Some(_)) => self.silent_since = None,
            _ => {}
        }
    }

    /// The state at `now`, and a reason for people when it is not `ok`.
    pub fn state(&self, now: Instant) -> (InputState, Option<String>) {
        if !self.connected {
            return (InputState::Lost, Some("no publisher".into()));
        }
        // Before the first frame, the time since the publisher connected counts.
        let quiet = now.saturating_duration_since(self.last_frame.unwrap_or(self.since));
        if quiet > self.config.stall_after {
            return (
                InputState::Stalled,
                Some(format!("no frame for {} ms", quiet.as_millis())),
            );
        }
        if let Some(since) = self.black_since {
            let black = now.saturating_duration_since(since);
            if black > self.config.black_after {
                return (
                    InputState::Black,
                    Some(format!("black picture for {} ms", black.as_millis())),
                );
            }
        }
        if let Some(since) = self.silent_since {
            let silent = now.saturating_duration_since(since);
            if silent > self.config.silent_after {
                return (
                    InputState::Silent,
                    Some(format!("silent audio for {} ms", silent.as_millis())),
                );
            }
        }
        (InputState::Ok, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn stalls_when_frames_stop_and_recovers_when_they_return() {
        let t0 = Instant::now();
        let mut h = InputHealth::new(HealthConfig::default(), t0);
        assert_eq!(h.state(t0).0, InputState::Lost);
        h.handle_session_start(t0);
        assert_eq!(h.state(t0 + ms(1000)).0, InputState::Ok);
        assert_eq!(
            h.state(t0 + ms(2500)).0,
            InputState::Stalled,
            "connected, never a frame"
        );
        h.handle_frame(t0 + ms(3000));
        assert_eq!(h.state(t0 + ms(4900)).0, InputState::Ok);
        let (state, reason) = h.state(t0 + ms(5100));
        assert_eq!(state, InputState::Stalled);
        assert_eq!(reason.as_deref(), Some("no frame for 2100 ms"));
        h.handle_frame(t0 + ms(5200));
        assert_eq!(h.state(t0 + ms(5200)).0, InputState::Ok);
        h.handle_session_end(t0 + ms(6000));
        assert_eq!(h.state(t0 + ms(6000)).0, InputState::Lost);
    }

    #[test]
    fn black_only_after_the_threshold_and_until_a_picture_is_not() {
        let t0 = Instant::now();
        let config = HealthConfig {
            stall_after: ms(2000),
            black_after: ms(3000),
            ..HealthConfig::default()
        };
        let mut h = InputHealth::new(config, t0);
        h.handle_session_start(t0);
        for i in 0..=40 {
            let now = t0 + ms(i * 100);
            h.handle_frame(now);
            h.handle_picture(now, true);
        }
        assert_eq!(h.state(t0 + ms(2900)).0, InputState::Ok);
        assert_eq!(h.state(t0 + ms(4000)).0, InputState::Black);
        h.handle_picture(t0 + ms(4000), false);
        assert_eq!(h.state(t0 + ms(4000)).0, InputState::Ok);
    }

    #[test]
    fn silent_only_after_the_threshold_and_until_sound_returns() {
        let t0 = Instant::now();
        let config = HealthConfig {
            silent_after: ms(1000),
            ..HealthConfig::default()
        };
        let mut h = InputHealth::new(config, t0);
        h.handle_session_start(t0);
        for i in 0..=20 {
            let now = t0 + ms(i * 100);
            h.handle_frame(now);
            h.handle_audio(now, true);
        }
        assert_eq!(h.state(t0 + ms(900)).0, InputState::Ok);
        let (state, reason) = h.state(t0 + ms(1500));
        assert_eq!(state, InputState::Silent);
        assert_eq!(reason.as_deref(), Some("silent audio for 1500 ms"));
        assert_eq!(state.as_str(), "silent");
        h.handle_audio(t0 + ms(2000), false);
        assert_eq!(h.state(t0 + ms(2000)).0, InputState::Ok);
        // A new publisher starts with a clean slate.
        h.handle_audio(t0 + ms(2100), true);
        h.handle_session_start(t0 + ms(2200));
        h.handle_frame(t0 + ms(4000));
        assert_eq!(h.state(t0 + ms(4000)).0, InputState::Ok);
    }
}
