//! The checkpoint kept on the target: which source history (replid) and offset the target
//! holds, and the db the stream was in. It is written in the same MULTI/EXEC as the
//! commands it covers, so after any crash the target and its checkpoint agree: resuming
//! from it applies nothing twice and skips nothing.

use bytes::BytesMut;
use cluster::NodeStream;

use crate::SyncError;

/// The key, a hash, in `checkpoint_db` of the target.
pub const KEY: &[u8] = b"__cutover:checkpoint";

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

    /// `HSET` of this checkpoint, as a command.
    pub fn hset(&self, out: &mut BytesMut) {
        let offset = self.offset.to_string();
        let db = self.db.to_string();
        resp::encode::command(
            out,
            [
                &b"HSET"[..],
                KEY,
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

/// Reads the checkpoint (None when the target has none).
pub async fn read(conn: &mut NodeStream, db: u32) -> Result<Option<Checkpoint>, SyncError> {
    let dbs = db.to_string();
    let replies = conn
        .request(&[&[b"SELECT", dbs.as_bytes()], &[b"HGETALL", KEY]])
        .await
        .map_err(|e| SyncError::Target(e.to_string()))?;
    Ok(parse(&replies[1])?.checkpoint)
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
    let Some(items) = crate::target::array_elements(reply) else {
        return Err(SyncError::Target(format!(
            "reading the checkpoint: {}",
            String::from_utf8_lossy(reply).trim_end()
        )));
    };
    if items.is_empty() {
        return Ok(Record::default());
    }
    let mut cp = Checkpoint {
        state: String::new(),
        replid: String::new(),
        offset: -1,
        db: 0,
    };
    let mut switched = false;
    for pair in items.chunks(2) {
        let [k, v] = pair else { break };
        let k = bulk_text(k);
        let v = bulk_text(v);
        match k.as_str() {
            "state" => cp.state = v,
            "replid" => cp.replid = v,
            "offset" => cp.offset = v.parse().unwrap_or(-1),
            "db" => cp.db = v.parse().unwrap_or(0),
            "route" => switched = v == "target",
            _ => {}
        }
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

fn bulk_text(frame: &[u8]) -> String {
    // `$n\r\n<data>\r\n`
    let start = memchr::memchr(b'\n', frame).map(|i| i + 1).unwrap_or(0);
    let end = frame.len().saturating_sub(2).max(start);
    String::from_utf8_lossy(&frame[start..end]).into_owned()
}
