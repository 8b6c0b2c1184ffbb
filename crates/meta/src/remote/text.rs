//! The admin API's answers as text for a terminal (`rivulet streams …`): each function
//! returns the lines the command prints, so the layout is tested without a terminal.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::{LiveState, Stream, StreamWithKey};

/// A new or re-keyed stream: its key (shown only this once) and the publish and play
/// URLs on `server` (the base URL the command talked to). `what` opens the first line.
pub fn keyed(server: &str, what: &str, keyed: &StreamWithKey) -> String {
    let rtmp_host = server
        .trim_start_matches("http://")
        .split(['/', ':'])
        .next()
        .unwrap_or("HOST");
    let name = &keyed.stream.name;
    let key = &keyed.key;
    format!(
        "{what} stream '{name}'\nkey: {key}\n  (shown only this once: store it now)\n  \
         publish: rtmp://{rtmp_host}:1935/live/{key}\n  watch:   {server}/live/{name}/master.m3u8\n"
    )
}

/// One stream: name, title, tags, live state (with the ingest's facts) and description.
pub fn stream(stream: &Stream) -> String {
    let mut out = format!(
        "name:        {}\ntitle:       {}\ntags:        {}\nlive:        {}\n",
        stream.name,
        stream.title,
        stream.tags.join(", "),
        if stream.live.live { "yes" } else { "no" }
    );
    if stream.live.live {
        for line in live_facts(&stream.live) {
            out.push_str(&format!("  {line}\n"));
        }
    }
    if !stream.description.is_empty() {
        out.push_str(&format!("description:\n{}\n", stream.description));
    }
    out
}

/// Streams as a table: name, live, title and tags, a row each.
pub fn table(streams: &[Stream]) -> String {
    let width = streams
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!("{:width$}  LIVE  TITLE  [TAGS]\n", "NAME");
    for s in streams {
        out.push_str(&format!(
            "{:width$}  {:4}  {}  [{}]\n",
            s.name,
            if s.live.live { "yes" } else { "no" },
            s.title,
            s.tags.join(", ")
        ));
    }
    if streams.is_empty() {
        out.push_str("(no streams)\n");
    }
    out
}

/// The facts the ingest reported about a live stream, one per line.
fn live_facts(live: &LiveState) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(since) = live.since {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        lines.push(format!(
            "since:       {since} (ms since the Unix epoch; {} s ago)",
            (now - since).max(0) / 1000
        ));
    }
    if let Some(node) = &live.ingest_node {
        lines.push(format!("ingest node: {node}"));
    }
    if let Some(bps) = live.ingest_bitrate {
        lines.push(format!("bitrate:     {:.2} Mbit/s", bps as f64 / 1e6));
    }
    if let Some(renditions) = &live.renditions {
        let names = match renditions.as_array() {
            Some(list) => list
                .iter()
                .map(|r| r.as_str().map_or_else(|| r.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(", "),
            None => renditions.to_string(),
        };
        lines.push(format!("renditions:  {names}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_says_so() {
        assert_eq!(table(&[]), "NAME  LIVE  TITLE  [TAGS]\n(no streams)\n");
    }
}
