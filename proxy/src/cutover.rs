//! The cutover: one admin command moves every client from the source to the target,
//! losing nothing (see shared/notes/cutover-protocol.md).
//!
//! Under one deadline: gate (each connection holds its first possible write and what
//! follows) -> drain (nothing in flight to the source: every acknowledged write is in its
//! replication stream) -> fence (`CLIENT PAUSE WRITE` on the source, then read its offset
//! O) -> catch up (the target has applied O) -> flip (the syncer stops at O, the route
//! swaps, the switch is recorded on the target) -> release (held commands go to the
//! target, in order per connection). Any failure before the flip aborts: the source is
//! unpaused and the held commands go to the source; no client write has touched the
//! target. After the flip the source stays paused for writes.
//!
//! A cluster source has one replication link per master: each master is fenced (paused,
//! its own offset read), the catch-up waits for every link to reach its master's offset,
//! every link stops at its own, and an abort unpauses every master.
//!
//! A source copied by SCAN (no replication) is fenced by the tracker instead: once the
//! drain is done every write through the proxy has marked its keys, so the copier copies
//! the last dirty keys and names the stream offset that covers them; the catch-up waits
//! for it as for a replication offset. `CLIENT PAUSE WRITE` is asked for (it stops writers
//! that bypass the proxy, and expiry) but a source that refuses it does not stop the
//! switch: that is said in the log and the reply.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cluster::{Connector, NodeStream, SessionSetup};

use crate::route::Side;
use crate::session::Shared;
use crate::upstream::Upstream;

mod marks;
pub use marks::{
    attempt_mark, attempt_marked, clear_attempt, recorded_switch, retract_now, retract_switch,
    AttemptMark,
};
use marks::{commit, mark_aborted, CommitFailed};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Idle = 0,
    Gating,
    Draining,
    Fencing,
    CatchingUp,
    Switched,
    Aborted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Gating => "gating",
            State::Draining => "draining",
            State::Fencing => "fencing",
            State::CatchingUp => "catching_up",
            State::Switched => "switched",
            State::Aborted => "aborted",
        }
    }
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Gating,
            2 => State::Draining,
            3 => State::Fencing,
            4 => State::CatchingUp,
            5 => State::Switched,
            6 => State::Aborted,
            _ => State::Idle,
        }
    }
}

/// The cutover's figures for STATUS and metrics.
#[derive(Default)]
pub struct CutoverStatus {
    state: AtomicU8,
    /// First held command to release, in microseconds (STATUS shows milliseconds).
    pub last_pause_us: AtomicU64,
    pub held_clients_max: AtomicU64,
    /// SCAN copy: the keys dirty when the last CUTOVER asked for the last copy.
    pub last_dirty_keys: AtomicU64,
    pub fence_offset: AtomicI64,
    /// A CUTOVER is under way (a second one is refused, not queued).
    running: std::sync::atomic::AtomicBool,
    /// FINISH ran: the source is no longer kept paused.
    pub finished: std::sync::atomic::AtomicBool,
    /// An unconfirmed switch record is being taken back: no new CUTOVER until it is (it
    /// would reuse the epoch, overwrite the source's aborted mark, and could have its
    /// own record taken back).
    pub retracting: std::sync::atomic::AtomicBool,
}

impl CutoverStatus {
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }
    fn set(&self, s: State) {
        self.state.store(s as u8, Ordering::Relaxed);
        metrics::gauge!("cutover_cutover_state").set(s as u8 as f64);
    }
    pub fn mark_switched(&self) {
        self.set(State::Switched);
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub timeout: Duration,
    pub max_lag: u64,
    pub check_only: bool,
    /// SCAN copy: refuse when more keys than this are dirty (left for the pause).
    pub max_dirty: Option<u64>,
    /// Refuse unless a VERIFY finished clean since the sync's last full load.
    pub verified: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_millis(2000),
            max_lag: 1024 * 1024,
            check_only: false,
            max_dirty: None,
            verified: false,
        }
    }
}

/// What a successful cutover reports.
#[derive(Debug)]
pub struct Report {
    pub epoch: u64,
    pub pause_ms: f64,
    pub fence_offset: i64,
    pub held_clients: u64,
}

/// The key on the target recording the switch (with the checkpoint).
const RECORD_KEY: &[u8] = sync::checkpoint::KEY;
const ATTEMPT_KEY: &[u8] = sync::checkpoint::ATTEMPT_KEY;

/// Preconditions shared by CUTOVER and CUTOVER CHECK.
fn preconditions(sh: &Shared, opts: &Options) -> Result<(), String> {
    let route = sh.router.route();
    if route.side == Side::Target {
        return Err(format!(
            "already switched to the target (route epoch {}); nothing to do",
            route.epoch
        ));
    }
    if sh.cutover.retracting.load(Ordering::Acquire) {
        return Err(
            "the last CUTOVER's unconfirmed switch record is still being taken back from the target; try again once that is logged as done".into(),
        );
    }
    let Some(sync) = &sh.sync else {
        return Err("no target configured (--target)".into());
    };
    if sh.target.load().is_none() {
        return Err("the target has not answered since cutover started".into());
    }
    if (opts.verified || sh.settings.cutover.require_verify)
        && !sh.verify.clean_now(sync.total(|s| &s.full_syncs))
    {
        return Err(format!(
            "no VERIFY has found the target equal since the sync last loaded everything (VERIFY is {}, {} differences){}",
            sh.verify.state(),
            sh.verify.differences.load(Ordering::Relaxed),
            if sh.settings.cutover.require_verify { "; cutover.require_verify is set" } else { "" }
        ));
    }
    if let (Some(t), Some(max)) = (sync.scanning(), opts.max_dirty) {
        let dirty = t.dirty_keys();
        if dirty > max || t.rescan_owed() {
            return Err(format!(
                "{dirty} keys are dirty (written since the SCAN copy copied them), above MAXDIRTY {max}{}",
                if t.rescan_owed() { "; a rescan of every key is owed" } else { "" }
            ));
        }
    }
    let state = sync.state();
    if state != sync::SyncState::Streaming {
        return Err(format!(
            "the syncer is {} (it must be streaming: the full load done)",
            state.as_str()
        ));
    }
    let lag = sync.lag_bytes() as u64;
    if lag > opts.max_lag {
        return Err(format!(
            "lag is {lag} bytes, above MAXLAG {} bytes",
            opts.max_lag
        ));
    }
    Ok(())
}

/// The automatic cutover: once the lag has stayed at or below the threshold for the hold
/// time, CUTOVER runs by itself (again after a failed attempt, once the lag has held again).
pub fn spawn_auto(sh: Arc<Shared>) {
    let c = sh.settings.cutover.clone();
    if !c.auto {
        return;
    }
    tokio::spawn(async move {
        let hold = Duration::from_millis(c.auto_hold_ms);
        let mut since: Option<Instant> = None;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if sh.shutdown.is_cancelled() || sh.router.route().side == Side::Target {
                return;
            }
            let ok = sh.sync.as_ref().is_some_and(|s| {
                s.state() == sync::SyncState::Streaming && s.lag_bytes() as u64 <= c.auto_max_lag
            });
            if !ok {
                since = None;
                continue;
            }
            let start = *since.get_or_insert_with(Instant::now);
            if start.elapsed() < hold {
                continue;
            }
            let opts = Options {
                timeout: Duration::from_millis(c.timeout_ms),
                max_lag: c.auto_max_lag.max(1),
                check_only: false,
                max_dirty: None,
                verified: false,
            };
            tracing::info!(
                max_lag = c.auto_max_lag,
                hold_ms = c.auto_hold_ms,
                "automatic CUTOVER: the lag held"
            );
            match run(&sh, opts).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "automatic CUTOVER failed; trying again once the lag holds");
                    since = None;
                }
            }
        }
    });
}

/// Runs CUTOVER (or only its checks).
pub async fn run(sh: &Arc<Shared>, opts: Options) -> Result<Option<Report>, String> {
    if sh
        .cutover
        .running
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err("a CUTOVER is already under way".into());
    }
    let r = run_one(sh, opts).await;
    sh.cutover.running.store(false, Ordering::Release);
    r
}

async fn run_one(sh: &Arc<Shared>, opts: Options) -> Result<Option<Report>, String> {
    preconditions(sh, &opts)?;
    if opts.check_only {
        return Ok(None);
    }
    let (Some(sync), Some(target)) = (sh.sync.clone(), sh.target.load_full()) else {
        return Err("no target configured".into());
    };
    let deadline = Instant::now() + opts.timeout;
    // Connections opened and scripts loaded before the gate, under the same deadline:
    // nothing slow happens while clients wait, and a stalled side fails the command.
    let prepared = tokio::time::timeout_at(deadline.into(), async {
        let mut src = Vec::with_capacity(sync.links.len());
        for l in &sync.links {
            src.push(connect_node(&l.source, "source").await?);
        }
        let tgt = connect_for_key(&target, RECORD_KEY, "target").await?;
        let mut masters = connect_masters(&target, "target").await?;
        let loaded = load_scripts(sh, &mut masters, 0).await?;
        // Every user the clients logged in as must log in on the target too (checked
        // again before the commit if more logged in meanwhile).
        let logins = sh.logins.version();
        crate::users::prepare_target(&sh.logins, &sh.source, &target).await?;
        // Last: the attempt marker on the source (written before its writes pause).
        let mut m = connect_for_key(&sh.source, ATTEMPT_KEY, "source").await?;
        let epoch = (sh.router.route().epoch + 1).to_string();
        let r = request(&mut m, &[b"SET", ATTEMPT_KEY, epoch.as_bytes()], "source").await?;
        if r.first() == Some(&b'-') {
            return Err(format!(
                "the source refused the attempt marker: {}",
                text(&r)
            ));
        }
        Ok::<_, String>((src, tgt, masters, loaded, logins))
    })
    .await
    .map_err(|_| {
        "deadline passed before the gate (the source or the target does not answer)".to_string()
    })
    .and_then(|r| r)
    .map_err(|why| {
        sh.cutover.set(State::Aborted);
        clear_attempt(sh.source.clone());
        tracing::warn!(reason = %why, "CUTOVER aborted before the gate");
        format!("aborted, clients continue on the source: {why}")
    })?;
    let (mut src, tgt, mut masters, mut loaded, logins) = prepared;

    let gate_at = Instant::now();
    // Whether the source's writes are paused (a SCAN-copied source may refuse it).
    let mut paused = true;
    sh.cutover.set(State::Gating);
    sh.router.resubscribed.store(0, Ordering::Relaxed);
    sh.router.close_gate();
    crate::fault::point("after_gate");
    let steps = async {
        sh.cutover.set(State::Draining);
        while sh.router.inflight() > 0 || sh.router.in_multi.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return Err(format!(
                    "deadline passed while draining: {} commands in flight to the source, {} transactions open (a client blocked behind a pipelined command, or a MULTI left open, keeps it from draining)",
                    sh.router.inflight(),
                    sh.router.in_multi.load(Ordering::Relaxed)
                ));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        crate::fault::point("after_drain");
        sh.cutover.set(State::Fencing);
        // Writes stay paused past the deadline: after the flip the keeper renews it; on
        // abort it is lifted at once.
        let pause_ms = (deadline
            .saturating_duration_since(Instant::now())
            .as_millis() as u64)
            .max(100)
            + 10_000;
        // Every master of the source paused first, then each one's offset read: no link's
        // master takes a write once the first offset is read.
        let pause = pause_ms.to_string();
        let scanning = sync.scanning().cloned();
        for (l, c) in sync.links.iter().zip(src.iter_mut()) {
            let r = request(
                c,
                &[b"CLIENT", b"PAUSE", pause.as_bytes(), b"WRITE"],
                "source",
            )
            .await?;
            if r.first() == Some(&b'-') {
                if scanning.is_some() {
                    // Managed services may refuse it: the proxy holds its own clients'
                    // writes anyway; only writers that bypass it (and expiry) go on.
                    tracing::warn!(
                        source = %l.addr,
                        reply = %text(&r),
                        "the source refused CLIENT PAUSE: switching without it (writers that bypass the proxy are not stopped)"
                    );
                    paused = false;
                    continue;
                }
                return Err(format!(
                    "the source {} refused CLIENT PAUSE: {}",
                    l.addr,
                    text(&r)
                ));
            }
        }
        // The offset each link must reach: the SCAN copy's, once it has copied the last
        // dirty keys (the writes are held); else each master's replication offset.
        let mut fences = Vec::with_capacity(src.len());
        if let Some(t) = scanning {
            let dirty = t.dirty_keys();
            sh.cutover.last_dirty_keys.store(dirty, Ordering::Relaxed);
            let fence = t
                .fence()
                .await
                .map_err(|_| "the SCAN copy stopped before its last copy".to_string())?;
            tracing::info!(
                dirty,
                fence,
                "SCAN copy: the last dirty keys are copied up to the fence"
            );
            fences.push(fence);
        } else {
            for (l, c) in sync.links.iter().zip(src.iter_mut()) {
                let info = request(c, &[b"INFO", b"replication"], "source").await?;
                let fence =
                    cluster::info::int_field(&String::from_utf8_lossy(&info), "master_repl_offset")
                        .ok_or_else(|| {
                            format!(
                                "cannot read the master_repl_offset of the source {}",
                                l.addr
                            )
                        })?;
                fences.push(fence);
            }
        }
        crate::fault::point("after_fence");
        sh.cutover.set(State::CatchingUp);
        for (l, &fence) in sync.links.iter().zip(&fences) {
            crate::fault::point("during_catchup");
            while l.status.applied() < fence {
                if Instant::now() >= deadline {
                    return Err(format!(
                        "deadline passed while the target caught up: applied {} of {fence} from {}",
                        l.status.applied(),
                        l.addr
                    ));
                }
                if sync.state() != sync::SyncState::Streaming {
                    return Err(format!(
                        "the syncer left streaming ({})",
                        sync.state().as_str()
                    ));
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        // Subscribers listen on the target too before anything is released there.
        while sh.router.resubscribed.load(Ordering::Acquire)
            < sh.router.subscribers.load(Ordering::Acquire)
        {
            if Instant::now() >= deadline {
                return Err(format!(
                    "deadline passed while subscribers subscribed on the target ({} of {})",
                    sh.router.resubscribed.load(Ordering::Relaxed),
                    sh.router.subscribers.load(Ordering::Relaxed)
                ));
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        // Scripts seen during the gate too (before the flip: EVALSHA must work at once).
        loaded = load_scripts(sh, &mut masters, loaded).await?;
        Ok(fences)
    };
    // Every step under the deadline: a side that stops answering aborts the cutover.
    let result = match tokio::time::timeout_at(deadline.into(), steps).await {
        Ok(r) => r,
        Err(_) => Err("deadline passed (the source or the target stopped answering)".into()),
    };
    // The commit point: the switch record, confirmed on the target before any client
    // command goes there. Before it, a crash or an abort leaves clients on the source with
    // nothing lost (the target took no client write); after it, the switch holds whatever
    // happens, a restarted cutover routes to the target.
    let epoch = sh.router.route().epoch + 1;
    // Set when the record may be on the target though unconfirmed: the abort then marks
    // the source before any client command goes there (see `mark_aborted`).
    let mut unconfirmed = false;
    // Users who logged in since the preparation (AUTH is not held by the gate).
    let result = match result {
        Ok(fences) if sh.logins.version() != logins => {
            let check = crate::users::prepare_target(&sh.logins, &sh.source, &target);
            match tokio::time::timeout_at(deadline.into(), check).await {
                Ok(Ok(_)) => Ok(fences),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(
                    "deadline passed while checking the users who logged in during the CUTOVER"
                        .into(),
                ),
            }
        }
        other => other,
    };
    let result = match result {
        Ok(fences) => {
            let fence: i64 = fences.iter().sum();
            let committed = match commit(sh, &target, tgt, epoch, fence, deadline).await {
                // Test only: the record landed, its confirmation "lost".
                Ok(()) if crate::fault::armed("unconfirmed_commit") => Err(CommitFailed::Unknown(
                    "fault point unconfirmed_commit".into(),
                )),
                other => other,
            };
            match committed {
                Ok(()) => Ok(fences),
                Err(CommitFailed::Refused(why)) => {
                    Err(format!("the target refused the switch record: {why}"))
                }
                Err(CommitFailed::Unknown(why)) => {
                    // It may have landed: taken back in the background (logged loudly).
                    unconfirmed = true;
                    if !crate::fault::armed("unconfirmed_commit") {
                        retract_switch(sh.clone(), target.clone(), epoch);
                    }
                    Err(format!(
                        "the target did not confirm the switch record ({why}); it is being removed"
                    ))
                }
            }
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(fences) => {
            crate::fault::point("after_commit");
            // Flip. From here on there is no going back: the syncer applies nothing past
            // the fence, the route swaps in one step, the held commands go to the target.
            for (l, &f) in sync.links.iter().zip(&fences) {
                l.status.set_fence(f);
            }
            if let Some(t) = sync.scanning() {
                t.switched();
            }
            // One figure for reports: the sum, as the offsets STATUS shows.
            let fence: i64 = fences.iter().sum();
            let held = sh.router.held_clients.load(Ordering::Relaxed);
            let switched = sh.router.switch(Side::Target, target.clone());
            debug_assert_eq!(switched, epoch);
            crate::fault::point("after_flip");
            let commands = sh.stats.commands_total.load(Ordering::Relaxed);
            sh.router.open_gate();
            if crate::fault::armed("after_release") {
                // Once a command read after the release is counted, a client's released
                // command was answered by the target.
                let until = Instant::now() + Duration::from_secs(2);
                while sh.stats.commands_total.load(Ordering::Relaxed) == commands
                    && Instant::now() < until
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                crate::fault::point("after_release");
            }
            let pause = gate_at.elapsed();
            sh.cutover.set(State::Switched);
            sh.cutover
                .last_pause_us
                .store(pause.as_micros() as u64, Ordering::Relaxed);
            sh.cutover.fence_offset.store(fence, Ordering::Relaxed);
            sh.cutover
                .held_clients_max
                .fetch_max(held, Ordering::Relaxed);
            metrics::gauge!("cutover_last_pause_ms").set(pause.as_secs_f64() * 1000.0);
            metrics::gauge!("cutover_route_epoch").set(epoch as f64);
            metrics::gauge!("cutover_held_commands_max").set(held as f64);
            tracing::info!(
                epoch,
                fence,
                pause_ms = pause.as_secs_f64() * 1000.0,
                held,
                "CUTOVER: clients now go to the target"
            );
            if paused {
                for (l, c) in sync.links.iter().zip(src) {
                    keep_fenced(sh.clone(), l.source.clone(), c);
                }
            }
            crate::finish::remove_slot_checkpoints(sh.clone(), target.clone());
            Ok(Some(Report {
                epoch,
                pause_ms: pause.as_secs_f64() * 1000.0,
                fence_offset: fence,
                held_clients: held,
            }))
        }
        Err(why) => {
            if unconfirmed {
                // A switch record may be on the target: before any client command goes
                // to the source, the source says this epoch aborted, so a cutover
                // restarted before the record is taken back still routes to the source.
                if let Err(e) = mark_aborted(&sh.source, epoch).await {
                    // Then the record itself must go before the clients do.
                    let ckdb = sh.settings.sync.checkpoint_db;
                    match tokio::time::timeout(Duration::from_secs(2), retract_now(&target, ckdb))
                        .await
                    {
                        Ok(Ok(())) => {
                            sh.cutover.retracting.store(false, Ordering::Release);
                            tracing::warn!(
                                epoch,
                                "the unconfirmed switch record is removed from the target"
                            );
                        }
                        _ => {
                            tracing::error!(epoch, error = %e, "could not mark the aborted CUTOVER on the source nor remove its switch record from the target: do not restart cutover until the record's removal is logged")
                        }
                    }
                }
            }
            // Abort: release the held commands to the source at once, then lift the pause
            // (bounded, retried in the background: a stalled source must not keep the
            // gate closed past the deadline).
            sh.router.open_gate();
            for (l, c) in sync.links.iter().zip(src) {
                unpause(l.source.clone(), c);
            }
            if unconfirmed && crate::fault::armed("unconfirmed_commit") {
                // Test only: dies once a client's command was answered by the source.
                let commands = sh.stats.commands_total.load(Ordering::Relaxed);
                let until = Instant::now() + Duration::from_secs(2);
                while sh.stats.commands_total.load(Ordering::Relaxed) == commands
                    && Instant::now() < until
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                crate::fault::point("unconfirmed_commit");
            }
            // Once the pause is lifted (a DEL waits for it). An aborted mark stays: it is
            // what a restart reads against a record that may still be on the target.
            if !unconfirmed {
                clear_attempt(sh.source.clone());
            }
            sh.cutover.set(State::Aborted);
            sh.cutover
                .last_pause_us
                .store(gate_at.elapsed().as_micros() as u64, Ordering::Relaxed);
            tracing::warn!(reason = %why, "CUTOVER aborted; clients continue on the source");
            Err(format!("aborted, clients continue on the source: {why}"))
        }
    }
}

/// At start, when the target records no switch: lifts a write pause a CUTOVER left on the
/// source if its process died between fencing and committing (nothing was switched, and
/// the pause would otherwise hold the source's writers until it expires). cutover is the
/// only one expected to pause the source (documented).
pub fn lift_stale_pause(set: &sync::SyncSet) {
    for l in &set.links {
        let node = l.source.clone();
        tokio::spawn(async move {
            match connect_node(&node, "source").await {
                Ok(mut c) => match request(&mut c, &[b"CLIENT", b"UNPAUSE"], "source").await {
                    Ok(r) if r.first() == Some(&b'+') => {}
                    Ok(r) => tracing::warn!(reply = %text(&r), "CLIENT UNPAUSE at start refused"),
                    Err(e) => tracing::warn!(error = %e, "CLIENT UNPAUSE at start"),
                },
                Err(e) => tracing::warn!(error = %e, "CLIENT UNPAUSE at start"),
            }
        });
    }
}

/// Lifts the source's write pause after an abort: on the connection that paused it if it
/// answers within 500 ms, else on fresh connections, retried until it works (the pause
/// would otherwise only end when it expires).
fn unpause(node: Arc<Connector>, mut src: NodeStream) {
    tokio::spawn(async move {
        let mut fresh = false;
        for attempt in 0..20u32 {
            let r = tokio::time::timeout(
                Duration::from_millis(500),
                request(&mut src, &[b"CLIENT", b"UNPAUSE"], "source"),
            )
            .await;
            // A reply left over from a cancelled step may come first on the old connection:
            // only a fresh connection's +OK is trusted.
            if matches!(&r, Ok(Ok(b)) if b.first() == Some(&b'+')) && fresh {
                return;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            match connect_node(&node, "source").await {
                Ok(c) => {
                    src = c;
                    fresh = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reach the source to lift its write pause; retrying")
                }
            }
        }
        tracing::error!("could not lift the source's write pause; it ends when it expires");
    });
}

/// Keeps the source's writes paused after the switch (renewing the pause), so a writer
/// that bypasses the proxy, or an expiry, cannot change what is no longer served.
fn keep_fenced(sh: Arc<Shared>, node: Arc<Connector>, mut src: NodeStream) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if sh.shutdown.is_cancelled() || sh.cutover.finished.load(Ordering::Acquire) {
                return;
            }
            let ok = request(
                &mut src,
                &[b"CLIENT", b"PAUSE", b"10000", b"WRITE"],
                "source",
            )
            .await
            .is_ok_and(|r| r.first() == Some(&b'+'));
            if !ok {
                tracing::warn!("cannot renew the source's write pause; reconnecting");
                match connect_node(&node, "source").await {
                    Ok(s) => src = s,
                    Err(e) => tracing::warn!(error = %e, "source unreachable"),
                }
            }
        }
    });
}

pub(crate) async fn connect(up: &Upstream, side: &str) -> Result<NodeStream, String> {
    connect_node(up.connector(), side).await
}

pub(crate) async fn connect_node(node: &Connector, side: &str) -> Result<NodeStream, String> {
    node.connect(&SessionSetup::default())
        .await
        .map_err(|e| format!("{side} {}: {e}", node.addr()))
}

/// A connection to the node that holds `key`: the server itself, or on a cluster the
/// master of the key's slot.
pub(crate) async fn connect_for_key(
    up: &Upstream,
    key: &[u8],
    side: &str,
) -> Result<NodeStream, String> {
    let Some(topo) = up.cluster() else {
        return connect(up, side).await;
    };
    let slot = cluster::slots::key_slot(key);
    let addr = topo
        .map()
        .slots
        .master_for(slot)
        .cloned()
        .ok_or_else(|| format!("{side}: no master serves slot {slot}"))?;
    let connector = topo.connector(&addr).map_err(|e| format!("{side}: {e}"))?;
    connector
        .connect(&SessionSetup::default())
        .await
        .map_err(|e| format!("{side}: {e}"))
}

/// Connections to every master (the server itself when it is not a cluster): scripts
/// must be loaded on each, as EVALSHA may land on any of them.
pub(crate) async fn connect_masters(up: &Upstream, side: &str) -> Result<Vec<NodeStream>, String> {
    let Some(topo) = up.cluster() else {
        return Ok(vec![connect(up, side).await?]);
    };
    let masters = topo.map().masters.clone();
    let mut out = Vec::with_capacity(masters.len());
    for m in masters {
        let connector = topo.connector(&m).map_err(|e| format!("{side}: {e}"))?;
        out.push(
            connector
                .connect(&SessionSetup::default())
                .await
                .map_err(|e| format!("{side}: {m}: {e}"))?,
        );
    }
    Ok(out)
}

pub(crate) async fn request(
    s: &mut NodeStream,
    args: &[&[u8]],
    side: &str,
) -> Result<bytes::Bytes, String> {
    s.request(&[args])
        .await
        .map(|mut r| r.remove(0))
        .map_err(|e| format!("{side}: {e}"))
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .trim_end()
        .chars()
        .take(200)
        .collect()
}

/// Loads the scripts recorded from index `from` on the target; returns the new count.
async fn load_scripts(
    sh: &Shared,
    masters: &mut [NodeStream],
    from: usize,
) -> Result<usize, String> {
    let bodies = sh.scripts.since(from);
    if bodies.is_empty() {
        return Ok(from);
    }
    let mut out = BytesMut::new();
    for b in &bodies {
        resp::encode::command(&mut out, [&b"SCRIPT"[..], b"LOAD", b].into_iter());
    }
    for tgt in masters.iter_mut() {
        let replies = tgt
            .request_raw(&out, bodies.len())
            .await
            .map_err(|e| format!("target: loading scripts: {e}"))?;
        if let Some(e) = replies.iter().find(|r| r.first() == Some(&b'-')) {
            return Err(format!("target refused a script: {}", text(e)));
        }
    }
    Ok(from + bodies.len())
}
