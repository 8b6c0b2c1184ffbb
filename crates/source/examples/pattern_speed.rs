use std::io::Write;
use source::{FrameRate, Source, SourceFrame, TestPattern, TestPatternConfig};
fn main() {
    let mut p = TestPattern::new(TestPatternConfig { width: 1280, height: 720, frame_rate: FrameRate::new(30, 1), name: "x".into(), start_unix_ms: 1_800_000_000_000, audio: false }).unwrap();
    let mut out = std::io::stdout().lock();
    for _ in 0..300 { if let Some(SourceFrame::Video(v)) = p.next_frame().unwrap() { out.write_all(&v.picture.y).unwrap(); out.write_all(&v.picture.u).unwrap(); out.write_all(&v.picture.v).unwrap(); } }
}
