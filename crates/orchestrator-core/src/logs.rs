//! What a replica's container printed, as the runtime hands it over: whole lines, each with
//! the stream it went to and when the engine received it.

use std::pin::Pin;
use std::time::SystemTime;

use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

impl OutputStream {
    pub fn as_str(self) -> &'static str {
        match self {
            OutputStream::Stdout => "stdout",
            OutputStream::Stderr => "stderr",
        }
    }
}

/// One line, without its line break; bytes that are not UTF-8 are replaced, a character split
/// across the engine's frames is kept whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: OutputStream,
    pub time: SystemTime,
    pub line: String,
}

/// Which part of the output to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRequest {
    /// Keep reading as the container prints, until it stops.
    pub follow: bool,
    /// Only the last this many lines (of what `since` leaves).
    pub tail: Option<u32>,
    /// Only lines from this time on.
    pub since: Option<SystemTime>,
}

/// A container's lines as they come; an error ends it.
pub type LogLines = Pin<Box<dyn futures_core::Stream<Item = Result<LogLine>> + Send>>;
