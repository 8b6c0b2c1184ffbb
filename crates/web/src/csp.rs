//! The pages' Content-Security-Policy: what a page may load and run, so that a string
//! a stream's owner controls (title, description, tags, names), were it ever rendered
//! as markup, could still run no script.

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

/// Who may show a page inside a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Any site: the viewer page is the player operators embed.
    Anywhere,
    /// None: the dashboard acts with the admin token (no clickjacking).
    Nowhere,
}

/// The policy for a rendered page: scripts only from this server's assets plus the
/// page's own inline scripts (by hash, so no other inline script runs), requests to
/// this server and the analytics server, media from MSE's `blob:` URLs.
pub(crate) fn policy(html: &str, analytics_origin: Option<&str>, framing: Framing) -> String {
    let scripts: String = inline_scripts(html)
        .map(|s| {
            format!(
                " 'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(Sha256::digest(s))
            )
        })
        .collect();
    let connect = analytics_origin
        .map(|o| format!(" {o}"))
        .unwrap_or_default();
    let frames = match framing {
        Framing::Anywhere => "*",
        Framing::Nowhere => "'none'",
    };
    format!(
        "default-src 'self'; script-src 'self'{scripts}; style-src 'self'; \
         img-src 'self' data: blob:; media-src 'self' blob: data:; connect-src 'self'{connect}; \
         worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors {frames}"
    )
}

/// The origin (`scheme://host[:port]`) of an analytics base URL, if it is one that can
/// stand in a policy (no spaces, quotes or separators).
pub(crate) fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let fits = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    };
    (matches!(scheme, "http" | "https") && fits(authority))
        .then(|| format!("{scheme}://{authority}"))
}

/// The text of each inline script that runs: `<script>` elements without `src` whose
/// type is JavaScript (data blocks such as `type="application/json"` do not run).
fn inline_scripts(html: &str) -> impl Iterator<Item = &str> {
    let mut rest = html;
    std::iter::from_fn(move || {
        loop {
            let start = rest.find("<script")?;
            let tag_end = start + rest[start..].find('>')?;
            let tag = &rest[start..tag_end];
            let body_start = tag_end + 1;
            let body_end = body_start + rest[body_start..].find("</script>")?;
            let body = &rest[body_start..body_end];
            rest = &rest[body_end..];
            let runs = !tag.contains("src=")
                && (!tag.contains("type=") || tag.contains("type=\"module\""));
            if runs {
                return Some(body);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_that_run_are_hashed_and_data_blocks_are_not() {
        let html = "<script>a()</script><script type=\"application/json\">{}</script>\
                    <script type=\"module\" src=\"/x.js\"></script><script type=\"module\">b()</script>";
        assert_eq!(inline_scripts(html).collect::<Vec<_>>(), ["a()", "b()"]);
        let p = policy(html, None, Framing::Nowhere);
        // `echo -n 'a()' | openssl dgst -sha256 -binary | base64`
        assert!(
            p.contains("'sha256-qVpDBgj7bpq5hMAcGp3AOc79J3Y1Z4HvySTwKrWDoy4='"),
            "{p}"
        );
        assert_eq!(p.matches("'sha256-").count(), 2, "{p}");
        assert!(p.ends_with("frame-ancestors 'none'"), "{p}");
        assert!(!p.contains("unsafe"), "{p}");
    }

    #[test]
    fn analytics_origin_is_taken_only_when_it_is_one() {
        assert_eq!(
            origin_of("http://a:8090/").as_deref(),
            Some("http://a:8090")
        );
        assert_eq!(
            origin_of("https://stats.example/x?y").as_deref(),
            Some("https://stats.example")
        );
        assert_eq!(origin_of("http://a; script-src *"), None);
        assert_eq!(origin_of("javascript://x"), None);
        assert_eq!(origin_of("no scheme"), None);
    }
}
