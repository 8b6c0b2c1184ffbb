//! The edge's sans-IO parsing: cache keys from request paths and queries, what it reads
//! in an upstream's media playlist, and the box splitter over upstream bodies.
//!
//! Input: `PATH 0xff QUERY 0xff PLAYLIST 0xff BODY` (0xff never occurs in UTF-8), so
//! real playlists and request lines are seeds as they are.
#![no_main]
use edge::CacheKey;
use edge::boxes::BoxSplitter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fields = data.splitn(4, |&b| b == 0xff);
    let mut text = || String::from_utf8_lossy(fields.next().unwrap_or_default()).into_owned();
    let (path, query, playlist) = (text(), text(), text());
    let body = fields.next().unwrap_or_default();
    let query = (!query.is_empty()).then_some(query.as_str());

    // A request path never holds '?' (it starts the query).
    if !path.contains('?')
        && let Ok(key) = CacheKey::new(&path, query)
    {
        // A key is a fixed point: its own path and query give it back.
        let (p, q) = match key.as_str().split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (key.as_str(), None),
        };
        let canonical = key.live_path().to_string();
        assert_eq!(p, canonical);
        assert_eq!(CacheKey::new(p, q).as_ref(), Ok(&key));
        assert!(
            !canonical
                .split('/')
                .skip(1)
                .any(|s| s.is_empty() || s == "..")
        );
        let _ = (key.is_playlist(), key.is_part(), key.stream());
        if let Some((msn, part)) = key.blocking_target() {
            let _ = edge::playlist::answers_blocking(&playlist, msn, part);
        }
    }
    let n = data.len() as u64;
    let _ = edge::playlist::answers_blocking(&playlist, n % 64, None);
    let _ = edge::playlist::answers_blocking(&playlist, n % 64, Some((n % 7) as u32));
    let _ = edge::playlist::lacks_segments(&playlist);

    // Whatever the read sizes, the boxes and the rest are the body.
    let mut splitter = BoxSplitter::default();
    let mut got = Vec::new();
    let step = usize::from(data.first().copied().unwrap_or(1).max(1));
    for piece in body.chunks(step) {
        splitter.push(piece);
        while let Some(b) = splitter.next_box() {
            got.extend_from_slice(&b);
        }
    }
    got.extend_from_slice(&splitter.rest());
    assert_eq!(got, body);
});
