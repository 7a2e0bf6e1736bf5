//! The command table: for each Redis command, its arity, flags and key positions.
//!
//! The table itself (`command/table.rs`) is generated from Redis 7.0's `COMMAND` reply by
//! `scripts/gen-command-table.py`, so that it agrees with the server; key positions of the
//! commands whose keys move are computed here, mirroring Redis's `*GetKeys` functions
//! (db.c), because `COMMAND`'s first/last/step cannot express them.
//!
//! Used for routing (which commands need a connection of their own), for the cutover's
//! write gate (which commands write), and for cluster routing (where the keys are).
//! Lookups are case-insensitive and never allocate.

mod table;
#[cfg(test)]
mod tests;

use table::COMMANDS;

/// Longest top-level command name `lookup` considers (the longest in Redis 7.0 has 20
/// bytes: `georadiusbymember_ro`).
const MAX_NAME: usize = 32;
/// Longest `container|sub` name `lookup_sub` considers.
const MAX_SUB_NAME: usize = 64;

/// Flag bits of a command (from Redis's command flags, plus a few of cutover's own).
pub mod flags {
    pub const WRITE: u32 = 1 << 0;
    pub const READONLY: u32 = 1 << 1;
    pub const DENYOOM: u32 = 1 << 2;
    pub const ADMIN: u32 = 1 << 3;
    pub const PUBSUB: u32 = 1 << 4;
    pub const NOSCRIPT: u32 = 1 << 5;
    /// May block the connection (BLPOP family, BLMOVE, BZPOPMIN, XREAD, WAIT...). Redis 7.0
    /// does not flag WAIT as blocking; the table generator adds this bit to it.
    pub const BLOCKING: u32 = 1 << 6;
    pub const LOADING: u32 = 1 << 7;
    pub const STALE: u32 = 1 << 8;
    pub const FAST: u32 = 1 << 9;
    pub const NO_AUTH: u32 = 1 << 10;
    pub const MAY_REPLICATE: u32 = 1 << 11;
    pub const MOVABLE_KEYS: u32 = 1 << 12;
    pub const NO_MULTI: u32 = 1 << 13;
    pub const ALLOW_BUSY: u32 = 1 << 14;
    /// cutover: MULTI, EXEC, DISCARD, WATCH, UNWATCH.
    pub const TRANSACTION: u32 = 1 << 20;
    /// cutover: the command has subcommands (`CLIENT`, `CONFIG`, ...).
    pub const CONTAINER: u32 = 1 << 21;
    /// cutover: runs a script or function (EVAL*, FCALL*).
    pub const SCRIPTING: u32 = 1 << 22;
}

/// One command (or subcommand) of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandInfo {
    /// Lower-case name; `container|sub` for subcommands (e.g. `client|setname`).
    pub name: &'static str,
    /// Redis arity: `n` exactly n arguments (name included), `-n` at least n.
    pub arity: i32,
    pub flags: u32,
    /// First key position (0 = no keys), last (-1 = last argument, -2 = one before...), step.
    pub first_key: i32,
    pub last_key: i32,
    pub step: i32,
}

impl CommandInfo {
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }
    pub fn is_write(&self) -> bool {
        self.has(flags::WRITE)
    }
    /// Whether `argc` arguments (name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        if self.arity >= 0 {
            argc == self.arity as usize
        } else {
            argc >= self.arity.unsigned_abs() as usize
        }
    }
}

/// Looks a command up by name, ignoring ASCII case. `None` for unknown commands.
///
/// Only top-level commands: `config|get` is no command name for Redis either.
pub fn lookup(name: &[u8]) -> Option<&'static CommandInfo> {
    if name.contains(&b'|') {
        return None;
    }
    let mut key = [0u8; MAX_NAME];
    let key = lower_into(&mut key, &[name])?;
    find(key)
}

/// Looks a subcommand of a container up (`lookup_sub(client, b"SETNAME")`).
pub fn lookup_sub(container: &CommandInfo, sub: &[u8]) -> Option<&'static CommandInfo> {
    if container.name.contains('|') || sub.contains(&b'|') {
        return None;
    }
    let mut key = [0u8; MAX_SUB_NAME];
    let key = lower_into(&mut key, &[container.name.as_bytes(), b"|", sub])?;
    find(key)
}

/// The command's place in the table: a small number to keep in an atomic (CLIENT LIST's
/// `cmd=` of another client), turned back by [`by_index`].
pub fn index_of(info: &CommandInfo) -> Option<u16> {
    let base = COMMANDS.as_ptr() as usize;
    let at = info as *const CommandInfo as usize;
    let i = at.checked_sub(base)? / std::mem::size_of::<CommandInfo>();
    (i < COMMANDS.len()).then_some(i as u16)
}

/// The command at a place given by [`index_of`].
pub fn by_index(i: u16) -> Option<&'static CommandInfo> {
    COMMANDS.get(usize::from(i))
}

fn find(key: &[u8]) -> Option<&'static CommandInfo> {
    // An open-addressing hash table built once: one hash and (nearly always) one compare
    // per lookup. Profiling a cluster load showed the whole-table binary search at 12% of
    // the CPU, and a search within the run of names sharing the first byte still at ~10%
    // (several compares each, every command looked up by the session and the router).
    let table = name_table();
    let mask = table.len() - 1;
    let mut i = name_hash(key) & mask;
    loop {
        let idx = *table.get(i)?;
        if idx == EMPTY {
            return None;
        }
        let c = COMMANDS.get(usize::from(idx))?;
        if c.name.as_bytes() == key {
            return Some(c);
        }
        i = (i + 1) & mask;
    }
}

const EMPTY: u16 = u16::MAX;

/// FNV-1a over the (already lowercased) name.
fn name_hash(key: &[u8]) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for &b in key {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize
}

/// Slot -> index into `COMMANDS` (or `EMPTY`); a power of two at least 4x the names, so
/// probe runs stay short.
fn name_table() -> &'static [u16] {
    static TABLE: std::sync::OnceLock<Vec<u16>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let size = (COMMANDS.len() * 4).next_power_of_two();
        let mut t = vec![EMPTY; size];
        for (idx, c) in COMMANDS.iter().enumerate() {
            let mut i = name_hash(c.name.as_bytes()) & (size - 1);
            while t[i] != EMPTY {
                i = (i + 1) & (size - 1);
            }
            t[i] = u16::try_from(idx).unwrap_or(EMPTY);
        }
        t
    })
}

/// Concatenates `parts` lower-cased into `buf`; `None` if they do not fit (no command has
/// such a long name).
fn lower_into<'b>(buf: &'b mut [u8], parts: &[&[u8]]) -> Option<&'b [u8]> {
    let mut len = 0;
    for part in parts {
        let dst = buf.get_mut(len..len + part.len())?;
        for (d, s) in dst.iter_mut().zip(part.iter()) {
            *d = s.to_ascii_lowercase();
        }
        len += part.len();
    }
    buf.get(..len)
}

/// Pushes the positions (indexes into the argument list, command name = 0) of the keys of a
/// command into `out`, including commands whose keys move (EVAL/FCALL numkeys, XREAD STREAMS,
/// ZUNIONSTORE/ZINTER numkeys, LMPOP/ZMPOP/BLMPOP/BZMPOP/SINTERCARD numkeys, SORT STORE,
/// MIGRATE KEYS, GEORADIUS STORE/STOREDIST...). `arg(i)` returns argument i.
///
/// Positions are pushed in increasing order and are all `< argc`. The movable cases mirror
/// the getkeys functions Redis 7.0's cluster routing uses (db.c), so a command goes where a
/// cluster would send it; where the command will fail anyway (a bad numkeys, an odd XREAD
/// list), no keys are pushed for the movable part, as those functions do.
pub fn key_positions<'a>(
    info: &CommandInfo,
    argc: usize,
    arg: impl Fn(usize) -> &'a [u8],
    out: &mut Vec<usize>,
) {
    match info.name {
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro" => {
            numkeys_keys(argc, &arg, None, 2, out)
        }
        "zunion" | "zinter" | "zdiff" | "zintercard" | "sintercard" | "lmpop" | "zmpop" => {
            numkeys_keys(argc, &arg, None, 1, out)
        }
        "zunionstore" | "zinterstore" | "zdiffstore" => numkeys_keys(argc, &arg, Some(1), 2, out),
        // The timeout comes first, then numkeys.
        "blmpop" | "bzmpop" => numkeys_keys(argc, &arg, None, 2, out),
        "xread" | "xreadgroup" => xread_keys(argc, &arg, out),
        "sort" => sort_keys(argc, &arg, out),
        // SORT_RO has no STORE; Redis reports just the sorted key (BY/GET patterns are not
        // keys it can name).
        "sort_ro" => push_if(1, argc, out),
        "migrate" => migrate_keys(argc, &arg, out),
        "georadius" | "georadiusbymember" => georadius_keys(argc, &arg, out),
        _ => range_keys(info, argc, out),
    }
}

/// Keys from the table's first/last/step. A negative last counts from the end (-1 = the
/// last argument). Positions past the end are skipped: commands with a variable arity are
/// not arity-checked before their keys are needed.
fn range_keys(info: &CommandInfo, argc: usize, out: &mut Vec<usize>) {
    if info.first_key <= 0 {
        return;
    }
    let argc_i = i64::try_from(argc).unwrap_or(i64::MAX);
    let first = i64::from(info.first_key);
    let last = if info.last_key < 0 {
        argc_i + i64::from(info.last_key)
    } else {
        i64::from(info.last_key)
    };
    let step = i64::from(info.step.max(1));
    let last = last.min(argc_i - 1);
    let mut i = first;
    while i <= last {
        // first > 0 and i < argc, so the conversion cannot fail.
        if let Ok(pos) = usize::try_from(i) {
            out.push(pos);
        }
        i += step;
    }
}

fn push_if(pos: usize, argc: usize, out: &mut Vec<usize>) {
    if pos < argc {
        out.push(pos);
    }
}

/// `[dest] numkeys key...`: Redis's genericGetKeys. A numkeys below 1 or larger than the
/// arguments that follow gives no keys (the command fails with a syntax error anyway).
fn numkeys_keys<'a>(
    argc: usize,
    arg: &impl Fn(usize) -> &'a [u8],
    dest: Option<usize>,
    numkeys_at: usize,
    out: &mut Vec<usize>,
) {
    if numkeys_at >= argc {
        return;
    }
    let first = numkeys_at + 1;
    let Some(num) = parse_count(arg(numkeys_at)) else {
        return;
    };
    if num < 1 || num > argc - first {
        return;
    }
    if let Some(dest) = dest {
        push_if(dest, argc, out);
    }
    out.extend(first..first + num);
}

/// XREAD/XREADGROUP: keys are the first half of what follows STREAMS. Options before it
/// are skipped with their arguments, because "streams" may also be a group, consumer or
/// key name.
fn xread_keys<'a>(argc: usize, arg: &impl Fn(usize) -> &'a [u8], out: &mut Vec<usize>) {
    let mut i = 1;
    let mut streams = None;
    while i < argc {
        let a = arg(i);
        if eq(a, b"block") || eq(a, b"count") {
            i += 1;
        } else if eq(a, b"group") {
            i += 2;
        } else if eq(a, b"noack") {
        } else if eq(a, b"streams") {
            streams = Some(i);
            break;
        } else {
            break;
        }
        i += 1;
    }
    let Some(streams) = streams else {
        return;
    };
    let rest = argc - streams - 1;
    if rest == 0 || rest % 2 == 1 {
        return;
    }
    out.extend(streams + 1..streams + 1 + rest / 2);
}

/// SORT key [BY p] [LIMIT o c] [GET p]... [STORE dest]: the sorted key, and the last STORE
/// destination. Mirrors Redis's sortGetKeys, including its skipping of option arguments.
fn sort_keys<'a>(argc: usize, arg: &impl Fn(usize) -> &'a [u8], out: &mut Vec<usize>) {
    push_if(1, argc, out);
    let mut store = None;
    let mut i = 2;
    while i < argc {
        let a = arg(i);
        if eq(a, b"limit") {
            i += 2;
        } else if eq(a, b"store") && i + 1 < argc {
            // Not skipped, as in Redis: the loop goes on to find the *last* STORE.
            store = Some(i + 1);
        } else if eq(a, b"get") || eq(a, b"by") {
            i += 1;
        }
        i += 1;
    }
    if let Some(store) = store {
        out.push(store);
    }
}

/// MIGRATE host port key db timeout [COPY] [REPLACE] [AUTH pw] [AUTH2 user pw] [KEYS k...]:
/// the key at 3, or with KEYS (and an empty key at 3) every argument after KEYS.
fn migrate_keys<'a>(argc: usize, arg: &impl Fn(usize) -> &'a [u8], out: &mut Vec<usize>) {
    let (mut first, mut num) = (3, 1);
    let mut i = 6;
    while i < argc {
        let a = arg(i);
        if eq(a, b"keys") {
            if arg(3).is_empty() {
                first = i + 1;
                num = argc - first;
            } else {
                // A syntax error for MIGRATE: no keys.
                num = 0;
            }
            break;
        } else if eq(a, b"auth") {
            i += 1;
        } else if eq(a, b"auth2") {
            i += 2;
        }
        i += 1;
    }
    for pos in first..first + num {
        push_if(pos, argc, out);
    }
}

/// GEORADIUS[BYMEMBER] key ... [STORE k] [STOREDIST k]: the key, and the last STORE or
/// STOREDIST destination (the one the command uses).
fn georadius_keys<'a>(argc: usize, arg: &impl Fn(usize) -> &'a [u8], out: &mut Vec<usize>) {
    push_if(1, argc, out);
    let mut store = None;
    let mut i = 5;
    while i < argc {
        let a = arg(i);
        if (eq(a, b"store") || eq(a, b"storedist")) && i + 1 < argc {
            store = Some(i + 1);
            i += 1;
        }
        i += 1;
    }
    if let Some(store) = store {
        out.push(store);
    }
}

fn eq(a: &[u8], lower: &[u8]) -> bool {
    a.eq_ignore_ascii_case(lower)
}

/// A key count: decimal digits only (Redis would refuse anything else with an error).
fn parse_count(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 18 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    })
}
