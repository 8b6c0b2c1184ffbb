//! A server-sent events parser, sans-IO: push the bytes of a `text/event-stream`
//! body, pull events. Enough of the format (WHATWG HTML, "Server-sent events") for
//! what `/api/streams/{name}/events` sends: `event:` and `data:` fields, comments,
//! blank-line dispatch.

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` if there was none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// The peer sent more than [`MAX_PENDING`] bytes without ending an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an event stream line or event is longer than {MAX_PENDING} bytes")]
pub struct SseOverflow;

/// Bytes buffered at most while an event is incomplete.
pub const MAX_PENDING: usize = 1 << 20;

/// Splits an event stream into events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the current, unfinished line.
    line: Vec<u8>,
    /// Whether the last byte pushed was a CR (a following LF belongs to it).
    after_cr: bool,
    event: Option<String>,
    data: Option<String>,
    ready: std::collections::VecDeque<SseEvent>,
    pending: usize,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds body bytes.
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<(), SseOverflow> {
        for &b in bytes {
            if self.after_cr && b == b'\n' {
                self.after_cr = false;
                continue;
            }
            self.after_cr = b == b'\r';
            if b == b'\n' || b == b'\r' {
                let line = std::mem::take(&mut self.line);
                self.handle_line(&String::from_utf8_lossy(&line));
            } else {
                self.line.push(b);
                self.pending += 1;
                if self.pending > MAX_PENDING {
                    return Err(SseOverflow);
                }
            }
        }
        Ok(())
    }

    /// The next complete event, if any.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }

    fn handle_line(&mut self, line: &str) {
        if line.is_empty() {
            self.pending = 0;
            if let Some(data) = self.data.take() {
                self.ready.push_back(SseEvent {
                    event: self.event.take().unwrap_or_else(|| "message".into()),
                    data,
                });
            }
            self.event = None;
            return;
        }
        if line.starts_with(':') {
            return; // a comment (keep-alive)
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {} // id, retry, unknown fields: not used here
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let body = b": keep-alive\n\nevent: snapshot\ndata: {\"a\":1}\n\nevent:metadata\r\ndata: x\r\ndata: y\r\n\r\ndata: plain\n\n";
        for split in 0..body.len() {
            let mut p = SseParser::new();
            p.handle_input(&body[..split]).unwrap();
            p.handle_input(&body[split..]).unwrap();
            let events: Vec<_> = std::iter::from_fn(|| p.poll_event()).collect();
            assert_eq!(
                events,
                [
                    SseEvent {
                        event: "snapshot".into(),
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        event: "metadata".into(),
                        data: "x\ny".into()
                    },
                    SseEvent {
                        event: "message".into(),
                        data: "plain".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut p = SseParser::new();
        let chunk = vec![b'a'; 64 * 1024];
        let mut result = Ok(());
        for _ in 0..=(MAX_PENDING / chunk.len()) {
            result = p.handle_input(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(SseOverflow));
    }
}
