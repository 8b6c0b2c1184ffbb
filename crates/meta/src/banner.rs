//! The start-up banner's lines about the metadata server's secrets: where the API and
//! its admin token are, and which playback keys sign private streams. Each function
//! returns the lines (ending in a newline) that a role prints; a generated secret is
//! shown only the once it is generated.

use std::path::Path;

use access::playback::PlaybackKeys;

use crate::playback_key::{PLAYBACK_KEY_FILE, PLAYBACK_KEY_ID};
use crate::{AdminToken, TOKEN_FILE, TokenSource};

/// The API's address and where its admin token is (the token itself when it was
/// generated now). Scripts may stop reading at the token's line: print it last.
pub fn api(http: &str, token: &AdminToken, source: TokenSource, data_dir: &Path) -> String {
    let file = data_dir.join(TOKEN_FILE);
    let token_line = match source {
        TokenSource::Configured => "  Admin token: the one configured".to_owned(),
        TokenSource::File => format!("  Admin token: in {}", file.display()),
        TokenSource::Generated => format!(
            "  Admin token (generated now and shown only this once; kept in {}): {}",
            file.display(),
            token.expose()
        ),
    };
    format!("  API: {http}/api (OpenAPI document: {http}/api/openapi.json)\n{token_line}\n")
}

/// Which playback keys sign private streams: the configured ids, or the generated key's
/// file and how to give it to edges.
pub fn playback_keys(keys: &PlaybackKeys, source: TokenSource, data_dir: &Path) -> String {
    match source {
        TokenSource::Configured => format!(
            "  Playback keys (private streams): {} (the first signs)\n",
            keys.ids().collect::<Vec<_>>().join(", ")
        ),
        _ => format!(
            "  Playback key (private streams): id `{PLAYBACK_KEY_ID}` in {}; give edges --playback-key {PLAYBACK_KEY_ID}=\"$(cat FILE)\"\n",
            data_dir.join(PLAYBACK_KEY_FILE).display()
        ),
    }
}

/// The declared streams, each with where to publish and watch it (`rtmp` and `http`
/// as people type them), or how to create one when there are none; and the remote
/// metadata server, if the streams are kept there.
pub fn streams(
    declared: &[crate::declared::StreamDecl],
    remote: Option<&crate::remote::RemoteSettings>,
    rtmp: &str,
    http: &str,
) -> String {
    let mut text = String::new();
    for s in declared {
        let name = &s.name;
        text += &format!(
            "  stream '{name}': publish to rtmp://{rtmp}/live/<its key>, watch http://{http}/watch/{name} (HLS: http://{http}/live/{name}/master.m3u8)\n"
        );
    }
    if let Some(remote) = remote {
        text += &format!(
            "  Metadata: the server at {} (key checks cached {} ms)\n",
            remote.url,
            remote.cache.ttl.as_millis()
        );
    }
    text
}

/// The hint when no stream is declared.
pub const NO_STREAMS: &str = "  No streams declared: create them with `rivulet streams create NAME` (or POST /api/streams), or add --stream NAME=KEY.\n";
