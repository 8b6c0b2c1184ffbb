//! The edge's sans-IO parsing: cache keys from request paths and queries, what it reads
//! in an upstream's media playlist, and the box splitter over upstream bodies.
#![no_main]
use arbitrary::Arbitrary;
use edge::CacheKey;
use edge::boxes::BoxSplitter;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    path: &'a str,
    query: Option<&'a str>,
    playlist: &'a str,
    msn: u64,
    part: Option<u32>,
    body: &'a [u8],
    read: u8,
}

fuzz_target!(|input: Input<'_>| {
    if rivulet_fuzz::debug() {
        eprintln!("{input:#?}");
    }
    // A request path never holds '?' (it starts the query).
    let path_ok = !input.path.contains('?');
    if path_ok && let Ok(key) = CacheKey::new(input.path, input.query) {
        // A key is a fixed point: its own path and query give it back.
        let (path, query) = match key.as_str().split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (key.as_str(), None),
        };
        assert_eq!(path, key.path());
        assert_eq!(CacheKey::new(path, query).as_ref(), Ok(&key));
        assert!(!key.path().split('/').skip(1).any(|s| s.is_empty() || s == ".."));
        let _ = (key.is_playlist(), key.is_part(), key.stream());
        if key.is_blocking() {
            let _ = key.blocking_target();
        }
    }
    let _ = edge::playlist::answers_blocking(input.playlist, input.msn, input.part);
    let _ = edge::playlist::lacks_segments(input.playlist);

    // Whatever the read sizes, the boxes and the rest are the body.
    let mut splitter = BoxSplitter::default();
    let mut got = Vec::new();
    let step = usize::from(input.read.max(1));
    for piece in input.body.chunks(step) {
        splitter.push(piece);
        while let Some(b) = splitter.next_box() {
            got.extend_from_slice(&b);
        }
    }
    got.extend_from_slice(&splitter.rest());
    assert_eq!(got, input.body);
});
