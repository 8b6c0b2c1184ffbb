//! Which recordings the retention policy removes. Pure: the recorder applies it.

use std::collections::HashMap;
use std::time::Duration;

use crate::vod::Recording;

/// How long recordings are kept. Each limit is off when `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// A recording is removed this long after its stream ended.
    pub max_age: Option<Duration>,
    /// Per stream, the newest recordings are kept while their total size fits; older
    /// ones are removed. The newest recording of a stream is always kept, so that a
    /// limit smaller than one recording does not remove it the moment it is finished.
    pub max_bytes_per_stream: Option<u64>,
}

impl RetentionPolicy {
    pub fn is_off(&self) -> bool {
        self.max_age.is_none() && self.max_bytes_per_stream.is_none()
    }

    /// The ids of the recordings this policy removes at `now_ms` (milliseconds since the
    /// Unix epoch), in no particular order.
    pub fn expired<'a>(
        &self,
        recordings: impl IntoIterator<Item = &'a Recording>,
        now_ms: i64,
    ) -> Vec<String> {
        let mut expired = Vec::new();
        let mut by_stream: HashMap<&str, Vec<&Recording>> = HashMap::new();
        for r in recordings {
            let too_old = self.max_age.is_some_and(|age| {
                let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
                now_ms.saturating_sub(r.ended_at) > age_ms
            });
            if too_old {
                expired.push(r.id.clone());
            } else {
                by_stream.entry(r.stream.as_str()).or_default().push(r);
            }
        }
        if let Some(limit) = self.max_bytes_per_stream {
            for mut recordings in by_stream.into_values() {
                // Newest first; the id breaks ties so the outcome does not depend on
                // the order the recordings were listed in.
                recordings.sort_by(|a, b| b.ended_at.cmp(&a.ended_at).then(b.id.cmp(&a.id)));
                let mut total = 0u64;
                for (i, r) in recordings.into_iter().enumerate() {
                    total = total.saturating_add(r.bytes);
                    if i > 0 && total > limit {
                        expired.push(r.id.clone());
                    }
                }
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, stream: &str, ended_at: i64, bytes: u64) -> Recording {
        Recording {
            id: id.into(),
            stream: stream.into(),
            started_at: ended_at - 1000,
            ended_at,
            duration_ms: 1000,
            bytes,
            renditions: Vec::new(),
            gaps: 0,
            title: String::new(),
            description: String::new(),
            tags: Vec::new(),
            private: false,
            poster: None,
        }
    }

    #[test]
    fn age_removes_only_recordings_older_than_the_limit() {
        let policy = RetentionPolicy {
            max_age: Some(Duration::from_secs(10)),
            max_bytes_per_stream: None,
        };
        let all = [rec("old", "a", 0, 1), rec("new", "a", 15_000, 1)];
        assert_eq!(policy.expired(&all, 20_000), vec!["old".to_owned()]);
        assert!(policy.expired(&all, 10_000).is_empty());
    }

    #[test]
    fn bytes_keep_the_newest_per_stream() {
        let policy = RetentionPolicy {
            max_age: None,
            max_bytes_per_stream: Some(100),
        };
        let all = [
            rec("a1", "a", 1, 60),
            rec("a2", "a", 2, 60),
            rec("a3", "a", 3, 30),
            rec("b1", "b", 1, 500),
        ];
        let mut gone = policy.expired(&all, 10);
        gone.sort();
        // a3 + a2 = 90 fit, a1 makes 150; b1 alone is over the limit but the newest.
        assert_eq!(gone, vec!["a1".to_owned()]);
    }

    #[test]
    fn no_limits_remove_nothing() {
        let all = [rec("a1", "a", 1, 60)];
        assert!(
            RetentionPolicy::default()
                .expired(&all, i64::MAX)
                .is_empty()
        );
    }
}
