//! Where a command of the source's stream goes on a Redis Cluster target.
//!
//! Why: a standalone source accepts commands whose keys live anywhere; a cluster runs a
//! command only on the node owning its keys' slot, and only when they share one slot. So
//! each stream command is placed before it is applied ([`place`]):
//! - keys in one slot: that slot (`PUBLISH`, keyless, goes by its channel's slot);
//! - keys in several slots, for the commands Redis itself could have run one slot at a
//!   time (`MSET`/`MSETNX`, `DEL`, `UNLINK`, `EXISTS`, `TOUCH`): one command per slot, in
//!   order (`MSETNX` becomes `MSET`: it was propagated because it set every key, and the
//!   target holds what the source held, so none of them existed there either);
//! - no key, but state every node needs (`FLUSHALL`, `FLUSHDB`, `SCRIPT LOAD/FLUSH`,
//!   `FUNCTION LOAD/DELETE/FLUSH/RESTORE`): every master. Those are made harmless to repeat
//!   (a crash between two masters re-applies them): `FUNCTION LOAD` gets `REPLACE`,
//!   `FUNCTION RESTORE` the `REPLACE` policy instead of `APPEND`, and a `FUNCTION DELETE` of
//!   a library already gone counts as done;
//! - everything else is refused with an error naming the command: commands whose keys
//!   would have to be on one node (`RENAME`, `SUNIONSTORE`, `LMOVE`... across slots),
//!   commands about other dbs (`SWAPDB`, `MOVE`, `COPY ... DB`; a cluster has db 0 only),
//!   and keyless commands no node can be chosen for (a script with no declared key).
//!
//! The key positions come from the generated command table (`resp::command`), movable keys
//! included, as a cluster computes them.

use std::ops::Range;

use ::cluster::slots::key_slot;
use bytes::BytesMut;
use resp::command;

use crate::SyncError;

/// Where one stream command goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// Every key in this slot: the command as it is.
    Slot(u16),
    /// Keys in several slots: one command per slot, in the order of their first key.
    Split(Vec<(u16, BytesMut)>),
    /// No key; every master runs `cmd` (possibly rewritten to be harmless when repeated).
    /// An error reply starting with `tolerate` means it was already applied.
    Broadcast {
        cmd: BytesMut,
        tolerate: Option<&'static str>,
    },
    /// `SELECT n`: the stream's db changes.
    Select(u32),
}

/// The error for a command that can't be applied on a cluster.
fn refuse(name: &[u8], why: impl Into<String>) -> SyncError {
    SyncError::Cluster {
        command: String::from_utf8_lossy(name).to_uppercase(),
        why: why.into(),
    }
}

/// Places the command `cmd` (whole, raw), whose arguments are `args` (ranges into `cmd`).
pub fn place(cmd: &[u8], args: &[Range<usize>]) -> Result<Placement, SyncError> {
    let arg = |i: usize| -> &[u8] { args.get(i).map(|r| &cmd[r.clone()]).unwrap_or(&[]) };
    let name = arg(0);
    let Some(mut info) = command::lookup(name) else {
        return Err(refuse(
            name,
            "unknown command (a module's?): cutover can't tell which keys it touches",
        ));
    };
    if info.has(command::flags::CONTAINER) {
        let Some(sub) = command::lookup_sub(info, arg(1)) else {
            return Err(refuse(name, "unknown subcommand"));
        };
        info = sub;
    }
    // For messages only (built when refusing).
    let full_name = || {
        let mut n = String::from_utf8_lossy(name).to_uppercase();
        if info.name.contains('|') {
            n.push(' ');
            n.push_str(&String::from_utf8_lossy(arg(1)).to_uppercase());
        }
        n
    };
    let mut keys = Vec::new();
    command::key_positions(info, args.len(), arg, &mut keys);
    match info.name {
        "move" | "swapdb" => {
            return Err(refuse(
                full_name().as_bytes(),
                "a cluster has db 0 only, so nothing can move between dbs there",
            ))
        }
        "copy" if (3..args.len()).any(|i| arg(i).eq_ignore_ascii_case(b"db")) => {
            return Err(refuse(
                full_name().as_bytes(),
                "COPY ... DB copies into another db; a cluster has db 0 only",
            ))
        }
        _ => {}
    }
    if keys.is_empty() {
        return keyless(info.name, full_name().as_bytes(), cmd, args);
    }
    let first = key_slot(arg(keys[0]));
    if keys.iter().all(|&k| key_slot(arg(k)) == first) {
        return Ok(Placement::Slot(first));
    }
    let split_as: &[u8] = match info.name {
        "mset" | "msetnx" => b"MSET",
        "del" => b"DEL",
        "unlink" => b"UNLINK",
        "exists" => b"EXISTS",
        "touch" => b"TOUCH",
        _ => {
            let slots = {
                let mut s: Vec<u16> = keys.iter().map(|&k| key_slot(arg(k))).collect();
                s.sort_unstable();
                s.dedup();
                s.len()
            };
            return Err(refuse(
                full_name().as_bytes(),
                format!(
                    "its {} keys are in {slots} slots, and a cluster runs it only when they \
                     share one (give them a common {{hash tag}} on the source)",
                    keys.len()
                ),
            ));
        }
    };
    // With values (MSET): each key takes the argument after it along.
    let with_value = matches!(info.name, "mset" | "msetnx");
    let mut parts: Vec<(u16, Vec<&[u8]>)> = Vec::new();
    for &k in &keys {
        let slot = key_slot(arg(k));
        let i = match parts.iter().position(|(s, _)| *s == slot) {
            Some(i) => i,
            None => {
                parts.push((slot, vec![split_as]));
                parts.len() - 1
            }
        };
        parts[i].1.push(arg(k));
        if with_value {
            parts[i].1.push(arg(k + 1));
        }
    }
    Ok(Placement::Split(
        parts
            .into_iter()
            .map(|(slot, words)| {
                let mut out = BytesMut::new();
                resp::encode::command(&mut out, words.into_iter());
                (slot, out)
            })
            .collect(),
    ))
}

/// Commands without keys: the db switch, the broadcasts, PUBLISH; anything else refused.
fn keyless(
    table_name: &str,
    full_name: &[u8],
    cmd: &[u8],
    args: &[Range<usize>],
) -> Result<Placement, SyncError> {
    let arg = |i: usize| -> &[u8] { args.get(i).map(|r| &cmd[r.clone()]).unwrap_or(&[]) };
    let all = |from: usize| (from..args.len()).map(arg);
    let as_is = |tolerate| {
        let mut out = BytesMut::new();
        out.extend_from_slice(cmd);
        Ok(Placement::Broadcast { cmd: out, tolerate })
    };
    match table_name {
        "select" => std::str::from_utf8(arg(1))
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Placement::Select)
            .ok_or_else(|| refuse(full_name, "its db is not a number")),
        // Not a key, but a cluster delivers a message published on any node to every
        // node: its channel's slot keeps a channel's messages in order.
        "publish" => Ok(Placement::Slot(key_slot(arg(1)))),
        "flushall" | "flushdb" | "script|load" | "script|flush" | "function|flush" => as_is(None),
        "function|delete" => as_is(Some("ERR Library not found")),
        "function|load" => {
            if arg(2).eq_ignore_ascii_case(b"replace") {
                return as_is(None);
            }
            let mut out = BytesMut::new();
            let words: Vec<&[u8]> = [arg(0), arg(1), b"REPLACE"]
                .into_iter()
                .chain(all(2))
                .collect();
            resp::encode::command(&mut out, words.into_iter());
            Ok(Placement::Broadcast {
                cmd: out,
                tolerate: None,
            })
        }
        "function|restore" => {
            // FUNCTION RESTORE payload [FLUSH | APPEND | REPLACE]; APPEND is the default.
            let policy = arg(3);
            if args.len() > 3 && !policy.eq_ignore_ascii_case(b"append") {
                return as_is(None);
            }
            let mut out = BytesMut::new();
            let words = [arg(0), arg(1), arg(2), b"REPLACE"].into_iter();
            resp::encode::command(&mut out, words);
            Ok(Placement::Broadcast {
                cmd: out,
                tolerate: None,
            })
        }
        _ => Err(refuse(
            full_name,
            "it names no key, so no node of the cluster can be chosen for it",
        )),
    }
}

#[cfg(test)]
mod tests;
