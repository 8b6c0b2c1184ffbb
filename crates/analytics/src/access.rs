//! Who may POST delivery events: the figures are only as honest as their sources.
//!
//! Delivery events name viewers, edges and client addresses; anyone who can POST them
//! can invent an audience. So `POST /api/analytics/events` is either off
//! ([`EventsAccess::InProcessOnly`], the default: `rivulet serve` hands its own events
//! over in-process and needs no HTTP for them) or guarded by a bearer token
//! ([`EventsAccess::Token`], compared in constant time).

use std::fmt;
use std::path::Path;

use db::secret::{MIN_TOKEN_LEN, SecretFileError, TokenSource};

/// Who may POST delivery events.
#[derive(Clone, Debug, Default)]
pub enum EventsAccess {
    /// Nobody over HTTP: events come from the in-process emitter only.
    #[default]
    InProcessOnly,
    /// Requests that carry `Authorization: Bearer TOKEN`.
    Token(EventsToken),
}

/// The bearer token of `POST /api/analytics/events`. `Debug` does not show it.
#[derive(Clone)]
pub struct EventsToken(String);

/// The events token could not be read or made.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the analytics events token (set --analytics-token)")]
pub struct EventsTokenSetup(#[source] EventsTokenError);

impl EventsToken {
    /// A token the operator chose (at least [`MIN_EVENTS_TOKEN_LEN`] characters, no
    /// whitespace: it travels in a header).
    pub fn new(token: impl Into<String>) -> Result<Self, EventsTokenError> {
        let token = token.into();
        if token.len() < MIN_EVENTS_TOKEN_LEN || token.chars().any(char::is_whitespace) {
            return Err(EventsTokenError::TooShort);
        }
        Ok(Self(token))
    }

    /// The token in `DATA_DIR/analytics-token`, or a new random one written there
    /// (mode 0600) for the next start.
    pub fn load_or_generate(data_dir: &Path) -> Result<(Self, TokenSource), EventsTokenError> {
        let (token, source) =
            db::secret::load_or_generate_secret(&data_dir.join(EVENTS_TOKEN_FILE))?;
        Ok((Self::new(token)?, source))
    }

    /// The configured token, else the one in `DATA_DIR/analytics-token` (made at the
    /// first start): the analytics server alone always takes events behind a token.
    pub fn configured_or_generated(
        configured: Option<&EventsToken>,
        data_dir: &Path,
    ) -> Result<(Self, TokenSource), EventsTokenSetup> {
        match configured {
            Some(token) => Ok((token.clone(), TokenSource::Configured)),
            None => Self::load_or_generate(data_dir).map_err(EventsTokenSetup),
        }
    }

    /// Whether `presented` is the token, in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        db::secret::secret_matches(&self.0, presented)
    }

    /// The token itself, to print once or to send.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for EventsToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EventsToken(…)")
    }
}

/// Why the events token could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventsTokenError {
    /// The token is too short or has whitespace in it.
    #[error(
        "the analytics events token must be at least {MIN_EVENTS_TOKEN_LEN} characters without spaces"
    )]
    TooShort,
    /// The token file in the data directory cannot be read or written.
    #[error("analytics events token: {0}")]
    File(#[from] SecretFileError),
}

/// Name of the generated events token's file in the data directory.
pub const EVENTS_TOKEN_FILE: &str = "analytics-token";
/// Shortest events token accepted.
pub const MIN_EVENTS_TOKEN_LEN: usize = MIN_TOKEN_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_generated_private_and_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let (a, s1) = EventsToken::load_or_generate(dir.path()).unwrap();
        let (b, s2) = EventsToken::load_or_generate(dir.path()).unwrap();
        assert_eq!((s1, s2), (TokenSource::Generated, TokenSource::File));
        assert!(a.matches(b.expose()) && !a.matches("wrong"));
        assert_eq!(format!("{a:?}"), "EventsToken(…)");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(EVENTS_TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(EventsToken::new("short").is_err());
    }
}
