//! What one replication link owns when several links share the target (a Redis Cluster
//! source: one link per master).
//!
//! Why: each link applies its master's stream on its own, with its own offsets. That is
//! only sound while every key the link touches belongs to its master's slots and nothing
//! it applies reaches beyond them. So a link's scope is its slot ranges, and:
//! - its checkpoint has a key of its own (`__cutover:checkpoint:<first slot>`);
//! - a stream command for a key in another link's slot means the source's slots moved
//!   (a migration: the new owner's stream carries the keys as RESTOREs while the old
//!   owner's carries their deletion, in no order relative to each other): the link stops
//!   with an error naming the slot, before applying it;
//! - keyless commands that wipe or swap the whole dataset (FLUSHALL, FLUSHDB, SWAPDB,
//!   FUNCTION FLUSH, FUNCTION RESTORE ... FLUSH) would wipe the other links' keys too: the
//!   link stops with an error naming the command and the link ([`LinkScope::check`]).

use std::ops::Range;

use cluster::slots::{key_slot, SLOT_COUNT};
use resp::command;

use crate::SyncError;

/// One link's share of a cluster source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkScope {
    /// The master's address, for messages.
    pub label: String,
    /// Inclusive slot ranges, ascending.
    pub ranges: Vec<(u16, u16)>,
    /// Its checkpoint hash ([`crate::checkpoint::link_key`] of its first slot).
    pub checkpoint_key: Vec<u8>,
    owned: Box<[bool]>,
}

impl LinkScope {
    pub fn new(label: String, ranges: Vec<(u16, u16)>) -> LinkScope {
        let mut owned = vec![false; usize::from(SLOT_COUNT)].into_boxed_slice();
        for &(lo, hi) in &ranges {
            for s in lo..=hi {
                if let Some(o) = owned.get_mut(usize::from(s)) {
                    *o = true;
                }
            }
        }
        let checkpoint_key = crate::checkpoint::link_key(ranges.first().map_or(0, |r| r.0));
        LinkScope {
            label,
            ranges,
            checkpoint_key,
            owned,
        }
    }

    pub fn owns(&self, slot: u16) -> bool {
        self.owned.get(usize::from(slot)).copied().unwrap_or(false)
    }

    /// The first slot it serves (its checkpoint is named after it).
    pub fn first_slot(&self) -> u16 {
        self.ranges.first().map_or(0, |r| r.0)
    }

    /// Every slot it serves, ascending.
    pub fn slots(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|&(lo, hi)| lo..=hi)
    }

    /// `0-5460,7000` style.
    pub fn ranges_text(&self) -> String {
        ranges_text(&self.ranges)
    }

    /// Checks one stream command (`name` lower-cased) before it is applied: an error for a
    /// key in a slot this link does not serve, or a command that reaches every key.
    /// PUBLISH is not a key (its channel may hash anywhere) and passes.
    pub fn check(&self, name: &[u8], cmd: &[u8], args: &[Range<usize>]) -> Result<(), SyncError> {
        let arg = |i: usize| -> &[u8] { args.get(i).map(|r| &cmd[r.clone()]).unwrap_or(&[]) };
        let sub = || arg(1).to_ascii_lowercase();
        let whole = match name {
            b"flushall" | b"flushdb" | b"swapdb" => true,
            b"function" => {
                let s = sub();
                s == b"flush"
                    || (s == b"restore" && args.len() > 3 && arg(3).eq_ignore_ascii_case(b"flush"))
            }
            _ => false,
        };
        if whole {
            let mut shown = String::from_utf8_lossy(name).to_uppercase();
            if name == b"function" {
                shown.push(' ');
                shown.push_str(&String::from_utf8_lossy(&sub()).to_uppercase());
            }
            return Err(SyncError::Config(format!(
                "{shown} arrived on the link from {} (slots {}): with a cluster source each master's link shares the target with the others, and applying it would wipe their keys too; the sync stops here (run it on the target yourself, or start the sync over)",
                self.label,
                self.ranges_text()
            )));
        }
        if matches!(name, b"publish" | b"spublish" | b"ping" | b"replconf") {
            return Ok(());
        }
        let Some(mut info) = command::lookup(name) else {
            // A module's command: its keys can't be told; applied as it is.
            return Ok(());
        };
        if info.has(command::flags::CONTAINER) {
            match command::lookup_sub(info, arg(1)) {
                Some(s) => info = s,
                None => return Ok(()),
            }
        }
        let mut keys = Vec::new();
        command::key_positions(info, args.len(), arg, &mut keys);
        for k in keys {
            let slot = key_slot(arg(k));
            if !self.owns(slot) {
                return Err(self.foreign(name, slot));
            }
        }
        Ok(())
    }

    /// The error for a command on a slot this link does not serve.
    pub fn foreign(&self, name: &[u8], slot: u16) -> SyncError {
        SyncError::Config(format!(
            "the source's topology changed: the master {} (slots {}) sent {} for a key of slot {slot}, which belonged to another master when the sync started (a slot is migrating or moved); the sync stops rather than apply one master's share out of order with another's. Restart cutover to sync the new layout from scratch",
            self.label,
            self.ranges_text(),
            String::from_utf8_lossy(name).to_uppercase()
        ))
    }
}

/// Inclusive ranges as `a-b,c,d-e`.
pub fn ranges_text(ranges: &[(u16, u16)]) -> String {
    ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(scope: &LinkScope, words: &[&[u8]]) -> Result<(), SyncError> {
        let mut cmd = bytes::BytesMut::new();
        resp::encode::command(&mut cmd, words.iter().copied());
        let mut parser = resp::RequestParser::new(resp::Limits::default());
        parser.parse(&cmd).unwrap().unwrap();
        let name = words[0].to_ascii_lowercase();
        scope.check(&name, &cmd, parser.args())
    }

    #[test]
    fn keys_of_other_slots_and_whole_db_commands_are_refused() {
        let mine = key_slot(b"a");
        let scope = LinkScope::new("m1:1".into(), vec![(mine, mine), (16000, 16383)]);
        assert!(scope.owns(mine) && scope.owns(16383) && !scope.owns(0));
        assert_eq!(scope.first_slot(), mine);
        assert!(check(&scope, &[b"SET", b"a", b"v"]).is_ok());
        assert!(check(&scope, &[b"PUBLISH", b"b", b"m"]).is_ok());
        assert!(check(&scope, &[b"FUNCTION", b"LOAD", b"x"]).is_ok());
        let e = check(&scope, &[b"SET", b"b", b"v"])
            .unwrap_err()
            .to_string();
        let slot_b = key_slot(b"b");
        assert!(
            e.contains(&format!("slot {slot_b}")) && e.contains("m1:1"),
            "{e}"
        );
        assert!(!e.contains("\"v\""), "{e}");
        for words in [
            &[&b"FLUSHALL"[..]][..],
            &[b"flushdb", b"ASYNC"],
            &[b"SWAPDB", b"0", b"1"],
            &[b"FUNCTION", b"FLUSH"],
            &[b"FUNCTION", b"RESTORE", b"payload", b"FLUSH"],
        ] {
            let e = check(&scope, words).unwrap_err().to_string();
            assert!(e.contains("m1:1") && e.contains("wipe"), "{e}");
        }
        assert!(check(&scope, &[b"FUNCTION", b"RESTORE", b"payload", b"REPLACE"]).is_ok());
        assert_eq!(ranges_text(&[(0, 5), (7, 7)]), "0-5,7");
    }
}
