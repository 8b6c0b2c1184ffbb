//! The one-line live status of a publish session on stderr.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::LiveStats;
use crate::publish::{UrlState, UrlStatus};

/// The one-line live status: uptime, fps, bitrate, drops, each URL's state; a
/// progress bar for a file. Redrawn in place on a terminal, a line every 10 s in logs.
pub(crate) struct StatusLine {
    stats: Arc<LiveStats>,
    urls: Vec<Arc<UrlStatus>>,
    file: bool,
    terminal: bool,
    last: (Duration, u64, u64),
    printed: Duration,
}

impl StatusLine {
    pub(crate) fn new(stats: Arc<LiveStats>, urls: Vec<Arc<UrlStatus>>, file: bool) -> Self {
        Self {
            stats,
            urls,
            file,
            terminal: std::io::stderr().is_terminal(),
            last: (Duration::ZERO, 0, 0),
            printed: Duration::ZERO,
        }
    }

    fn line(&mut self, uptime: Duration) -> String {
        let frames = self.stats.video_frames.load(Ordering::Relaxed);
        let bytes = self.stats.bytes.load(Ordering::Relaxed);
        let (t0, f0, b0) = self.last;
        let dt = (uptime - t0).as_secs_f64().max(0.001);
        let fps = (frames - f0) as f64 / dt;
        let mbps = (bytes - b0) as f64 * 8.0 / dt / 1e6;
        self.last = (uptime, frames, bytes);
        let secs = uptime.as_secs();
        let mut line = format!(
            "{:02}:{:02}:{:02}  {fps:5.1} fps  {mbps:5.2} Mbit/s  dropped {}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            self.stats.dropped_frames.load(Ordering::Relaxed)
                + self.urls.iter().map(|u| u.dropped_frames()).sum::<u64>()
        );
        if self.file {
            let (pos, len) = (
                self.stats.position_ms.load(Ordering::Relaxed),
                self.stats.duration_ms.load(Ordering::Relaxed),
            );
            if pos >= 0 && len > 0 {
                let filled = (pos * 20 / len).clamp(0, 20) as usize;
                line.push_str(&format!(
                    "  [{}{}] {}/{}",
                    "#".repeat(filled),
                    ".".repeat(20 - filled),
                    clock(pos),
                    clock(len)
                ));
            }
        }
        for u in &self.urls {
            let state = match u.state() {
                UrlState::Connecting => "connecting".to_owned(),
                UrlState::Publishing => "publishing".to_owned(),
                UrlState::Retrying { error } => format!("retrying ({error})"),
                UrlState::Stopped => "stopped".to_owned(),
            };
            line.push_str(&format!("  | {} {state}", u.url));
        }
        line
    }

    pub(crate) fn print(&mut self, uptime: Duration) {
        let line = self.line(uptime);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else if uptime >= self.printed + Duration::from_secs(10) {
            self.printed = uptime;
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// The last line: averages over the whole run.
    pub(crate) fn finish(&mut self, uptime: Duration) {
        self.last = (Duration::ZERO, 0, 0);
        let line = self.line(uptime);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = writeln!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}

fn clock(ms: i64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}", s / 60, s % 60)
}
