//! The commit point and what guards it across crashes: the switch record written to the
//! target and confirmed (or taken back when its confirmation is lost), the attempt marker
//! on the source (set before the gate; `aborted:<epoch>` when a record may have landed
//! unconfirmed), and reading both back at start.

use super::*;

/// Why the switch record could not be committed.
pub(super) enum CommitFailed {
    /// The target answered with an error: the record is not there.
    Refused(String),
    /// No answer: the record may or may not be there.
    Unknown(String),
}

/// Writes the switch record (epoch, fence) and waits for the target to confirm it: on the
/// connection opened before the gate, then on fresh ones, until the deadline.
pub(super) async fn commit(
    sh: &Arc<Shared>,
    target: &Arc<Upstream>,
    mut tgt: NodeStream,
    epoch: u64,
    fence: i64,
    deadline: Instant,
) -> Result<(), CommitFailed> {
    let mut out = BytesMut::new();
    let ckdb = sh.settings.sync.checkpoint_db.to_string();
    resp::encode::command(&mut out, [&b"SELECT"[..], ckdb.as_bytes()].into_iter());
    sync::checkpoint::switch_record(&mut out, epoch, fence);
    loop {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(200));
        let last = match tokio::time::timeout(left, tgt.request_raw(&out, 2)).await {
            Ok(Ok(r)) => {
                return match r.iter().find(|f| f.first() == Some(&b'-')) {
                    None => Ok(()),
                    Some(e) => Err(CommitFailed::Refused(text(e))),
                }
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no reply before the deadline".to_string(),
        };
        if Instant::now() >= deadline {
            return Err(CommitFailed::Unknown(last));
        }
        tracing::warn!(error = %last, "writing the switch record; trying again");
        tokio::time::sleep(Duration::from_millis(50)).await;
        match connect_for_key(target, RECORD_KEY, "target").await {
            Ok(c) => tgt = c,
            Err(e) => tracing::warn!(error = %e, "reaching the target for the switch record"),
        }
    }
}

/// What the source's attempt marker says.
#[derive(Debug, PartialEq, Eq)]
pub enum AttemptMark {
    None,
    /// A CUTOVER of this epoch was tried and did not abort cleanly (it may have switched).
    Attempt,
    /// The CUTOVER of this epoch aborted after its switch record may have reached the
    /// target: that record does not count.
    Aborted(u64),
}

/// Reads the attempt marker.
pub async fn attempt_mark(source: &Upstream) -> Result<AttemptMark, String> {
    let mut c = connect_for_key(source, ATTEMPT_KEY, "source").await?;
    let r = request(&mut c, &[b"GET", ATTEMPT_KEY], "source").await?;
    match resp::Value::decode_one(&r) {
        Ok(resp::Value::Nil) => Ok(AttemptMark::None),
        Ok(resp::Value::Bytes(b)) => Ok(
            match std::str::from_utf8(b)
                .ok()
                .and_then(|t| t.strip_prefix("aborted:"))
                .and_then(|n| n.parse().ok())
            {
                Some(e) => AttemptMark::Aborted(e),
                None => AttemptMark::Attempt,
            },
        ),
        _ => Err(format!(
            "source: GET {}: {}",
            String::from_utf8_lossy(ATTEMPT_KEY),
            text(&r)
        )),
    }
}

/// Marks the source: the CUTOVER of `epoch` aborted (its write pause lifted first on the
/// same connection, or the SET would wait behind it). At most 2 s.
pub(super) async fn mark_aborted(source: &Upstream, epoch: u64) -> Result<(), String> {
    let value = format!("aborted:{epoch}");
    tokio::time::timeout(Duration::from_secs(2), async {
        let mut c = connect_for_key(source, ATTEMPT_KEY, "source").await?;
        let _ = request(&mut c, &[b"CLIENT", b"UNPAUSE"], "source").await;
        let r = request(&mut c, &[b"SET", ATTEMPT_KEY, value.as_bytes()], "source").await?;
        if r.first() == Some(&b'-') {
            return Err(text(&r));
        }
        Ok(())
    })
    .await
    .map_err(|_| "no answer within 2 s".to_string())?
}

/// Takes back a switch record now (a restart found one whose CUTOVER the source says
/// aborted): Ok once the target confirmed.
pub async fn retract_now(target: &Upstream, ckdb: u32) -> Result<(), String> {
    let mut c = connect_for_key(target, RECORD_KEY, "target").await?;
    let ckdb = ckdb.to_string();
    let r = c
        .request(&[
            &[b"SELECT", ckdb.as_bytes()],
            sync::checkpoint::retract_switch(),
        ])
        .await
        .map_err(|e| format!("target: {e}"))?;
    match r.iter().find(|f| f.first() == Some(&b'-')) {
        None => Ok(()),
        Some(e) => Err(format!("target: {}", text(e))),
    }
}

/// Takes back a switch record whose write was not confirmed (the cutover aborted), retrying
/// until the target answers: a record left there would route a restarted cutover to the
/// target while the clients went on writing to the source.
pub fn retract_switch(sh: Arc<Shared>, target: Arc<Upstream>, epoch: u64) {
    sh.cutover.retracting.store(true, Ordering::Release);
    tracing::error!(
        epoch,
        "the switch record was not confirmed: removing it from the target (do not restart cutover until this is logged as done)"
    );
    tokio::spawn(async move {
        let ckdb = sh.settings.sync.checkpoint_db.to_string();
        loop {
            if let Ok(mut c) = connect_for_key(&target, RECORD_KEY, "target").await {
                let r = c
                    .request(&[
                        &[b"SELECT", ckdb.as_bytes()],
                        sync::checkpoint::retract_switch(),
                    ])
                    .await;
                if matches!(&r, Ok(r) if r.iter().all(|f| f.first() != Some(&b'-'))) {
                    tracing::warn!(
                        epoch,
                        "the unconfirmed switch record is removed from the target"
                    );
                    sh.cutover.retracting.store(false, Ordering::Release);
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
}

/// Takes the attempt marker off the source (an aborted CUTOVER, or one a dead process left),
/// retried until the source answers.
pub fn clear_attempt(source: Arc<Upstream>) {
    tokio::spawn(async move {
        for _ in 0..600 {
            if let Ok(mut c) = connect_for_key(&source, ATTEMPT_KEY, "source").await {
                if let Ok(r) = request(&mut c, &[b"DEL", ATTEMPT_KEY], "source").await {
                    if r.first() != Some(&b'-') {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        tracing::warn!("could not remove the attempt marker from the source");
    });
}

/// Whether the source holds the attempt marker of a CUTOVER that did not abort cleanly
/// (it may have switched); an aborted one's mark does not count.
pub async fn attempt_marked(source: &Upstream) -> Result<bool, String> {
    Ok(attempt_mark(source).await? == AttemptMark::Attempt)
}

/// Reads the switch record on the target: Some(epoch) when a cutover already happened,
/// None when the target answers that none did. Failing to read it is an error, not a
/// "no": routing back to the source after a switch would split the writes.
pub async fn recorded_switch(target: &Upstream, checkpoint_db: u32) -> Result<Option<u64>, String> {
    let mut c = connect_for_key(target, RECORD_KEY, "target").await?;
    let db = checkpoint_db.to_string();
    let r = c
        .request(&[&[b"SELECT", db.as_bytes()], &sync::checkpoint::SWITCH_QUERY])
        .await
        .map_err(|e| format!("target: {e}"))?;
    if let Some(e) = r.iter().find(|f| f.first() == Some(&b'-')) {
        return Err(format!("target: {}", text(e)));
    }
    sync::checkpoint::parse_switch(&r[1]).map_err(|e| format!("target: {e}"))
}
