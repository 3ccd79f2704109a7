//! JSON Lines: one frame a line, read and written as a stream.
//!
//! The reader holds one line at a time, never the whole file, and bounds the length of a
//! line. A line that does not parse yields an error naming its line number; the iterator
//! then goes on with the next line, so a caller can skip bad lines and keep the rest.

use std::io::{self, BufRead, Write};

use crate::frame::Frame;

/// The longest line [`FrameReader`] accepts by default: 512 MiB.
pub const DEFAULT_MAX_LINE: usize = 512 << 20;

/// An error reading one line of a JSON Lines stream.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// The underlying reader failed.
    #[error("line {line}: read error: {source}")]
    Io {
        /// 1-based line number.
        line: u64,
        /// The I/O error.
        source: io::Error,
    },
    /// The line is not a valid frame.
    #[error("line {line}: not a valid frame: {source}")]
    Parse {
        /// 1-based line number.
        line: u64,
        /// What serde_json found wrong (its column is within the line).
        source: serde_json::Error,
    },
    /// The line is longer than the reader's bound; it was skipped.
    #[error("line {line}: longer than {limit} bytes; skipped")]
    TooLong {
        /// 1-based line number.
        line: u64,
        /// The bound in force.
        limit: usize,
    },
}

impl JsonlError {
    /// The 1-based line number the error is about.
    pub fn line(&self) -> u64 {
        match self {
            JsonlError::Io { line, .. }
            | JsonlError::Parse { line, .. }
            | JsonlError::TooLong { line, .. } => *line,
        }
    }
}

/// Reads frames from JSON Lines, one line at a time.
///
/// Blank lines are skipped. Each item is a frame or an error naming its line; after an
/// error the next call reads the next line. An I/O error ends the stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    line: u64,
    max_line: usize,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> FrameReader<R> {
    /// A reader over `inner` with the default line bound.
    pub fn new(inner: R) -> FrameReader<R> {
        FrameReader {
            inner,
            line: 0,
            max_line: DEFAULT_MAX_LINE,
            buf: Vec::new(),
            done: false,
        }
    }

    /// Sets the longest line accepted, in bytes.
    pub fn max_line(mut self, bytes: usize) -> FrameReader<R> {
        self.max_line = bytes;
        self
    }

    /// Reads one line into `self.buf` (without its newline); `Ok(false)` at the end.
    /// A line over the bound is consumed to its end and reported as too long.
    fn next_line(&mut self) -> io::Result<Option<bool>> {
        self.buf.clear();
        let mut too_long = false;
        let mut any = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                return Ok(any.then_some(!too_long));
            }
            any = true;
            let (chunk, found_newline) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], true),
                None => (available, false),
            };
            if !too_long {
                if self.buf.len() + chunk.len() > self.max_line {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            let used = chunk.len() + usize::from(found_newline);
            self.inner.consume(used);
            if found_newline {
                return Ok(Some(!too_long));
            }
        }
    }
}

impl<R: BufRead> Iterator for FrameReader<R> {
    type Item = Result<Frame, JsonlError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let fits = match self.next_line() {
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(fits)) => fits,
                Err(source) => {
                    self.done = true;
                    return Some(Err(JsonlError::Io {
                        line: self.line + 1,
                        source,
                    }));
                }
            };
            self.line += 1;
            if !fits {
                return Some(Err(JsonlError::TooLong {
                    line: self.line,
                    limit: self.max_line,
                }));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(
                serde_json::from_slice(&self.buf).map_err(|source| JsonlError::Parse {
                    line: self.line,
                    source,
                }),
            );
        }
        None
    }
}

/// Writes frames as JSON Lines.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
}

impl<W: Write> FrameWriter<W> {
    /// A writer onto `inner` (wrap a file in a `BufWriter`).
    pub fn new(inner: W) -> FrameWriter<W> {
        FrameWriter { inner }
    }

    /// Writes one frame and its newline.
    pub fn write(&mut self, frame: &Frame) -> io::Result<()> {
        serde_json::to_writer(&mut self.inner, frame).map_err(io::Error::other)?;
        self.inner.write_all(b"\n")
    }

    /// Flushes and returns the inner writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_line_is_skipped_and_reading_goes_on() {
        let a = Frame::new("a").to_json();
        let text = format!("{a}\n{}\n{a}\n", "x".repeat(5000));
        let mut r =
            FrameReader::new(io::BufReader::with_capacity(64, text.as_bytes())).max_line(4000);
        assert!(r.next().unwrap().is_ok());
        match r.next().unwrap() {
            Err(JsonlError::TooLong { line: 2, .. }) => {}
            other => panic!("want TooLong on line 2, got {other:?}"),
        }
        assert_eq!(r.next().unwrap().unwrap().system(), "a");
        assert!(r.next().is_none());
    }

    #[test]
    fn last_line_without_newline_is_read() {
        let a = Frame::new("a").to_json();
        let frames: Vec<_> = FrameReader::new(a.as_bytes()).collect();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].is_ok());
    }
}
