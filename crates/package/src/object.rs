//! The names of the objects a rendition serves: one source of truth for the playlist
//! writer and the origin's router.

/// An object below `/live/NAME/RENDITION/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaObject {
    /// `init-{version}.mp4`
    Init { version: u32 },
    /// `seg-{msn}.m4s`
    Segment { msn: u64 },
    /// `part-{msn}-{part}.m4s`
    Part { msn: u64, part: u32 },
}

impl MediaObject {
    pub fn file_name(&self) -> String {
        match self {
            MediaObject::Init { version } => format!("init-{version}.mp4"),
            MediaObject::Segment { msn } => format!("seg-{msn}.m4s"),
            MediaObject::Part { msn, part } => format!("part-{msn}-{part}.m4s"),
        }
    }

    /// The object a file name denotes, if any.
    pub fn parse(file_name: &str) -> Option<Self> {
        if let Some(v) = file_name
            .strip_prefix("init-")
            .and_then(|s| s.strip_suffix(".mp4"))
        {
            return Some(MediaObject::Init {
                version: parse_number(v)?,
            });
        }
        if let Some(m) = file_name
            .strip_prefix("seg-")
            .and_then(|s| s.strip_suffix(".m4s"))
        {
            return Some(MediaObject::Segment {
                msn: parse_number(m)?,
            });
        }
        let (m, p) = file_name
            .strip_prefix("part-")?
            .strip_suffix(".m4s")?
            .split_once('-')?;
        Some(MediaObject::Part {
            msn: parse_number(m)?,
            part: parse_number(p)?,
        })
    }
}

/// Digits only: no sign, no whitespace, no leading `+`.
fn parse_number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_junk_is_refused() {
        for o in [
            MediaObject::Init { version: 3 },
            MediaObject::Segment { msn: 99 },
            MediaObject::Part { msn: 7, part: 2 },
        ] {
            assert_eq!(MediaObject::parse(&o.file_name()), Some(o));
        }
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
    }
}
