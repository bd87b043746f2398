//! Replicas that ended badly: why each one ended and the last of what it printed, kept in the
//! store when its container is removed.
//!
//! Captured rather than left on the engine as an exited container: the record is there when
//! the operator looks, also when the node that ran it is gone (the failures one most needs to
//! read are often those of a dying node), a follower serves it without asking any engine, and
//! no engine fills with dead containers that every reconcile pass would list again. The cost is
//! bounded: at most `LAST_WORDS_BYTES` a record, `kept_for` records a deployment, and a crash
//! loop's backoff spaces the writes out.

use std::time::SystemTime;

use crate::logs::LogLine;
use crate::name::{DeploymentName, NodeName};
use crate::replica::ReplicaId;

/// Of what an ended replica printed, at most its last this many bytes are kept.
pub const LAST_WORDS_BYTES: usize = 64 * 1024;
/// Of what an ended replica printed, the runtime is asked for at most this many last lines
/// (then cut to `LAST_WORDS_BYTES`).
pub const LAST_WORDS_LINES: u32 = 2_000;
/// Most records kept for one deployment, however many replicas it has.
pub const MAX_KEPT: usize = 200;

/// Records kept for a deployment of `replicas`: two for each replica it runs (its last two
/// failures, as `docker service ps` shows a slot's), at least two, at most `MAX_KEPT`.
pub fn kept_for(replicas: u32) -> usize {
    usize::try_from(replicas).unwrap_or(usize::MAX).saturating_mul(2).clamp(2, MAX_KEPT)
}

/// Why a replica ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Its container exited by itself (`oom_killed`: the kernel killed it for memory).
    Exited { code: Option<i64>, oom_killed: bool },
    /// Its health check failed its retries; the last check's output.
    Unhealthy { output: Option<String> },
    /// Its container disappeared (removed behind the orchestrator's back).
    Vanished,
    /// Its container never started; the engine's refusal in words.
    NotStarted { error: String },
    /// Its node could not pull its image; why, in words.
    PullFailed { error: String },
}

impl EndReason {
    /// The exit code, when the container exited.
    pub fn exit_code(&self) -> Option<i64> {
        match self {
            EndReason::Exited { code, .. } => *code,
            _ => None,
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EndReason::Exited { code, oom_killed: true } => match code {
                Some(code) => write!(f, "OOM-killed (exit code {code})"),
                None => f.write_str("OOM-killed"),
            },
            EndReason::Exited { code: Some(code), .. } => write!(f, "exit code {code}"),
            EndReason::Exited { code: None, .. } => f.write_str("exited"),
            EndReason::Unhealthy { output: Some(output) } if !output.trim().is_empty() => {
                write!(f, "unhealthy: {}", output.trim())
            }
            EndReason::Unhealthy { .. } => f.write_str("unhealthy: its health check failed its retries"),
            EndReason::Vanished => f.write_str("its container vanished"),
            EndReason::NotStarted { error } => write!(f, "did not start: {error}"),
            EndReason::PullFailed { error } => write!(f, "image not pulled: {error}"),
        }
    }
}

/// One replica that ended, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaExit {
    pub replica: ReplicaId,
    pub deployment: DeploymentName,
    pub node: NodeName,
    pub revision: u64,
    pub started_at: Option<SystemTime>,
    pub ended_at: SystemTime,
    pub reason: EndReason,
    /// Its last lines, oldest first, at most `LAST_WORDS_BYTES` of them.
    pub logs: Vec<LogLine>,
}

/// The newest lines of `lines` (oldest first) that fit in `LAST_WORDS_BYTES`, counting each
/// line's bytes and its line break; a single line longer than that keeps its end.
pub fn last_words(mut lines: Vec<LogLine>) -> Vec<LogLine> {
    let mut budget = LAST_WORDS_BYTES;
    let mut keep_from = lines.len();
    while keep_from > 0 {
        let size = lines[keep_from - 1].line.len() + 1;
        if size > budget {
            break;
        }
        budget -= size;
        keep_from -= 1;
    }
    if keep_from == lines.len()
        && let Some(last) = lines.last_mut()
    {
        // Nothing fits whole: the end of the last line is what it said last.
        let mut cut = last.line.len() - (LAST_WORDS_BYTES - 1);
        while !last.line.is_char_boundary(cut) {
            cut += 1;
        }
        last.line.drain(..cut);
        keep_from -= 1;
    }
    lines.drain(..keep_from);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::OutputStream;

    fn line(text: String) -> LogLine {
        LogLine { stream: OutputStream::Stdout, time: SystemTime::UNIX_EPOCH, line: text }
    }

    #[test]
    fn the_newest_lines_that_fit_are_kept() {
        let lines: Vec<LogLine> = (0..2_000).map(|i| line(format!("{i:099}"))).collect();
        let kept = last_words(lines);
        assert_eq!(kept.len(), LAST_WORDS_BYTES / 100);
        assert_eq!(kept.last().unwrap().line, format!("{:099}", 1_999));
        assert!(kept.iter().map(|l| l.line.len() + 1).sum::<usize>() <= LAST_WORDS_BYTES);
        let few = vec![line("a".into()), line("b".into())];
        assert_eq!(last_words(few.clone()), few);
    }

    #[test]
    fn one_line_too_long_keeps_its_end_on_a_character_boundary() {
        let long = "é".repeat(LAST_WORDS_BYTES);
        let kept = last_words(vec![line("before".into()), line(long)]);
        assert_eq!(kept.len(), 1);
        assert!(kept[0].line.len() < LAST_WORDS_BYTES && kept[0].line.len() > LAST_WORDS_BYTES - 4);
        assert!(kept[0].line.chars().all(|c| c == 'é'));
    }

    #[test]
    fn reasons_read_as_an_operator_would_say_them() {
        let said = |r: EndReason| r.to_string();
        assert_eq!(said(EndReason::Exited { code: Some(3), oom_killed: false }), "exit code 3");
        assert_eq!(said(EndReason::Exited { code: Some(137), oom_killed: true }), "OOM-killed (exit code 137)");
        assert_eq!(
            said(EndReason::Unhealthy { output: Some("wget: can't connect\n".into()) }),
            "unhealthy: wget: can't connect"
        );
        assert_eq!(
            said(EndReason::NotStarted { error: "image \"x\" not found on node \"node2\"".into() }),
            "did not start: image \"x\" not found on node \"node2\""
        );
    }

    #[test]
    fn two_records_a_replica_within_bounds() {
        assert_eq!((kept_for(0), kept_for(3), kept_for(1_000)), (2, 6, MAX_KEPT));
    }
}
