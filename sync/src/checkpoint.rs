//! The checkpoint kept on the target: which source history (replid) and offset the target
//! holds, and the db the stream was in. It is written in the same MULTI/EXEC as the
//! commands it covers, so after any crash the target and its checkpoint agree: resuming
//! from it applies nothing twice and skips nothing.

use bytes::BytesMut;
use cluster::NodeStream;
use resp::Value;

use crate::SyncError;

/// The key, a hash, in `checkpoint_db` of the target. It also holds the switch record
/// (`route`) and, for a cluster source, the links' plan (`source_links`); each link of a
/// cluster source keeps its own checkpoint in [`link_key`].
pub const KEY: &[u8] = b"__cutover:checkpoint";

/// Written on the source before a CUTOVER closes its gate, taken away when one aborts (and
/// at start when the target records no switch): while the target can't be reached, its
/// absence proves no switch ever happened, so the clients can go on with the source.
/// Commands of the source's stream on cutover's own keys are never applied to the target.
pub const ATTEMPT_KEY: &[u8] = b"__cutover:attempt";

/// Written on the old source by FINISH: the migration is over, and a cutover started again
/// with the same configuration refuses to route to that source.
pub const FINISHED_KEY: &[u8] = b"__cutover:finished";

/// What the names of cutover's own keys start with.
pub const OWN_PREFIX: &[u8] = b"__cutover:";

/// What every checkpoint hash's name starts with: never data, never emptied as data.
pub const KEY_PREFIX: &[u8] = b"__cutover:checkpoint";

/// The checkpoint key of one link of a cluster source, named after the first slot it
/// serves (stable across restarts while the source's slots stay where they are):
/// `__cutover:checkpoint:<first slot>`.
pub fn link_key(first_slot: u16) -> Vec<u8> {
    let mut k = KEY.to_vec();
    k.push(b':');
    k.extend_from_slice(first_slot.to_string().as_bytes());
    k
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// `loading` while a full load is under way (the target's contents are partial),
    /// `streaming` once it holds everything up to `offset`.
    pub state: String,
    pub replid: String,
    pub offset: i64,
    pub db: u32,
}

impl Checkpoint {
    pub fn is_streaming(&self) -> bool {
        self.state == "streaming"
    }

    /// `HSET` of this checkpoint into the hash `key`, as a command.
    pub fn hset(&self, key: &[u8], out: &mut BytesMut) {
        let offset = self.offset.to_string();
        let db = self.db.to_string();
        resp::encode::command(
            out,
            [
                &b"HSET"[..],
                key,
                b"state",
                self.state.as_bytes(),
                b"replid",
                self.replid.as_bytes(),
                b"offset",
                offset.as_bytes(),
                b"db",
                db.as_bytes(),
            ]
            .into_iter(),
        );
    }
}

/// Reads the checkpoint hash `key` (None when the target has none).
pub async fn read(
    conn: &mut NodeStream,
    db: u32,
    key: &[u8],
) -> Result<Option<Checkpoint>, SyncError> {
    let dbs = db.to_string();
    let replies = conn
        .request(&[&[b"SELECT", dbs.as_bytes()], &[b"HGETALL", key]])
        .await
        .map_err(|e| SyncError::Target(e.to_string()))?;
    Ok(parse(&replies[1])?.checkpoint)
}

// The fields of the hash besides the checkpoint's own: the switch record's, and a cluster
// source's links' plan. Known here only.
const ROUTE: &[u8] = b"route";
/// `route`'s value once the clients moved to the target.
const ROUTE_TARGET: &[u8] = b"target";
const ROUTE_EPOCH: &[u8] = b"route_epoch";
const FENCE_OFFSET: &[u8] = b"fence_offset";
const SOURCE_LINKS: &[u8] = b"source_links";

/// The switch record (written by the cutover when clients move to the target, in the
/// same hash): `HSET KEY route target route_epoch <epoch> fence_offset <fence>`.
pub fn switch_record(out: &mut BytesMut, epoch: u64, fence: i64) {
    let e = epoch.to_string();
    let f = fence.to_string();
    resp::encode::command(
        out,
        [
            &b"HSET"[..],
            KEY,
            ROUTE,
            ROUTE_TARGET,
            ROUTE_EPOCH,
            e.as_bytes(),
            FENCE_OFFSET,
            f.as_bytes(),
        ]
        .into_iter(),
    );
}

/// The command that reads the switch record; its reply goes to [`parse_switch`].
pub const SWITCH_QUERY: [&[u8]; 4] = [b"HMGET", KEY, ROUTE, ROUTE_EPOCH];

/// The command that takes a switch record back (a cutover whose switch was not
/// confirmed): `HDEL KEY route route_epoch fence_offset`; the checkpoint stays.
pub fn retract_switch() -> &'static [&'static [u8]] {
    const RETRACT: [&[u8]; 5] = [b"HDEL", KEY, ROUTE, ROUTE_EPOCH, FENCE_OFFSET];
    &RETRACT
}

/// The command that reads what a cluster source's preparation of the target needs: the
/// switch record's `route` and the links' plan (`source_links`, the layout of the
/// source's slots the links' checkpoints were made for); its reply goes to
/// [`parse_links`].
pub const LINKS_QUERY: [&[u8]; 4] = [b"HMGET", KEY, ROUTE, SOURCE_LINKS];

/// The reply to [`LINKS_QUERY`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Links {
    /// The hash records a completed cutover: the target is live.
    pub switched: bool,
    /// The plan the links' checkpoints were made for, if any.
    pub plan: Option<String>,
}

/// Reads the reply to [`LINKS_QUERY`].
pub fn parse_links(reply: &[u8]) -> Result<Links, SyncError> {
    let v = Value::decode_one(reply).ok();
    let fields = v.as_ref().and_then(Value::items).ok_or_else(|| {
        SyncError::Target(format!(
            "reading the checkpoint: {}",
            String::from_utf8_lossy(reply).trim_end()
        ))
    })?;
    let text = |i: usize| fields.get(i).and_then(Value::bytes).map(lossy);
    Ok(Links {
        switched: fields.first().and_then(Value::bytes) == Some(ROUTE_TARGET),
        plan: text(1),
    })
}

/// The command that records the links' plan (see [`LINKS_QUERY`]).
pub fn links_record(plan: &[u8]) -> [&[u8]; 4] {
    [b"HSET", KEY, SOURCE_LINKS, plan]
}

/// The reply to [`SWITCH_QUERY`]: Some(epoch) when a cutover happened, None when none did.
pub fn parse_switch(reply: &[u8]) -> Result<Option<u64>, String> {
    let v = Value::decode_one(reply).ok();
    let Some(items) = v.as_ref().and_then(Value::items) else {
        return Err(format!(
            "reading the switch record: {}",
            String::from_utf8_lossy(reply).trim_end()
        ));
    };
    if items.first().and_then(Value::bytes) != Some(ROUTE_TARGET) {
        return Ok(None);
    }
    items
        .get(1)
        .and_then(Value::int)
        .and_then(|e| u64::try_from(e).ok())
        .map(Some)
        .ok_or_else(|| "the target's switch record has no epoch".to_string())
}

/// What the checkpoint hash holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    /// None when the target has no checkpoint.
    pub checkpoint: Option<Checkpoint>,
    /// The hash records a completed cutover (`route` = `target`): the target is live.
    pub switched: bool,
}

/// Reads the reply to `HGETALL` of [`KEY`].
pub fn parse(reply: &[u8]) -> Result<Record, SyncError> {
    let bad = || {
        SyncError::Target(format!(
            "reading the checkpoint: {}",
            String::from_utf8_lossy(reply).trim_end()
        ))
    };
    let v = Value::decode_one(reply).map_err(|_| bad())?;
    let fields = v.fields().ok_or_else(bad)?;
    let mut cp = Checkpoint {
        state: String::new(),
        replid: String::new(),
        offset: -1,
        db: 0,
    };
    let mut switched = false;
    let mut any = false;
    for (k, v) in fields {
        any = true;
        let k = k.bytes().unwrap_or_default();
        let v = lossy(v.bytes().unwrap_or_default());
        match k {
            b"state" => cp.state = v,
            b"replid" => cp.replid = v,
            b"offset" => cp.offset = v.parse().unwrap_or(-1),
            b"db" => cp.db = v.parse().unwrap_or(0),
            _ if k == ROUTE => switched = v.as_bytes() == ROUTE_TARGET,
            _ => {}
        }
    }
    if !any {
        return Ok(Record::default());
    }
    if cp.offset < 0 || cp.replid.len() != 40 {
        return Err(SyncError::Config(format!(
            "the target's checkpoint ({}) is unreadable; delete it to start over",
            String::from_utf8_lossy(KEY)
        )));
    }
    Ok(Record {
        checkpoint: Some(cp),
        switched,
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_links_record_and_the_switch_retraction() {
        assert_eq!(
            parse_links(b"*2\r\n$-1\r\n$-1\r\n").unwrap(),
            Links::default()
        );
        let r = parse_links(b"*2\r\n$6\r\ntarget\r\n$7\r\n0-16383\r\n").unwrap();
        assert!(r.switched);
        assert_eq!(r.plan.as_deref(), Some("0-16383"));
        assert!(
            !parse_links(b"*2\r\n$6\r\nsource\r\n$-1\r\n")
                .unwrap()
                .switched
        );
        assert!(parse_links(b"-ERR wrong type\r\n").is_err());
        assert_eq!(
            links_record(b"p"),
            [&b"HSET"[..], KEY, b"source_links", b"p"]
        );
        // The retraction removes what the switch record writes, and only that.
        let mut rec = BytesMut::new();
        switch_record(&mut rec, 3, 100);
        let mut del = BytesMut::new();
        resp::encode::command(&mut del, retract_switch().iter().copied());
        assert_eq!(
            &del[..],
            &b"*5\r\n$4\r\nHDEL\r\n$20\r\n__cutover:checkpoint\r\n$5\r\nroute\r\n$11\r\nroute_epoch\r\n$12\r\nfence_offset\r\n"[..]
        );
        let written = String::from_utf8_lossy(&rec);
        for f in &retract_switch()[2..] {
            assert!(written.contains(&*String::from_utf8_lossy(f)), "{written}");
        }
    }
}
