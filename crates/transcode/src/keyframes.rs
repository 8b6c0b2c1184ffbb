//! Where the ladder's IDR frames go.
//!
//! Two pipelines fed by one encoder (A and B) must cut identical segments, so the rule
//! uses nothing but the media time of each picture: the first picture at or after each
//! multiple of the segment target starts a segment (an IDR in every rung). With a
//! passthrough `source` rendition beside the ladder, the packager can cut the source
//! only at its own keyframes, so the rungs wait for the first *source keyframe* in
//! each segment interval instead, and every rendition cuts at the same picture.

/// Decides, picture by picture in presentation order, which ones the encoders of
/// every rung must code as IDR frames. Pure: media time in, decisions out.
#[derive(Clone, Debug)]
pub struct KeyframePlanner {
    /// The segment target in the pictures' timescale (at least 1).
    segment_ticks: i64,
    /// Wait for a source keyframe in each interval (a passthrough rendition is cut
    /// alongside the ladder).
    align_to_source_keyframes: bool,
    /// The segment interval of the last forced IDR.
    last_forced_interval: Option<i64>,
}

impl KeyframePlanner {
    /// `segment_ticks`: the segment target in the timescale of the pts passed to
    /// [`KeyframePlanner::place`]; values below 1 count as 1.
    pub fn new(segment_ticks: i64, align_to_source_keyframes: bool) -> Self {
        Self {
            segment_ticks: segment_ticks.max(1),
            align_to_source_keyframes,
            last_forced_interval: None,
        }
    }

    /// A new timeline (new tracks from the publisher): the next eligible picture
    /// starts a segment whatever came before.
    pub fn reset(&mut self) {
        self.last_forced_interval = None;
    }

    /// Whether the picture at `pts` (whose source frame was a keyframe if
    /// `source_keyframe`) must be an IDR in every rung.
    #[must_use]
    pub fn place(&mut self, pts: i64, source_keyframe: bool) -> bool {
        let interval = pts.div_euclid(self.segment_ticks);
        let force = self.last_forced_interval != Some(interval)
            && (source_keyframe || !self.align_to_source_keyframes);
        if force {
            self.last_forced_interval = Some(interval);
        }
        force
    }
}

/// One rung's IDRs asked for by outputs (a WebRTC viewer joining between keyframes):
/// granted on the first picture at least `interval` after the rung's last IDR, so
/// that viewers coming and going cost the rung at most one extra IDR per interval.
/// Any IDR (a planned one too) answers what was asked before it. Pure: media time in,
/// decisions out.
#[derive(Clone, Debug)]
pub struct RequestedIdrs {
    /// The least time between two IDRs when the second is only asked for, in the
    /// pictures' timescale.
    interval: i64,
    asked: bool,
    last_idr: Option<i64>,
}

impl RequestedIdrs {
    pub fn new(interval: i64) -> Self {
        Self {
            interval,
            asked: false,
            last_idr: None,
        }
    }

    /// An output asked for an IDR.
    pub fn ask(&mut self) {
        self.asked = true;
    }

    /// Whether the picture at `pts` should be an IDR for what was asked.
    #[must_use]
    pub fn due(&self, pts: i64) -> bool {
        self.asked
            && self
                .last_idr
                .is_none_or(|last| pts.saturating_sub(last) >= self.interval)
    }

    /// The picture at `pts` went to the encoder as an IDR.
    pub fn handle_idr(&mut self, pts: i64) {
        self.asked = false;
        self.last_idr = Some(pts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_asked_idr_comes_at_once_or_an_interval_after_the_last() {
        let mut r = RequestedIdrs::new(SEGMENT / 2);
        assert!(!r.due(0), "nothing asked");
        r.ask();
        assert!(r.due(0), "no IDR yet: at once");
        r.handle_idr(0);
        assert!(!r.due(FRAME), "answered");
        // Asked again right after: waits for the interval, however often asked.
        r.ask();
        r.ask();
        let granted: Vec<i64> = (1..=60)
            .map(|i| i * FRAME)
            .filter(|&pts| {
                let due = r.due(pts);
                if due {
                    r.handle_idr(pts);
                    r.ask();
                }
                due
            })
            .collect();
        assert_eq!(granted, vec![90_000, 180_000], "one per interval");
    }

    #[test]
    fn a_planned_idr_answers_what_was_asked_before_it() {
        let mut r = RequestedIdrs::new(SEGMENT / 2);
        r.handle_idr(0);
        r.ask();
        assert!(!r.due(30 * FRAME - 1));
        // The segment boundary's IDR came first: nothing more is owed.
        r.handle_idr(30 * FRAME);
        assert!(!r.due(60 * FRAME));
    }

    /// 30 fps in a 90 kHz timescale.
    const FRAME: i64 = 3000;
    /// A 2 s segment target.
    const SEGMENT: i64 = 180_000;

    fn forced(
        planner: &mut KeyframePlanner,
        pictures: impl Iterator<Item = (i64, bool)>,
    ) -> Vec<i64> {
        pictures
            .filter_map(|(pts, key)| planner.place(pts, key).then_some(pts))
            .collect()
    }

    #[test]
    fn the_first_picture_of_each_segment_interval_is_an_idr() {
        let mut p = KeyframePlanner::new(SEGMENT, false);
        let pictures = (0..300).map(|i| (i * FRAME, false));
        assert_eq!(
            forced(&mut p, pictures),
            vec![0, 180_000, 360_000, 540_000, 720_000]
        );
    }

    #[test]
    fn a_picture_late_for_its_boundary_still_starts_the_segment() {
        let mut p = KeyframePlanner::new(SEGMENT, false);
        // No picture falls on 180000 exactly: the first one after it is the IDR.
        let pictures = [0, 90_000, 181_001, 184_000, 361_500].map(|t| (t, false));
        assert_eq!(
            forced(&mut p, pictures.into_iter()),
            vec![0, 181_001, 361_500]
        );
    }

    #[test]
    fn aligned_to_the_source_it_waits_for_a_source_keyframe_in_each_interval() {
        let mut p = KeyframePlanner::new(SEGMENT, true);
        // Source keyframes every 2.5 s: the interval [2 s, 4 s) has one at 2.5 s,
        // [4 s, 6 s) at 5 s, and [6 s, 8 s) at 7.5 s.
        let pictures = (0..300).map(|i| (i * FRAME, (i * FRAME) % 225_000 == 0));
        assert_eq!(forced(&mut p, pictures), vec![0, 225_000, 450_000, 675_000]);
    }

    #[test]
    fn never_two_idrs_in_one_interval() {
        let mut p = KeyframePlanner::new(SEGMENT, true);
        // Source keyframes on every picture (an all-intra source).
        let pictures = (0..120).map(|i| (i * FRAME, true));
        assert_eq!(forced(&mut p, pictures), vec![0, 180_000]);
    }

    #[test]
    fn two_pipelines_joining_at_different_pictures_agree_from_the_next_boundary() {
        let all: Vec<(i64, bool)> = (0..600).map(|i| (i * FRAME + 700, false)).collect();
        let mut a = KeyframePlanner::new(SEGMENT, false);
        let mut b = KeyframePlanner::new(SEGMENT, false);
        let from_a = forced(&mut a, all.iter().copied());
        // B starts 1.3 s later (its first picture is an IDR of its own).
        let from_b = forced(&mut b, all.iter().copied().skip(39));
        let boundary = 2 * SEGMENT;
        let after = |v: &[i64]| {
            v.iter()
                .copied()
                .filter(|t| *t >= boundary)
                .collect::<Vec<_>>()
        };
        assert_eq!(after(&from_a), after(&from_b));
        assert_eq!(after(&from_a).len(), 8);
    }

    #[test]
    fn reset_starts_a_new_timeline_even_within_an_interval() {
        let mut p = KeyframePlanner::new(SEGMENT, false);
        assert!(p.place(0, false));
        assert!(!p.place(FRAME, false));
        p.reset();
        assert!(p.place(2 * FRAME, false));
    }

    #[test]
    fn negative_times_and_a_zero_target_are_handled() {
        let mut p = KeyframePlanner::new(0, false);
        assert!(p.place(-5, false));
        assert!(p.place(-4, false));
        let mut p = KeyframePlanner::new(SEGMENT, false);
        assert!(p.place(-FRAME, false));
        assert!(p.place(0, false));
        assert!(!p.place(FRAME, false));
    }
}
