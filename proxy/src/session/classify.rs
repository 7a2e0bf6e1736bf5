//! What one command is to a session, decided from the command alone and the client's
//! state (pure: no I/O): forwarded (how many replies it produces, on which connection,
//! what client state it changes once sent), answered by the proxy, or refused at once.

use super::*;

/// Where a blocking command's timeout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimeoutArg {
    /// Seconds, last argument (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BZPOPMIN/MAX).
    LastSecs,
    /// Seconds, first argument (BLMPOP, BZMPOP).
    FirstSecs,
    /// Milliseconds after BLOCK (XREAD, XREADGROUP).
    BlockMs,
}

/// Client state a forwarded command changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    None,
    /// SELECT on a dedicated connection (inside MULTI it takes effect at EXEC).
    SetDb(u32),
    Multi,
    Exec,
    Discard,
    /// WATCH: runs at once even inside MULTI, so it is not queued.
    Watch,
    Unwatch,
    /// EVAL/SCRIPT LOAD: the body (argument index) is recorded for the target.
    Script(usize),
    /// A blocking command that a cutover can move (unblock here, re-issue there).
    Blocking(TimeoutArg),
    /// (P|S)SUBSCRIBE (kind 0 channels, 1 patterns, 2 shard channels).
    Subscribe(u8),
    /// (P|S)UNSUBSCRIBE on a dedicated connection.
    Unsubscribe(u8),
}

/// What to do with one command.
#[derive(Debug)]
pub(crate) enum Action {
    /// Hand it to the backend. `count`: replies it produces.
    Forward {
        count: u32,
        flags: u8,
        kind: Kind,
        dedicated: bool,
        /// What the command changes in the client's state once forwarded.
        effect: Effect,
    },
    /// The proxy answers it. `drain`: wait until nothing is owed first (it changes which
    /// connection later commands use, or must come after earlier replies).
    Local { cmd: local::Cmd, drain: bool },
    /// Answer at once with this reply (refusals, NOAUTH...).
    Reply(Bytes),
}

/// Decides what to do with one command. `base[args[i]]` is argument i.
#[cfg(test)]
pub(crate) fn classify(
    st: &ClientState,
    databases: u32,
    base: &[u8],
    args: &[Range<usize>],
) -> Action {
    let info = args.first().and_then(|r| command::lookup(&base[r.clone()]));
    classify_info(st, databases, base, args, info)
}

/// What to do with a command, `info` being its entry in the table (`None`: unknown).
pub(crate) fn classify_info(
    st: &ClientState,
    databases: u32,
    base: &[u8],
    args: &[Range<usize>],
    info: Option<&'static CommandInfo>,
) -> Action {
    let arg = |i: usize| -> &[u8] { args.get(i).map(|r| &base[r.clone()]).unwrap_or(&[]) };
    if !st.authenticated {
        let allowed = match info {
            Some(i) => {
                i.has(flags::NO_AUTH) || matches!(i.name, "auth" | "hello" | "quit" | "reset")
            }
            None => false,
        };
        if !allowed {
            return Action::Reply(match info {
                Some(_) => Bytes::from_static(b"-NOAUTH Authentication required.\r\n"),
                None => local::unknown_command(base, args),
            });
        }
    }
    let Some(info) = info else {
        // Unknown to us (e.g. newer than our table): the server decides.
        return forward(1, 0, Kind::Other, false);
    };
    if let Some(cmd) = local::Cmd::of(info, arg(1), args.len()) {
        if st.subscribed && !st.resp3 && !matches!(cmd, local::Cmd::Quit | local::Cmd::Reset) {
            return Action::Reply(local::not_in_subscribed_context(cmd));
        }
        return local::action(cmd, st, databases, base, args);
    }
    let kind = Kind::of(info);
    let argc = args.len();
    match info.name {
        "sync" | "psync" | "replconf" => Action::Reply(Bytes::from_static(
            b"-ERR cutover: SYNC, PSYNC and REPLCONF are not served through the proxy; replicate from the Redis server itself\r\n",
        )),
        "multi" => forward(1, 0, kind, true).with_effect(Effect::Multi),
        "watch" => forward(1, 0, kind, true).with_effect(Effect::Watch),
        "unwatch" => forward(1, 0, kind, st.dedicated).with_effect(Effect::Unwatch),
        "eval" | "eval_ro" => forward(1, 0, kind, st.dedicated).with_effect(Effect::Script(1)),
        "script" if arg(1).eq_ignore_ascii_case(b"load") => {
            forward(1, 0, kind, st.dedicated).with_effect(Effect::Script(2))
        }
        "exec" => forward(1, 0, kind, st.dedicated).with_effect(Effect::Exec),
        "discard" => forward(1, 0, kind, st.dedicated).with_effect(Effect::Discard),
        "subscribe" | "psubscribe" | "ssubscribe" => {
            forward(0, BatchFlags::PUBSUB, kind, true)
                .with_effect(Effect::Subscribe(sub_kind(info.name)))
        }
        "unsubscribe" | "punsubscribe" | "sunsubscribe" => {
            if st.dedicated {
                forward(0, BatchFlags::PUBSUB, kind, true)
                    .with_effect(Effect::Unsubscribe(sub_kind(info.name)))
            } else {
                // Not subscribed: one confirmation per channel, or one when none is named.
                forward((argc.saturating_sub(1)).max(1) as u32, 0, kind, false)
            }
        }
        "monitor" => forward(1, BatchFlags::MONITOR, kind, true),
        "xread" | "xreadgroup" => {
            let blocks = (1..argc).any(|i| arg(i).eq_ignore_ascii_case(b"block"));
            let a = forward(1, 0, kind, blocks);
            if blocks {
                a.with_effect(Effect::Blocking(TimeoutArg::BlockMs))
            } else {
                a
            }
        }
        "client" if arg(1).eq_ignore_ascii_case(b"tracking") => forward(1, 0, kind, true),
        // A KILL must not queue behind the script it is meant to stop.
        "script" | "function" if arg(1).eq_ignore_ascii_case(b"kill") => {
            forward(1, 0, kind, true)
        }
        "wait" | "waitaof" => forward(1, 0, Kind::Blocking, true),
        "blmpop" | "bzmpop" => forward(1, 0, Kind::Blocking, true)
            .with_effect(Effect::Blocking(TimeoutArg::FirstSecs)),
        _ if info.has(flags::BLOCKING) => forward(1, 0, Kind::Blocking, true)
            .with_effect(Effect::Blocking(TimeoutArg::LastSecs)),
        _ => forward(1, 0, kind, st.dedicated),
    }
    .with_monitor(st.monitoring)
}

/// Which subscription set a (un)subscribe command touches.
pub(crate) fn sub_kind(name: &str) -> u8 {
    match name {
        "psubscribe" | "punsubscribe" => 1,
        "ssubscribe" | "sunsubscribe" => 2,
        _ => 0,
    }
}

fn forward(count: u32, flags: u8, kind: Kind, dedicated: bool) -> Action {
    Action::Forward {
        count,
        flags,
        kind,
        dedicated,
        effect: Effect::None,
    }
}

impl Action {
    fn with_effect(self, e: Effect) -> Action {
        match self {
            Action::Forward {
                count,
                flags,
                kind,
                dedicated,
                ..
            } => Action::Forward {
                count,
                flags,
                kind,
                dedicated,
                effect: e,
            },
            a => a,
        }
    }

    /// On a MONITOR connection every frame the server sends is passed on as it comes.
    fn with_monitor(self, monitoring: bool) -> Action {
        match self {
            Action::Forward {
                flags,
                kind,
                dedicated,
                effect,
                ..
            } if monitoring => Action::Forward {
                count: 0,
                flags,
                kind,
                dedicated,
                effect,
            },
            a => a,
        }
    }
}
