//! The applications' own users on the target: with `client_auth = "source"` each client
//! runs as the user it logged in as, so before a CUTOVER every user the proxy has seen
//! must be able to log in on the target with the same credentials.
//!
//! A user missing on the target is copied from the source (`ACL GETUSER` there, `ACL
//! SETUSER` on every master of the target: flags, password hashes, commands, keys,
//! channels, selectors). A user that exists on the target but refuses the password is not
//! touched (its permissions there may differ from the source's: adding the source's
//! password would grant them): the CUTOVER is refused, naming it, as when the copy can't
//! be made (ACL refused on either side). A credential the source no longer accepts either
//! (a password rotated since) is forgotten, not required.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cluster::{Auth, Login, NodeStream, SessionSetup};
use resp::Value;

use crate::upstream::{LoginOutcome, Upstream};

/// At most this many distinct credentials are remembered (a client trying passwords
/// can't grow it: only accepted ones are recorded).
const MAX_SEEN: usize = 10_000;

/// Credentials the source accepted from clients.
#[derive(Default)]
pub struct SeenLogins {
    seen: Mutex<HashSet<Arc<Login>>>,
    /// More than [`MAX_SEEN`] were offered: the list is not complete.
    overflowed: std::sync::atomic::AtomicBool,
    /// Grows with every new credential (a CUTOVER checks again after its drain).
    version: std::sync::atomic::AtomicU64,
}

impl SeenLogins {
    pub fn record(&self, login: &Arc<Login>) {
        use std::sync::atomic::Ordering;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(login) {
            return;
        }
        if seen.len() < MAX_SEEN {
            seen.insert(login.clone());
            self.version.fetch_add(1, Ordering::AcqRel);
        } else {
            self.overflowed.store(true, Ordering::Relaxed);
        }
    }

    pub fn all(&self) -> Vec<Arc<Login>> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.iter().cloned().collect()
    }

    pub fn version(&self) -> u64 {
        self.version.load(std::sync::atomic::Ordering::Acquire)
    }

    fn forget(&self, login: &Arc<Login>) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.remove(login);
    }
}

/// Makes every seen login work on the target; Ok(names copied or given a password), or
/// Err naming the users that still can't log in there, and why.
pub async fn prepare_target(
    seen: &SeenLogins,
    source: &Upstream,
    target: &Upstream,
) -> Result<Vec<String>, String> {
    if seen.overflowed.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(format!(
            "clients logged in with more than {MAX_SEEN} distinct credentials: cutover can't vouch that each logs in on the target"
        ));
    }
    let mut done = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut conns: Option<(NodeStream, Vec<NodeStream>)> = None;
    for login in seen.all() {
        let name = String::from_utf8_lossy(login.user_name()).into_owned();
        match target.check_login(&login).await {
            Ok(LoginOutcome::Accepted) => continue,
            // The target's default user needs no password: its connections log in as
            // nobody (as the base pools do).
            Ok(LoginOutcome::NoPassword(_)) => {
                target.set_user_auth(&login, Auth::Anonymous);
                continue;
            }
            Ok(LoginOutcome::Refused(_)) => {}
            Err(e) => {
                failed.push(format!("{name} (the target could not be asked: {e})"));
                continue;
            }
        }
        // Still a credential the source takes? One rotated away since is not required.
        if matches!(
            source.check_login(&login).await,
            Ok(LoginOutcome::Refused(_))
        ) {
            seen.forget(&login);
            continue;
        }
        if conns.is_none() {
            match connect_both(source, target).await {
                Ok(c) => conns = Some(c),
                Err(e) => {
                    failed.push(format!("{name} ({e})"));
                    continue;
                }
            }
        }
        let Some((s, t)) = conns.as_mut() else {
            continue;
        };
        match copy_user(s, t, login.user_name()).await {
            Ok(()) => {}
            Err(why) => {
                failed.push(format!("{name} ({why})"));
                continue;
            }
        }
        match target.check_login(&login).await {
            Ok(LoginOutcome::Accepted) => {
                tracing::info!(user = %name, "user made able to log in on the target");
                done.push(name);
            }
            _ => failed.push(format!(
                "{name} (still refused by the target after the copy)"
            )),
        }
    }
    if failed.is_empty() {
        Ok(done)
    } else {
        failed.sort();
        failed.dedup();
        Err(format!(
            "users the clients logged in as can't log in on the target: {}",
            failed.join(", ")
        ))
    }
}

/// A connection to the source, and one to each master of the target (ACL users are per
/// node) or to the target itself.
async fn connect_both(
    source: &Upstream,
    target: &Upstream,
) -> Result<(NodeStream, Vec<NodeStream>), String> {
    let s = source
        .connector()
        .connect(&SessionSetup::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut t = Vec::new();
    match target.cluster() {
        Some(topo) => {
            let masters = topo.map().masters.clone();
            for m in &masters {
                let c = topo.connector(m).map_err(|e| e.to_string())?;
                t.push(
                    c.connect(&SessionSetup::default())
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
        }
        None => t.push(
            target
                .connector()
                .connect(&SessionSetup::default())
                .await
                .map_err(|e| e.to_string())?,
        ),
    }
    Ok((s, t))
}

/// Copies one user's definition from the source to every target node that lacks it; a
/// node that has a user of that name (which refused the password) is left alone: refused.
async fn copy_user(
    src: &mut NodeStream,
    tgts: &mut [NodeStream],
    name: &[u8],
) -> Result<(), String> {
    let Some(raw) = getuser(src, name, "source").await? else {
        return Err("not found on the source".into());
    };
    let user = Value::decode_one(&raw).map_err(|e| format!("the source's ACL GETUSER: {e}"))?;
    let mut args: Vec<Bytes> = vec![
        Bytes::from_static(b"ACL"),
        Bytes::from_static(b"SETUSER"),
        Bytes::copy_from_slice(name),
    ];
    args.extend(setuser_rules(&user));
    let refs: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
    for tgt in tgts.iter_mut() {
        if getuser(tgt, name, "target").await?.is_some() {
            return Err(
                "the target has a user of that name with other passwords (its permissions may differ: make them match, or remove it)".into(),
            );
        }
        let r = tgt
            .request(&[&refs])
            .await
            .map_err(|e| format!("the target: {e}"))?;
        let reply = r.first().map(|b| &b[..]).unwrap_or_default();
        match Value::decode_one(reply) {
            Ok(Value::Error(e)) => {
                return Err(format!(
                    "the target refused ACL SETUSER: {}",
                    redact(&String::from_utf8_lossy(e))
                ))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("the target's reply to ACL SETUSER: {e}")),
        }
    }
    Ok(())
}

/// An error text without the password rules it may quote (`#<hash>`, `>password`).
fn redact(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            let bare = w.trim_matches(|c| c == '\'' || c == '"');
            if bare.starts_with('#') || bare.starts_with('>') || bare.starts_with('<') {
                "<redacted>"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `ACL GETUSER name`: the reply describing the user, or None when there is no such user.
async fn getuser(conn: &mut NodeStream, name: &[u8], side: &str) -> Result<Option<Bytes>, String> {
    let r = conn
        .request(&[&[b"ACL", b"GETUSER", name]])
        .await
        .map_err(|e| format!("the {side}: {e}"))?;
    let raw = r.into_iter().next().unwrap_or_default();
    match Value::decode_one(&raw) {
        Ok(Value::Nil) => Ok(None),
        Ok(Value::Error(e)) => Err(format!(
            "the {side} refused ACL GETUSER: {}",
            String::from_utf8_lossy(e)
        )),
        Ok(_) => Ok(Some(raw)),
        Err(e) => Err(format!("the {side}'s reply to ACL GETUSER: {e}")),
    }
}

/// The words of a field that is a string of rules ("+@all -debug", 7.0's "~a* %R~b*")
/// or a list of patterns (6.2's keys and channels, given `prefix`).
fn words(v: Option<&Value>, prefix: &[u8]) -> Vec<Bytes> {
    match v {
        // 6.x: the bare patterns (one may itself start with `~`).
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|i| i.bytes())
            .map(|p| {
                let mut w = prefix.to_vec();
                w.extend_from_slice(p);
                Bytes::from(w)
            })
            .collect(),
        Some(v) => v
            .bytes()
            .map(|b| {
                b.split(|&c| c == b' ')
                    .filter(|w| !w.is_empty())
                    .map(Bytes::copy_from_slice)
                    .collect()
            })
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// `#<sha256>` for each password hash the user has.
fn password_rules(user: &Value) -> Vec<Bytes> {
    user.field(b"passwords")
        .and_then(Value::items)
        .unwrap_or(&[])
        .iter()
        .filter_map(|p| p.bytes())
        .map(|h| {
            let mut w = b"#".to_vec();
            w.extend_from_slice(h);
            Bytes::from(w)
        })
        .collect()
}

/// The ACL SETUSER rules that rebuild the user ACL GETUSER described.
fn setuser_rules(user: &Value) -> Vec<Bytes> {
    // `reset` gives the target's acl-pubsub-default channels: none instead, then the
    // source's own.
    let mut rules = vec![
        Bytes::from_static(b"reset"),
        Bytes::from_static(b"resetchannels"),
    ];
    let flags: Vec<&[u8]> = user
        .field(b"flags")
        .and_then(Value::items)
        .unwrap_or(&[])
        .iter()
        .filter_map(|f| f.bytes())
        .collect();
    for f in flags {
        // on/off, nopass, allkeys, allchannels, allcommands, (skip-)sanitize-payload.
        if matches!(
            f,
            b"on"
                | b"off"
                | b"nopass"
                | b"allkeys"
                | b"allchannels"
                | b"allcommands"
                | b"skip-sanitize-payload"
                | b"sanitize-payload"
        ) {
            rules.push(Bytes::copy_from_slice(f));
        }
    }
    rules.extend(password_rules(user));
    rules.extend(words(user.field(b"commands"), b""));
    rules.extend(words(user.field(b"keys"), b"~"));
    match user.field(b"channels") {
        Some(c) => rules.extend(words(Some(c), b"&")),
        // 6.0 knew no channel permissions: every channel.
        None => rules.push(Bytes::from_static(b"allchannels")),
    }
    if let Some(selectors) = user.field(b"selectors").and_then(Value::items) {
        for sel in selectors {
            let mut parts = words(sel.field(b"commands"), b"");
            parts.extend(words(sel.field(b"keys"), b"~"));
            parts.extend(words(sel.field(b"channels"), b"&"));
            let mut w = b"(".to_vec();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    w.push(b' ');
                }
                w.extend_from_slice(p);
            }
            w.push(b')');
            rules.push(Bytes::from(w));
        }
    }
    rules
}

#[cfg(test)]
mod tests;
