//! The play URL layout, in one place: `/live/STREAM/…` and the names of the objects
//! below it, parsed and formatted by [`LivePath`].
//!
//! ```text
//! /live/STREAM/master.m3u8              multivariant playlist
//! /live/STREAM/health                   the input's health (JSON)
//! /live/STREAM/RENDITION/index.m3u8     media playlist
//! /live/STREAM/RENDITION/init-V.mp4     init segment, version V
//! /live/STREAM/RENDITION/seg-N.m4s      segment, media sequence number N
//! /live/STREAM/RENDITION/part-N-P.m4s   part P of segment N
//! /live/STREAM/dvr.m3u8                 DVR multivariant playlist (the rewind window)
//! /live/STREAM/RENDITION/dvr.m3u8       DVR media playlist
//! /live/STREAM/RENDITION/rec-T/seg-N.m4s  a recorded segment of the recording that
//!                                        started at T (init-V.mp4 likewise)
//! ```
//!
//! The packager writes these names into playlists, the origin routes them, the edge
//! keys its cache and judges upstream playlists by them, and the analytics middleware
//! classifies deliveries by them: all through this module, so that renaming an object
//! is a change here and nowhere else. Parsing is strict (digits only, no sign, one
//! spelling per number once formatted again), so that a parsed path written out again
//! is the canonical spelling of the object.

use std::fmt;

/// The path every play URL starts with.
pub const LIVE_PREFIX: &str = "/live/";
/// The multivariant playlist's file name.
pub const MULTIVARIANT_PLAYLIST: &str = "master.m3u8";
/// A rendition's media playlist file name.
pub const MEDIA_PLAYLIST: &str = "index.m3u8";
/// The DVR playlists' file name (the multivariant one, and each rendition's).
pub const DVR_PLAYLIST: &str = "dvr.m3u8";
/// The input-health object's name.
pub const HEALTH: &str = "health";
/// The response header by which an origin reports its stream's input on playlists:
/// `ok`, `stalled`, `black`, `silent` or `lost`.
pub const INPUT_HEADER: &str = "x-rivulet-input";
/// The value of [`INPUT_HEADER`] for a healthy input.
pub const INPUT_OK: &str = "ok";
/// The response header by which an edge says which of its upstreams answered (an
/// index into its list).
pub const UPSTREAM_HEADER: &str = "x-rivulet-upstream";
/// Longest stream name, in bytes (ASCII only).
pub const MAX_STREAM_NAME_LEN: usize = 64;
/// Longest rendition name, in bytes (ASCII only).
pub const MAX_RENDITION_NAME_LEN: usize = 64;

/// Why a path or a name is not part of the play URL layout. The messages are for the
/// person who typed the URL or the name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LivePathError {
    /// The path is not below `/live/`.
    #[error("path must start with /live/")]
    NotLive,
    /// A `%` not followed by two hex digits, or bytes that are not UTF-8 once decoded.
    #[error("malformed percent-encoding in the path")]
    BadEncoding,
    /// Below `/live/`, but not one of the objects a stream serves.
    #[error(
        "not a live object path: expected /live/NAME/(master.m3u8|dvr.m3u8|health), /live/NAME/RENDITION/(index.m3u8|dvr.m3u8|init-N.mp4|seg-N.m4s|part-N-P.m4s) or /live/NAME/RENDITION/rec-T/(init-N.mp4|seg-N.m4s)"
    )]
    BadPath,
    /// The stream name breaks the naming rule.
    #[error(
        "'{0}' is not a valid stream name: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit (it appears in URLs)"
    )]
    BadStreamName(String),
    /// The rendition name breaks the naming rule.
    #[error("'{0}' is not a rendition name: 1-64 letters, digits, '-' or '_'")]
    BadRenditionName(String),
}

/// Checks a stream's public name: 1-64 lowercase ASCII letters, digits, `-` or `_`,
/// starting with a letter or digit. It appears in play URLs and API paths, so it
/// needs no escaping anywhere. (The metadata server's `StreamName` holds this rule
/// too, by calling this.)
pub fn check_stream_name(name: &str) -> Result<(), LivePathError> {
    let bytes = name.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = bytes
        .iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_');
    if first_ok && rest_ok && bytes.len() <= MAX_STREAM_NAME_LEN {
        Ok(())
    } else {
        Err(LivePathError::BadStreamName(shortened(name)))
    }
}

/// Checks a rendition's name: 1-64 ASCII letters, digits, `-` or `_` (the
/// transcoder's rung names, `source`, or whatever an upstream packager chose).
pub fn check_rendition_name(name: &str) -> Result<(), LivePathError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_RENDITION_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LivePathError::BadRenditionName(shortened(name)))
    }
}

/// A media object below `/live/STREAM/RENDITION/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaObject {
    /// `init-{version}.mp4`
    Init { version: u32 },
    /// `seg-{msn}.m4s`
    Segment { msn: u64 },
    /// `part-{msn}-{part}.m4s`
    Part { msn: u64, part: u32 },
}

impl MediaObject {
    /// The object's file name, as playlists list it.
    pub fn file_name(&self) -> String {
        self.to_string()
    }

    /// The object a file name denotes, if any.
    pub fn parse(file_name: &str) -> Option<Self> {
        if let Some(v) = file_name
            .strip_prefix(INIT_PREFIX)
            .and_then(|s| s.strip_suffix(INIT_SUFFIX))
        {
            return Some(MediaObject::Init {
                version: parse_number(v)?,
            });
        }
        if let Some(m) = file_name
            .strip_prefix(SEGMENT_PREFIX)
            .and_then(|s| s.strip_suffix(CHUNK_SUFFIX))
        {
            return Some(MediaObject::Segment {
                msn: parse_number(m)?,
            });
        }
        let (m, p) = file_name
            .strip_prefix(PART_PREFIX)?
            .strip_suffix(CHUNK_SUFFIX)?
            .split_once('-')?;
        Some(MediaObject::Part {
            msn: parse_number(m)?,
            part: parse_number(p)?,
        })
    }
}

impl fmt::Display for MediaObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaObject::Init { version } => write!(f, "{INIT_PREFIX}{version}{INIT_SUFFIX}"),
            MediaObject::Segment { msn } => write!(f, "{SEGMENT_PREFIX}{msn}{CHUNK_SUFFIX}"),
            MediaObject::Part { msn, part } => {
                write!(f, "{PART_PREFIX}{msn}-{part}{CHUNK_SUFFIX}")
            }
        }
    }
}

/// What a `/live/STREAM/…` path names below the stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LiveObject {
    /// `master.m3u8`
    Multivariant,
    /// `health`
    Health,
    /// `RENDITION/index.m3u8`
    MediaPlaylist { rendition: String },
    /// `RENDITION/init-V.mp4`, `RENDITION/seg-N.m4s`, `RENDITION/part-N-P.m4s`
    Media {
        rendition: String,
        object: MediaObject,
    },
    /// `dvr.m3u8`: the DVR multivariant playlist.
    DvrMultivariant,
    /// `RENDITION/dvr.m3u8`: a rendition's DVR playlist.
    DvrPlaylist { rendition: String },
    /// `RENDITION/rec-T/init-V.mp4`, `RENDITION/rec-T/seg-N.m4s`: an object of the
    /// recording that started at `T` (ms since the epoch, as in its id). The start
    /// makes the name unique per session, so it may be cached as immutable.
    Recorded {
        rendition: String,
        recording: u64,
        object: MediaObject,
    },
}

/// The directory of a recording's objects below a rendition: `rec-T`.
pub fn recording_dir(recording: u64) -> String {
    format!("{RECORDING_PREFIX}{recording}")
}

/// A play URL path, parsed: `/live/STREAM/…`. [`LivePath::parse`] and the
/// [`Display`](fmt::Display) impl are inverses for every canonical spelling.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LivePath {
    stream: String,
    object: LiveObject,
}

impl LivePath {
    /// A path from its parts; the names are checked as [`LivePath::parse`] checks them.
    pub fn new(stream: &str, object: LiveObject) -> Result<Self, LivePathError> {
        check_stream_name(stream)?;
        if let LiveObject::MediaPlaylist { rendition }
        | LiveObject::Media { rendition, .. }
        | LiveObject::DvrPlaylist { rendition }
        | LiveObject::Recorded { rendition, .. } = &object
        {
            check_rendition_name(rendition)?;
        }
        Ok(Self {
            stream: stream.to_owned(),
            object,
        })
    }

    /// A request's path as sent (percent-encoded, without the query): decoded, then
    /// parsed. Every spelling of an object (`%73eg-7.m4s`, `seg-007.m4s`) gives the
    /// same path, and no spelling can name anything outside the layout
    /// (`/live/%2e%2e/metrics` decodes into a `..` and is refused as such).
    pub fn from_request_path(path: &str) -> Result<Self, LivePathError> {
        Self::parse(&percent_decode(path)?)
    }

    /// A path already percent-decoded (a query is not part of it).
    pub fn parse(path: &str) -> Result<Self, LivePathError> {
        let rest = path
            .strip_prefix(LIVE_PREFIX)
            .ok_or(LivePathError::NotLive)?;
        let segments: Vec<&str> = rest.split('/').collect();
        let (stream, object) = match segments.as_slice() {
            [stream, MULTIVARIANT_PLAYLIST] => (stream, LiveObject::Multivariant),
            [stream, HEALTH] => (stream, LiveObject::Health),
            [stream, DVR_PLAYLIST] => (stream, LiveObject::DvrMultivariant),
            [stream, rendition, DVR_PLAYLIST] => (
                stream,
                LiveObject::DvrPlaylist {
                    rendition: (*rendition).to_owned(),
                },
            ),
            [stream, rendition, dir, object] => {
                check_stream_name(stream)?;
                check_rendition_name(rendition)?;
                let recording = dir
                    .strip_prefix(RECORDING_PREFIX)
                    .and_then(parse_number)
                    .ok_or(LivePathError::BadPath)?;
                let object = match MediaObject::parse(object) {
                    Some(o @ (MediaObject::Init { .. } | MediaObject::Segment { .. })) => o,
                    _ => return Err(LivePathError::BadPath),
                };
                (
                    stream,
                    LiveObject::Recorded {
                        rendition: (*rendition).to_owned(),
                        recording,
                        object,
                    },
                )
            }
            [stream, rendition, MEDIA_PLAYLIST] => (
                stream,
                LiveObject::MediaPlaylist {
                    rendition: (*rendition).to_owned(),
                },
            ),
            [stream, rendition, object] => {
                // The names first: a bad name says more than a bad object.
                check_stream_name(stream)?;
                check_rendition_name(rendition)?;
                let object = MediaObject::parse(object).ok_or(LivePathError::BadPath)?;
                (
                    stream,
                    LiveObject::Media {
                        rendition: (*rendition).to_owned(),
                        object,
                    },
                )
            }
            _ => return Err(LivePathError::BadPath),
        };
        Self::new(stream, object)
    }

    /// The stream's public name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The rendition, for objects below one.
    pub fn rendition(&self) -> Option<&str> {
        match &self.object {
            LiveObject::MediaPlaylist { rendition }
            | LiveObject::Media { rendition, .. }
            | LiveObject::DvrPlaylist { rendition }
            | LiveObject::Recorded { rendition, .. } => Some(rendition),
            LiveObject::Multivariant | LiveObject::Health | LiveObject::DvrMultivariant => None,
        }
    }

    /// What the path names.
    pub fn object(&self) -> &LiveObject {
        &self.object
    }

    /// A multivariant or media playlist.
    pub fn is_playlist(&self) -> bool {
        matches!(
            self.object,
            LiveObject::Multivariant
                | LiveObject::MediaPlaylist { .. }
                | LiveObject::DvrMultivariant
                | LiveObject::DvrPlaylist { .. }
        )
    }

    /// The media object (init segment, segment or part), live or recorded, if it is one.
    pub fn media(&self) -> Option<MediaObject> {
        match &self.object {
            LiveObject::Media { object, .. } | LiveObject::Recorded { object, .. } => Some(*object),
            _ => None,
        }
    }
}

impl fmt::Display for LivePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stream = &self.stream;
        match &self.object {
            LiveObject::Multivariant => write!(f, "{LIVE_PREFIX}{stream}/{MULTIVARIANT_PLAYLIST}"),
            LiveObject::Health => write!(f, "{LIVE_PREFIX}{stream}/{HEALTH}"),
            LiveObject::MediaPlaylist { rendition } => {
                write!(f, "{LIVE_PREFIX}{stream}/{rendition}/{MEDIA_PLAYLIST}")
            }
            LiveObject::Media { rendition, object } => {
                write!(f, "{LIVE_PREFIX}{stream}/{rendition}/{object}")
            }
            LiveObject::DvrMultivariant => write!(f, "{LIVE_PREFIX}{stream}/{DVR_PLAYLIST}"),
            LiveObject::DvrPlaylist { rendition } => {
                write!(f, "{LIVE_PREFIX}{stream}/{rendition}/{DVR_PLAYLIST}")
            }
            LiveObject::Recorded {
                rendition,
                recording,
                object,
            } => write!(
                f,
                "{LIVE_PREFIX}{stream}/{rendition}/{RECORDING_PREFIX}{recording}/{object}"
            ),
        }
    }
}

/// A rendition's media playlist as the multivariant playlist lists it (relative).
pub fn media_playlist_uri(rendition: &str) -> String {
    format!("{rendition}/{MEDIA_PLAYLIST}")
}

/// A sibling rendition's media playlist as a media playlist refers to it (relative,
/// for `EXT-X-RENDITION-REPORT`).
pub fn sibling_playlist_uri(rendition: &str) -> String {
    format!("../{rendition}/{MEDIA_PLAYLIST}")
}

/// The origin's route patterns (axum syntax), one per kind of object, built from
/// the names above so that the router cannot drift from them.
pub mod routes {
    /// `/live/{name}/master.m3u8`
    pub fn multivariant() -> String {
        format!("/live/{{name}}/{}", super::MULTIVARIANT_PLAYLIST)
    }
    /// `/live/{name}/health`
    pub fn health() -> String {
        format!("/live/{{name}}/{}", super::HEALTH)
    }
    /// `/live/{name}/{rendition}/index.m3u8`
    pub fn media_playlist() -> String {
        format!("/live/{{name}}/{{rendition}}/{}", super::MEDIA_PLAYLIST)
    }
    /// `/live/{name}/{rendition}/{object}`: init segments, segments and parts, told
    /// apart by `MediaObject::parse`.
    pub fn media_object() -> String {
        "/live/{name}/{rendition}/{object}".to_owned()
    }
}

const RECORDING_PREFIX: &str = "rec-";
const INIT_PREFIX: &str = "init-";
const INIT_SUFFIX: &str = ".mp4";
const SEGMENT_PREFIX: &str = "seg-";
const PART_PREFIX: &str = "part-";
const CHUNK_SUFFIX: &str = ".m4s";

/// Digits only: no sign, no whitespace, no leading `+`.
fn parse_number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `%XX` decoded; the result must be text.
fn percent_decode(path: &str) -> Result<String, LivePathError> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(LivePathError::BadEncoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| LivePathError::BadEncoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| LivePathError::BadEncoding)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| LivePathError::BadEncoding)
}

/// A name as quoted in an error: bounded, so a huge name cannot make a huge message.
fn shortened(name: &str) -> String {
    name.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<LivePath> {
        let rendition = || "720p".to_owned();
        [
            LiveObject::Multivariant,
            LiveObject::Health,
            LiveObject::MediaPlaylist {
                rendition: rendition(),
            },
            LiveObject::Media {
                rendition: rendition(),
                object: MediaObject::Init { version: 3 },
            },
            LiveObject::Media {
                rendition: rendition(),
                object: MediaObject::Segment { msn: 99 },
            },
            LiveObject::Media {
                rendition: rendition(),
                object: MediaObject::Part { msn: 7, part: 2 },
            },
            LiveObject::DvrMultivariant,
            LiveObject::DvrPlaylist {
                rendition: rendition(),
            },
            LiveObject::Recorded {
                rendition: rendition(),
                recording: 1_700_000_000_000,
                object: MediaObject::Segment { msn: 12 },
            },
        ]
        .into_iter()
        .map(|o| LivePath::new("cam-1", o).expect("valid names"))
        .collect()
    }

    #[test]
    fn every_kind_of_object_formats_and_parses_round_trip() {
        let written: Vec<String> = every_kind().iter().map(ToString::to_string).collect();
        assert_eq!(
            written,
            [
                "/live/cam-1/master.m3u8",
                "/live/cam-1/health",
                "/live/cam-1/720p/index.m3u8",
                "/live/cam-1/720p/init-3.mp4",
                "/live/cam-1/720p/seg-99.m4s",
                "/live/cam-1/720p/part-7-2.m4s",
                "/live/cam-1/dvr.m3u8",
                "/live/cam-1/720p/dvr.m3u8",
                "/live/cam-1/720p/rec-1700000000000/seg-12.m4s",
            ]
        );
        // A recording holds no parts, and its directory is `rec-` and digits.
        for bad in [
            "/live/cam-1/720p/rec-1/part-1-0.m4s",
            "/live/cam-1/720p/rec-x/seg-1.m4s",
            "/live/cam-1/720p/other-1/seg-1.m4s",
        ] {
            assert_eq!(LivePath::parse(bad), Err(LivePathError::BadPath), "{bad}");
        }
        for (path, text) in every_kind().into_iter().zip(&written) {
            assert_eq!(LivePath::parse(text).as_ref(), Ok(&path), "{text}");
            if let Some(object) = path.media() {
                let file = object.file_name();
                assert_eq!(MediaObject::parse(&file), Some(object));
                assert!(text.ends_with(&file));
            }
        }
        assert_eq!(media_playlist_uri("720p"), "720p/index.m3u8");
        assert_eq!(sibling_playlist_uri("360p"), "../360p/index.m3u8");
    }

    #[test]
    fn other_spellings_parse_to_the_canonical_one() {
        let path = LivePath::parse("/live/cam/src/seg-007.m4s").expect("leading zeros");
        assert_eq!(path.to_string(), "/live/cam/src/seg-7.m4s");
        assert_eq!(path.stream(), "cam");
        assert_eq!(path.rendition(), Some("src"));
        assert!(!path.is_playlist());
        assert_eq!(
            LivePath::from_request_path("/live/%63am/src/%73eg-7.m4s"),
            Ok(path)
        );
        for bad in [
            "/live/cam/%zz/x",
            "/live/cam/%2",
            "/live/%ff%fe/master.m3u8",
        ] {
            assert_eq!(
                LivePath::from_request_path(bad),
                Err(LivePathError::BadEncoding),
                "{bad}"
            );
        }
    }

    #[test]
    fn junk_is_refused_with_the_reason() {
        for junk in [
            "seg-.m4s",
            "seg--1.m4s",
            "part-1.m4s",
            "part-1-+2.m4s",
            "init-x.mp4",
            "../seg-1.m4s",
            "seg-1.mp4",
        ] {
            assert_eq!(MediaObject::parse(junk), None, "{junk}");
        }
        assert_eq!(LivePath::parse("/api/streams"), Err(LivePathError::NotLive));
        for bad in [
            "/live/cam",
            "/live/",
            "/live/cam/720p/seg-7.m4s/x",
            "/live/cam/720p/whatever.txt",
        ] {
            assert_eq!(LivePath::parse(bad), Err(LivePathError::BadPath), "{bad}");
        }
        for bad in [
            "/live/../x/master.m3u8",
            "/live/Cam/master.m3u8",
            "/live//health",
        ] {
            assert!(
                matches!(LivePath::parse(bad), Err(LivePathError::BadStreamName(_))),
                "{bad}"
            );
        }
        let long = format!("/live/cam/{}/index.m3u8", "r".repeat(65));
        assert!(matches!(
            LivePath::parse(&long),
            Err(LivePathError::BadRenditionName(_))
        ));
    }

    #[test]
    fn stream_names_follow_the_url_safe_rule() {
        for ok in ["a", "0", "studio-1", "a_b", &"x".repeat(64)] {
            assert_eq!(check_stream_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(check_stream_name(bad).is_err(), "{bad}");
        }
        // Renditions are the transcoder's rung names: upper case is fine.
        for ok in ["source", "720p", "HD_1", "-x"] {
            assert_eq!(check_rendition_name(ok), Ok(()), "{ok}");
        }
    }
}
