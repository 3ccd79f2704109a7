//! Frames read back from JSON Lines.

/// Any bytes through the JSON Lines frame reader: errors, never panics.
pub fn frame_jsonl(data: &[u8]) {
    for frame in origami_frame::FrameReader::new(data)
        .max_line(1 << 20)
        .flatten()
    {
        let _ = frame.diff(&origami_frame::Frame::default());
        let _ = frame.to_json();
    }
}
