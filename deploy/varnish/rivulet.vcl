# Varnish (7.x, Debian 12's `varnish`) as an LL-HLS cache in front of `rivulet serve`
# (an origin) or `rivulet edge` (a shield). Tested by crates/rivulet/tests/behind_caches.rs;
# see docs/deployment.md, "Behind Varnish or nginx".
#
#   varnishd -a :80 -f /etc/varnish/rivulet.vcl -s malloc,1G
#
# What the origin already does, so that this file stays short:
#   - every object carries an honest Cache-Control: parts, segments and init segments
#     `public, max-age=300, immutable`; answers to blocking playlist reloads (URLs with
#     _HLS_msn/_HLS_part) `public, max-age=0, s-maxage=1`; plain playlists `no-cache`; errors and a
#     part that does not exist yet `no-store`.
#   - a blocking reload and the next part (the preload hint) are held at the origin
#     until they exist, so Varnish's waiting list coalesces every viewer asking for them
#     into one origin request, and streaming (do_stream, on by default) hands the part
#     to all of them chunk by chunk while it is being produced.
#   - no `Vary`: one object per URL.
# What Varnish must be told: the cache key is the path and the LL-HLS query only.

vcl 4.1;

# The origin (or a `rivulet edge` shield). Several origins: use a director
# (vmod_directors fallback) over one backend each, A first.
backend origin {
    .host = "127.0.0.1";
    .port = "8080";
    # A blocking reload is answered within three target durations (6 s by default);
    # a part being produced streams for up to one part duration between chunks.
    .first_byte_timeout = 15s;
    .between_bytes_timeout = 10s;
    .connect_timeout = 1s;
}

sub vcl_recv {
    if (req.url !~ "^/live/") {
        # The API, the dashboard, /metrics, /watch pages: not for a shared cache.
        return (pass);
    }
    if (req.method != "GET" && req.method != "HEAD") {
        return (pass);
    }
    # Media needs no cookie; the builtin VCL would refuse to cache with one. (A
    # playback token, in the query or a header, goes to the origin with the request
    # that fetches, and is never part of the key.)
    unset req.http.Cookie;
    return (hash);
}

sub vcl_hash {
    # The key: host, path, and the LL-HLS query (_HLS_msn, _HLS_part, _HLS_skip) in a
    # fixed order. Any other query parameter (CMCD data, a playback token, a cache
    # buster) still reaches the origin but never splits the cache.
    hash_data(req.http.host);
    hash_data(regsub(req.url, "\?.*$", ""));
    if (req.url ~ "[?&]_HLS_msn=") {
        hash_data("msn=" + regsub(req.url, "^.*[?&]_HLS_msn=([^&]*).*$", "\1"));
    }
    if (req.url ~ "[?&]_HLS_part=") {
        hash_data("part=" + regsub(req.url, "^.*[?&]_HLS_part=([^&]*).*$", "\1"));
    }
    if (req.url ~ "[?&]_HLS_skip=") {
        hash_data("skip=" + regsub(req.url, "^.*[?&]_HLS_skip=([^&]*).*$", "\1"));
    }
    return (lookup);
}

sub vcl_backend_response {
    # Hand bytes to every waiting viewer as they arrive (the default; said here
    # because LL-HLS depends on it: the preload-hint part is produced while it is sent).
    set beresp.do_stream = true;
    if (bereq.url !~ "^/live/") {
        return (deliver);
    }
    if (beresp.status >= 400) {
        # Errors are `no-store` (a part that is not there *yet*). The builtin VCL would
        # remember "do not cache" for 120 s, which would also stop coalescing for that
        # URL; a second is enough.
        set beresp.ttl = 1s;
        set beresp.uncacheable = true;
        return (deliver);
    }
    if (beresp.http.Cache-Control ~ "no-cache" && beresp.http.Cache-Control !~ "no-store|private") {
        # A plain playlist: never served from cache, but the viewers that asked while it
        # was being fetched (the waiting list) all get this one answer.
        set beresp.ttl = 0s;
        set beresp.grace = 0s;
        set beresp.keep = 0s;
        return (deliver);
    }
    # Everything else: the builtin rules, which honour Cache-Control (max-age, s-maxage,
    # stale-while-revalidate as grace).
}

sub vcl_deliver {
    # Which answers came from the cache, for operators (like the edge's X-Cache).
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
