//! The stream front: what each frame of a source's command stream means to the applier,
//! decided once for every source (replication link, AOF) and every sink (one server, a
//! cluster). The sinks decide only how to apply what the front lets through.
//!
//! - PING, REPLCONF: the link's own traffic (REPLCONF GETACK asks for an ACK).
//! - MULTI/EXEC: the source's transactions, kept whole by the sinks.
//! - PUBLISH and SPUBLISH: dropped unless `sync.forward_publish` (Sentinel's hello
//!   messages always).
//! - SELECT: the stream's db.
//! - Past the cutover's fence: never applied over the target's own writes; counted and
//!   logged.
//! - `#TS:<unix time>` annotations (AOF): skipped, or the end of the stream when later than
//!   the point in time asked for (`--until`).

use std::ops::Range;

use resp::{FrameKind, RequestParser};

use crate::status::SyncStatus;

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to apply (its bytes still count in the offsets).
    Skip,
    /// REPLCONF GETACK: acknowledge what is applied.
    GetAck,
    Multi,
    Exec,
    /// SELECT of this db (source numbering).
    Select(u32),
    /// Apply the command.
    Apply,
    /// The stream ends here (the point in time asked for): nothing from this frame on.
    Stop,
    /// Not a command a Redis writes in a stream (a corrupted file).
    Invalid,
}

#[derive(Debug, Clone)]
pub struct Front {
    forward_publish: bool,
    until: Option<i64>,
}

impl Front {
    pub fn new(forward_publish: bool, until: Option<i64>) -> Front {
        Front {
            forward_publish,
            until,
        }
    }

    /// The step for the frame `parser` just parsed at the start of `buf`, ending at stream
    /// offset `end`.
    pub fn step(
        &self,
        parser: &RequestParser,
        kind: FrameKind,
        buf: &[u8],
        end: i64,
        status: &SyncStatus,
    ) -> Step {
        match kind {
            FrameKind::Empty => Step::Skip,
            // Inline arguments index the parser's re-encoded copy.
            FrameKind::Inline => {
                let first = parser
                    .args()
                    .first()
                    .map(|r| &parser.inline_encoded()[r.clone()]);
                self.inline(first.unwrap_or(&[]))
            }
            FrameKind::Multibulk => self.command(buf, parser.args(), end, status),
        }
    }

    /// A multibulk command; `frame` its bytes, `args` its arguments' ranges in them.
    fn command(&self, frame: &[u8], args: &[Range<usize>], end: i64, status: &SyncStatus) -> Step {
        let arg = |i: usize| -> &[u8] { args.get(i).map(|r| &frame[r.clone()]).unwrap_or(&[]) };
        // Lower-cased on the stack: this runs for every command of the stream.
        let mut lower = [0u8; 16];
        let raw = arg(0);
        let name: &[u8] = match lower.get_mut(..raw.len()) {
            Some(buf) => {
                buf.copy_from_slice(raw);
                buf.make_ascii_lowercase();
                buf
            }
            None => raw,
        };
        let past_fence = status.fence().is_some_and(|f| end > f);
        // cutover's own writes (FINISH marks the source, the attempt marker goes) and what
        // only frames them are not the applications' writes.
        let own = arg(1).starts_with(crate::checkpoint::OWN_PREFIX);
        if past_fence && (own || matches!(name, b"select" | b"multi" | b"exec")) {
            return Step::Skip;
        }
        if past_fence && !matches!(name, b"ping" | b"replconf") {
            // After the switch the target takes writes itself: a source write past the
            // fence is never applied over them. Reported, not lost silently.
            SyncStatus::add(&status.writes_after_fence, 1);
            tracing::error!(
                command = %String::from_utf8_lossy(name),
                offset = end,
                "the source was written after the cutover's fence; not applied"
            );
            return Step::Skip;
        }
        if arg(1).starts_with(crate::checkpoint::OWN_PREFIX) {
            // cutover's own keys on the source (the cutover's attempt marker).
            return Step::Skip;
        }
        match name {
            b"ping" => Step::Skip,
            b"replconf" if arg(1).eq_ignore_ascii_case(b"getack") => Step::GetAck,
            b"replconf" => Step::Skip,
            b"multi" => Step::Multi,
            b"exec" => Step::Exec,
            b"publish" | b"spublish"
                if !self.forward_publish || arg(1) == b"__sentinel__:hello" =>
            {
                Step::Skip
            }
            b"select" => match std::str::from_utf8(arg(1))
                .ok()
                .and_then(|s| s.parse().ok())
            {
                Some(n) => Step::Select(n),
                // The target refuses it, naming it.
                None => Step::Apply,
            },
            _ => Step::Apply,
        }
    }

    /// An inline frame: a keepalive newline (link), an annotation (AOF), or garbage.
    fn inline(&self, first: &[u8]) -> Step {
        if first.is_empty() {
            return Step::Skip;
        }
        if first.first() != Some(&b'#') {
            return Step::Invalid;
        }
        if let (Some(until), Some(ts)) = (self.until, annotation_time(first)) {
            if ts > until {
                return Step::Stop;
            }
        }
        Step::Skip
    }
}

/// The time of a `#TS:<unix seconds>` annotation.
pub fn annotation_time(word: &[u8]) -> Option<i64> {
    let rest = word.strip_prefix(b"#TS:")?;
    std::str::from_utf8(rest).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests;
