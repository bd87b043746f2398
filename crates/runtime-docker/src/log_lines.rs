//! The engine's log frames made into whole lines. With `timestamps`, each frame the engine
//! sends starts with its RFC 3339 time and a space; a long line comes as several frames (the
//! engine cuts at 16 KiB, possibly inside a UTF-8 character), so bytes are joined per stream
//! and decoded only once the line is whole.
//!
//! The engine's copier cuts a line only when its 16 KiB buffer is full, so a frame that does
//! not end in a line break and is shorter than that ends its line too: the `local` log driver
//! drops the line break after the last part of a cut line (and a container's last output may
//! have none).

use std::time::SystemTime;

use orchestrator_core::{LogLine, OutputStream};

/// A line longer than this is handed on in pieces: memory stays bounded whatever a container
/// prints.
const MAX_LINE: usize = 1 << 20;
/// The size of the engine's copy buffer: only a frame this long continues a line.
const ENGINE_CHUNK: usize = 16 * 1024;

#[derive(Default)]
pub(crate) struct LineAssembler {
    /// The unfinished line of stdout and of stderr, with the time of its first frame.
    partial: [Option<(SystemTime, Vec<u8>)>; 2],
    /// Lines before this are dropped (the engine's `since` counts whole seconds).
    since: Option<SystemTime>,
}

fn slot(stream: OutputStream) -> usize {
    match stream {
        OutputStream::Stdout => 0,
        OutputStream::Stderr => 1,
    }
}

fn stream_of(slot: usize) -> OutputStream {
    if slot == 0 { OutputStream::Stdout } else { OutputStream::Stderr }
}

/// `2026-12-02T19:00:00.123456789Z rest` -> (that time, rest); a frame without one keeps
/// all its bytes and gets `now`.
fn split_time(frame: &[u8], now: SystemTime) -> (SystemTime, &[u8]) {
    let Some(space) = frame.iter().position(|b| *b == b' ') else { return (now, frame) };
    let parsed = std::str::from_utf8(&frame[..space]).ok().and_then(|t| humantime::parse_rfc3339_weak(t).ok());
    match parsed {
        Some(time) => (time, &frame[space + 1..]),
        None => (now, frame),
    }
}

impl LineAssembler {
    pub(crate) fn since(since: Option<SystemTime>) -> Self {
        Self { since, ..Self::default() }
    }

    /// Takes one frame of `stream`; the lines it completes go to `out`.
    pub(crate) fn push(&mut self, stream: OutputStream, frame: &[u8], now: SystemTime, out: &mut Vec<LogLine>) {
        let (time, mut rest) = split_time(frame, now);
        let ends_line = rest.len() < ENGINE_CHUNK && rest.last() != Some(&b'\n');
        let slot = slot(stream);
        while !rest.is_empty() {
            let (piece, ended) = match rest.iter().position(|b| *b == b'\n') {
                Some(end) => (&rest[..end], true),
                None => (rest, false),
            };
            rest = &rest[(piece.len() + usize::from(ended)).min(rest.len())..];
            let (_, bytes) = self.partial[slot].get_or_insert_with(|| (time, Vec::new()));
            bytes.extend_from_slice(piece);
            if (ended || bytes.len() >= MAX_LINE)
                && let Some((started, bytes)) = self.partial[slot].take()
            {
                self.emit(stream, started, bytes, out);
            }
        }
        if ends_line && let Some((started, bytes)) = self.partial[slot].take() {
            self.emit(stream, started, bytes, out);
        }
    }

    /// The stream ended: what is left of each stream's last line.
    pub(crate) fn finish(&mut self, out: &mut Vec<LogLine>) {
        for slot in 0..2 {
            if let Some((time, bytes)) = self.partial[slot].take() {
                self.emit(stream_of(slot), time, bytes, out);
            }
        }
    }

    fn emit(&self, stream: OutputStream, time: SystemTime, mut bytes: Vec<u8>, out: &mut Vec<LogLine>) {
        if self.since.is_some_and(|since| time < since) {
            return;
        }
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let line = String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        out.push(LogLine { stream, time, line });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const T1: &str = "2026-12-02T19:00:01.000000001Z ";
    const T2: &str = "2026-12-02T19:00:02.5Z ";

    fn frame(time: &str, bytes: &[u8]) -> Vec<u8> {
        [time.as_bytes(), bytes].concat()
    }

    #[test]
    fn a_character_cut_between_two_frames_arrives_whole_with_the_first_frames_time() {
        let euro = "€".as_bytes();
        let mut lines = Vec::new();
        let mut assembler = LineAssembler::default();
        let now = SystemTime::UNIX_EPOCH;
        let cut = [vec![b'a'; ENGINE_CHUNK - 1], euro[..1].to_vec()].concat();
        assembler.push(OutputStream::Stdout, &frame(T1, &cut), now, &mut lines);
        assembler.push(OutputStream::Stderr, &frame(T2, b"err\n"), now, &mut lines);
        assert_eq!(lines.len(), 1, "stdout's line is not whole yet");
        assembler.push(OutputStream::Stdout, &frame(T2, &[&euro[1..], b"b\nnext\r\n"].concat()), now, &mut lines);
        let got: Vec<(&str, &str)> = lines.iter().map(|l| (l.stream.as_str(), l.line.as_str())).collect();
        let whole = format!("{}€b", "a".repeat(ENGINE_CHUNK - 1));
        assert_eq!(got, [("stderr", "err"), ("stdout", whole.as_str()), ("stdout", "next")]);
        let t1 = humantime::parse_rfc3339_weak(T1.trim()).unwrap();
        assert_eq!(lines[1].time, t1);
        assert_eq!(t1.duration_since(SystemTime::UNIX_EPOCH).unwrap().subsec_nanos(), 1);
    }

    #[test]
    fn a_short_frame_without_a_line_break_ends_its_line_and_lines_before_since_are_dropped() {
        let since = humantime::parse_rfc3339_weak("2026-12-02T19:00:02Z").unwrap();
        let mut assembler = LineAssembler::since(Some(since));
        let mut lines = Vec::new();
        let now = since + Duration::from_secs(60);
        assembler.push(OutputStream::Stdout, &frame(T1, b"old\n"), now, &mut lines);
        assembler.push(OutputStream::Stdout, &frame(T2, b"new\nunfinished"), now, &mut lines);
        assembler.push(OutputStream::Stdout, b"no-time-here\n", now, &mut lines);
        assembler.finish(&mut lines);
        let got: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(got, ["new", "unfinished", "no-time-here"]);
        let mut bad = LineAssembler::default();
        bad.push(OutputStream::Stdout, &frame(T1, b"\xff\xfe\n"), now, &mut lines);
        assert_eq!(lines.last().unwrap().line, "\u{fffd}\u{fffd}");
    }

    #[test]
    fn an_endless_line_is_handed_on_in_bounded_pieces() {
        let mut assembler = LineAssembler::default();
        let mut lines = Vec::new();
        let chunk = vec![b'x'; ENGINE_CHUNK];
        for _ in 0..(MAX_LINE / chunk.len() + 1) {
            assembler.push(OutputStream::Stdout, &frame(T1, &chunk), SystemTime::UNIX_EPOCH, &mut lines);
        }
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line.len(), MAX_LINE);
    }
}
