//! Peer-controlled text made safe for one log line.

use std::fmt;

/// Displays a peer-controlled string (RTMP app name, stream key, codec names, error
/// text quoting them) with control characters, ANSI escapes and bidirectional
/// overrides escaped, and at most [`MAX_CHARS`] characters, so that a publisher
/// cannot forge log lines or repaint the operator's terminal.
pub struct Escaped<'a>(pub &'a str);

/// Characters shown at most; the rest is cut with `…`.
pub(crate) const MAX_CHARS: usize = 256;

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_CHARS {
                return f.write_str("…");
            }
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_and_terminal_escapes_stay_on_one_line() {
        let forged = "live\n2026-12-03T00:00:00Z  INFO publishing stream=ceo\x1b[2J\u{202e}";
        let shown = Escaped(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\x1b') && !shown.contains('\u{202e}'));
        assert!(shown.starts_with("live\\n2026"), "{shown}");
        assert!(shown.contains("\\u{1b}[2J"), "{shown}");
        let long = "a".repeat(1000);
        assert_eq!(Escaped(&long).to_string().chars().count(), MAX_CHARS + 1);
        assert_eq!(Escaped("ordinary-key").to_string(), "ordinary-key");
    }
}
