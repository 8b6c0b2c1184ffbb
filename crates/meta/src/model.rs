//! What a stream is, as the API and the store see it, and the rules its fields follow.
//!
//! Input types ([`NewStream`], [`StreamUpdate`]) are checked once, by
//! [`NewStream::validate`] / [`StreamUpdate::validate`], into their `Valid…` forms;
//! the store accepts only those, so no query ever sees an unchecked value.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A stream's public name: `[a-z0-9][a-z0-9_-]{0,63}`. It appears in play URLs
/// (`/live/NAME/master.m3u8`) and API paths, so it is URL-safe without escaping.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName(String);

impl StreamName {
    /// Checks `name` against the naming rule; the error names the field `name`.
    pub fn parse(name: &str) -> Result<Self, ValidationError> {
        Self::parse_field(name, "name")
    }

    pub(crate) fn parse_field(name: &str, field: &'static str) -> Result<Self, ValidationError> {
        // One rule for every crate that sees stream names (edge, analytics, origin).
        media::live_path::check_stream_name(name)
            .map_err(|e| ValidationError::new(field, e.to_string()))?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A field that failed validation, and why. The API answers it as
/// `422 {"error": reason, "field": field}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A stream as anyone may read it. Never carries the key or its hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Stream {
    /// Public name, as in `/live/NAME/master.m3u8`.
    #[schema(example = "studio")]
    pub name: String,
    pub title: String,
    pub description: String,
    /// Lowercase, trimmed, sorted, without duplicates.
    pub tags: Vec<String>,
    /// Where a thumbnail of the stream can be fetched, once one exists.
    pub thumbnail: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch; changes with every edit and live/offline change.
    pub updated_at: i64,
    /// Increases by one with every change; events carry it so that a client can
    /// ignore one older than what it already shows.
    pub version: i64,
    /// Playback needs a signed token (`POST /api/streams/{name}/tokens`), checked by
    /// the origin and every edge.
    #[serde(default)]
    pub private: bool,
    pub live: LiveState,
    /// Whether the stream is recorded: `true`, `false`, or `null` for the server's
    /// default (`--record-default`). Takes effect within seconds on a live stream.
    #[serde(default)]
    pub record: Option<bool>,
}

/// Whether the stream is being published, and facts about the publish.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LiveState {
    pub live: bool,
    /// When the current publish started (ms since the Unix epoch), if live.
    pub since: Option<i64>,
    /// The ingest node receiving the publish.
    pub ingest_node: Option<String>,
    /// Bits per second the publisher sends, as last measured by the ingest.
    pub ingest_bitrate: Option<i64>,
    /// The renditions being produced, as reported by the ingest (free-form JSON).
    #[schema(value_type = Option<Object>)]
    pub renditions: Option<serde_json::Value>,
    /// The publisher's connection statistics, as reported by the ingest (free-form
    /// JSON; Rivulet sends SRT's for SRT publishers: docs/srt.md).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub ingest_stats: Option<serde_json::Value>,
}

/// The longest `ingest_stats` object taken, serialised.
pub(crate) const MAX_INGEST_STATS_LEN: usize = 4096;

/// What the ingest reports when a publish starts or its facts change (the body of
/// `PUT /api/streams/{name}/live`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveReport {
    /// When the publish started, in ms since the Unix epoch.
    pub since: i64,
    /// The ingest node receiving the publish (its `--node-name`).
    #[serde(default)]
    pub ingest_node: Option<String>,
    /// Bits per second the publisher sends.
    #[serde(default)]
    pub ingest_bitrate: Option<i64>,
    /// The renditions being produced (free-form JSON; Rivulet sends their names).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub renditions: Option<serde_json::Value>,
    /// The publisher's connection statistics (free-form JSON object; Rivulet sends
    /// SRT's for SRT publishers).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub ingest_stats: Option<serde_json::Value>,
}

impl LiveReport {
    /// Checks what a remote ingest sent.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.since <= 0 {
            return Err(ValidationError::new(
                "since",
                "must be a time in ms since the Unix epoch",
            ));
        }
        if let Some(node) = &self.ingest_node {
            validate_node_name(node, "ingest_node")?;
        }
        if self.ingest_bitrate.is_some_and(|b| b < 0) {
            return Err(ValidationError::new(
                "ingest_bitrate",
                "must not be negative",
            ));
        }
        if let Some(stats) = &self.ingest_stats
            && (!stats.is_object() || stats.to_string().len() > MAX_INGEST_STATS_LEN)
        {
            return Err(ValidationError::new(
                "ingest_stats",
                format!("must be a JSON object of at most {MAX_INGEST_STATS_LEN} bytes"),
            ));
        }
        Ok(())
    }
}

/// Checks an ingest node's name: 1-[`MAX_NODE_LEN`] characters, no control characters.
pub fn validate_node_name(node: &str, field: &str) -> Result<(), ValidationError> {
    if node.is_empty() || node.chars().count() > MAX_NODE_LEN || node.chars().any(char::is_control)
    {
        return Err(ValidationError::new(
            field,
            format!("a node name is 1-{MAX_NODE_LEN} characters without control characters"),
        ));
    }
    Ok(())
}

/// Checks a key chosen by an operator (`--stream NAME=KEY`): at least
/// [`MIN_DECLARED_KEY_LEN`] characters, without spaces, `/` or `?`, which would break
/// the publish URL.
pub fn validate_declared_key(key: &str) -> Result<(), ValidationError> {
    if key.len() < MIN_DECLARED_KEY_LEN
        || key
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/' || c == '?')
    {
        return Err(ValidationError::new(
            "key",
            format!(
                "a stream key must be at least {MIN_DECLARED_KEY_LEN} characters without spaces, '/' or '?'"
            ),
        ));
    }
    Ok(())
}

/// The body of `POST /api/keys/check`: a key presented by a publisher. In the body,
/// never in the URL, so that it stays out of access logs.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyCheck {
    pub key: String,
}

/// The answer of `POST /api/keys/check`: the stream the key publishes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyOwner {
    #[schema(example = "studio")]
    pub stream: String,
}

/// The body of `PUT /api/streams/{name}/key`: a key chosen by the operator.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclaredKey {
    pub key: String,
}

/// The answer of `PUT /api/streams/{name}/key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Declared {
    /// Whether the stream was created or its key changed (false: it had this key).
    pub changed: bool,
}

/// The body of `POST /api/live/reset`: an ingest node that (re)starts.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeReset {
    pub ingest_node: String,
}

/// The answer of `POST /api/live/reset`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeResetDone {
    /// How many streams were marked offline.
    pub streams: u64,
}

/// The body of `POST /api/streams`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStream {
    #[schema(example = "studio")]
    pub name: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Playback needs a signed token.
    #[serde(default)]
    pub private: bool,
}

/// A checked [`NewStream`].
#[derive(Clone, Debug)]
pub struct ValidNewStream {
    pub name: StreamName,
    pub title: String,
    pub description: String,
    pub tags: Vec<String>,
    pub private: bool,
}

impl NewStream {
    pub fn validate(self) -> Result<ValidNewStream, ValidationError> {
        Ok(ValidNewStream {
            name: StreamName::parse(&self.name)?,
            title: validate_title(self.title.unwrap_or_default())?,
            description: validate_description(self.description.unwrap_or_default())?,
            tags: normalize_tags(self.tags, "tags")?,
            private: self.private,
        })
    }
}

/// The body of `PATCH /api/streams/{name}`. Absent fields are left as they are.
///
/// `add_tags` and `remove_tags` change the tag set in place, atomically, so that
/// clients editing tags at the same time do not overwrite each other; `tags`
/// replaces the whole set (applied before the other two).
#[derive(Clone, Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamUpdate {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub add_tags: Vec<String>,
    #[serde(default)]
    pub remove_tags: Vec<String>,
    /// Record the stream (`true`) or not (`false`); see [`Stream::record`].
    #[serde(default)]
    pub record: Option<bool>,
    /// `true`: playback needs a signed token from now on; `false`: anyone may watch.
    #[serde(default)]
    pub private: Option<bool>,
}

/// A checked [`StreamUpdate`].
#[derive(Clone, Debug, Default)]
pub struct ValidStreamUpdate {
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
    pub record: Option<bool>,
    pub private: Option<bool>,
}

impl StreamUpdate {
    pub fn validate(self) -> Result<ValidStreamUpdate, ValidationError> {
        if self.title.is_none()
            && self.description.is_none()
            && self.tags.is_none()
            && self.add_tags.is_empty()
            && self.remove_tags.is_empty()
            && self.record.is_none()
            && self.private.is_none()
        {
            return Err(ValidationError::new(
                "body",
                "nothing to change: give at least one of title, description, tags, add_tags, remove_tags, record, private",
            ));
        }
        Ok(ValidStreamUpdate {
            title: self.title.map(validate_title).transpose()?,
            description: self.description.map(validate_description).transpose()?,
            tags: self.tags.map(|t| normalize_tags(t, "tags")).transpose()?,
            add_tags: normalize_tags(self.add_tags, "add_tags")?,
            remove_tags: normalize_tags(self.remove_tags, "remove_tags")?,
            record: self.record,
            private: self.private,
        })
    }
}

/// A stream just created or re-keyed: the only time its key is ever shown.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamWithKey {
    #[serde(flatten)]
    pub stream: Stream,
    /// The secret stream key, for the publish URL `rtmp://HOST:1935/live/KEY`.
    /// Shown this once; only its hash is stored.
    pub key: String,
}

/// One page of `GET /api/streams`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamPage {
    pub streams: Vec<Stream>,
    /// Pass as `?after=` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Filters and paging of a listing.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub tag: Option<String>,
    pub live: Option<bool>,
    pub limit: u32,
    pub offset: u64,
    /// Keyset paging: only streams whose name sorts after this one.
    pub after: Option<StreamName>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            tag: None,
            live: None,
            limit: DEFAULT_PAGE,
            offset: 0,
            after: None,
        }
    }
}

/// Trims and lowercases one tag and checks it; `field` names the list it came from.
pub fn normalize_tag(tag: &str, field: &str) -> Result<String, ValidationError> {
    let tag = tag.trim().to_lowercase();
    let len = tag.chars().count();
    if len == 0 || len > MAX_TAG_LEN {
        return Err(ValidationError::new(
            field,
            format!("tags must be 1-{MAX_TAG_LEN} characters after trimming"),
        ));
    }
    // Commas are refused so that a tag list can be written comma-separated (CLI, env).
    if tag.chars().any(|c| c.is_control() || c == ',') {
        return Err(ValidationError::new(
            field,
            format!("tag '{tag}' contains a control character or a comma"),
        ));
    }
    Ok(tag)
}

fn normalize_tags(tags: Vec<String>, field: &str) -> Result<Vec<String>, ValidationError> {
    let mut out = tags
        .iter()
        .map(|t| normalize_tag(t, field))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    if out.len() > MAX_TAGS {
        return Err(ValidationError::new(
            field,
            format!("a stream has at most {MAX_TAGS} tags"),
        ));
    }
    Ok(out)
}

fn validate_title(title: String) -> Result<String, ValidationError> {
    let title = title.trim().to_owned();
    if title.chars().count() > MAX_TITLE_LEN {
        return Err(ValidationError::new(
            "title",
            format!("at most {MAX_TITLE_LEN} characters"),
        ));
    }
    // The title goes into a quoted playlist attribute (EXT-X-SESSION-DATA) and into
    // SSE `data:` lines, neither of which can carry a line break.
    if title.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "title",
            "must be one line without control characters",
        ));
    }
    Ok(title)
}

fn validate_description(description: String) -> Result<String, ValidationError> {
    if description.chars().count() > MAX_DESCRIPTION_LEN {
        return Err(ValidationError::new(
            "description",
            format!("at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    if description
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ValidationError::new(
            "description",
            "must not contain control characters other than newlines and tabs",
        ));
    }
    Ok(description)
}

/// Longest stream name, in bytes (ASCII only).
pub const MAX_NAME_LEN: usize = media::live_path::MAX_STREAM_NAME_LEN;
/// Longest title, in characters.
pub const MAX_TITLE_LEN: usize = 200;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 5_000;
/// Longest tag, in characters.
pub const MAX_TAG_LEN: usize = 32;
/// Most tags on one stream.
pub const MAX_TAGS: usize = 32;
/// Longest ingest node name, in characters.
pub const MAX_NODE_LEN: usize = 255;
/// Shortest key an operator may choose.
pub const MIN_DECLARED_KEY_LEN: usize = 4;
/// Streams per page when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;
/// Largest `limit` accepted.
pub const MAX_PAGE: u32 = 500;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_url_safe_rule() {
        for ok in ["a", "0", "studio-1", "a_b", &"x".repeat(64)] {
            assert!(StreamName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", "A", "a b", "a/b", "é", &"x".repeat(65)] {
            let err = StreamName::parse(bad).unwrap_err();
            assert_eq!(err.field, "name", "{bad}");
        }
    }

    #[test]
    fn tags_are_trimmed_lowercased_sorted_and_deduplicated() {
        let v = NewStream {
            name: "a".into(),
            tags: vec![" Music ".into(), "music".into(), "Live".into()],
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(v.tags, ["live", "music"]);
        let err = NewStream {
            name: "a".into(),
            tags: vec!["  ".into()],
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "tags");
    }

    #[test]
    fn updates_need_a_change_and_check_each_field() {
        assert_eq!(
            StreamUpdate::default().validate().unwrap_err().field,
            "body"
        );
        let err = StreamUpdate {
            title: Some("a\nb".into()),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "title");
        let err = StreamUpdate {
            add_tags: vec!["a,b".into()],
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "add_tags");
    }
}
