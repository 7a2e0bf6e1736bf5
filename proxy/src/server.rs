//! Starting the proxy: the client listener, the admin and metrics listeners, and a clean
//! shutdown on SIGTERM/SIGINT (stop accepting, finish in-flight replies, exit).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Users;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::session::{self, Shared};
use crate::stats::Stats;
use crate::upstream::Upstream;

/// Runs until SIGTERM/SIGINT.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: no new clients, finishing in-flight replies");
        signal.cancel();
    });
    run_until(settings, shutdown).await
}

/// Runs until `shutdown` is cancelled.
pub async fn run_until(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    raise_fd_limit();
    if let Some(addr) = settings.metrics {
        crate::metrics::install(addr)?;
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening for clients on {}", settings.listen))?;
    let source = Arc::new(
        Upstream::new(
            "source",
            &settings.source,
            settings.backend_connections,
            settings.connect_timeout,
            settings.auth_by_backend,
        )
        .await
        .context("setting up the source")?,
    );
    let target = match &settings.target {
        None => None,
        Some(t) => Some(Arc::new(
            Upstream::new(
                "target",
                t,
                settings.backend_connections,
                settings.connect_timeout,
                settings.auth_by_backend,
            )
            .await
            .context("setting up the target")?,
        )),
    };
    // A cutover already done (recorded on the target) holds across restarts. A target that
    // does not answer can't say; then a switch can't have happened unless the source
    // carries a CUTOVER's attempt marker: without one, the clients are served from the
    // source (the target is reached later by the syncer and the connections).
    // Whether the target answered that question (else nothing about it is known yet).
    let mut target_answered = false;
    let switched = match &target {
        None => None,
        Some(t) => {
            let mut tries = 0;
            loop {
                let e = match crate::cutover::recorded_switch(t, settings.sync.checkpoint_db).await
                {
                    Ok(v) => {
                        target_answered = true;
                        break v;
                    }
                    Err(e) => e,
                };
                match crate::cutover::attempt_marked(&source).await {
                    Ok(false) => {
                        tracing::warn!(error = %e, "the target does not answer; no CUTOVER was ever attempted (no marker on the source): serving the clients from the source");
                        break None;
                    }
                    Ok(true) if tries >= 30 => anyhow::bail!(
                        "the target does not answer ({e}) and the source carries a CUTOVER's attempt marker (`{}`): the switch may have happened, so the clients can't be sent to the source; start cutover again once the target answers",
                        String::from_utf8_lossy(sync::checkpoint::ATTEMPT_KEY)
                    ),
                    Err(m) if tries >= 30 => anyhow::bail!(
                        "cannot tell whether a cutover already happened (target: {e}; source: {m}): refusing to start, as routing to the source after a switch would split the writes"
                    ),
                    _ => {}
                }
                tries += 1;
                tracing::warn!(error = %e, "cannot read the target's switch record yet, and the source carries an attempt marker (or does not answer); retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    };
    // A record whose CUTOVER aborted (its confirmation was lost, and the source was marked
    // before any client command went there): it does not count, and is taken back now.
    // The source's attempt marker, read when it matters (a recorded switch, or a target
    // that did not answer); unreadable: retried, then not started.
    let mark = if target.is_some() && (switched.is_some() || !target_answered) {
        let mut tries = 0;
        loop {
            match crate::cutover::attempt_mark(&source).await {
                Ok(m) => break Some(m),
                Err(e) if tries >= 30 => anyhow::bail!(
                    "cannot read the source's CUTOVER attempt marker ({e}): it says whether the target's switch record counts; refusing to start"
                ),
                Err(e) => {
                    tries += 1;
                    tracing::warn!(error = %e, "cannot read the source's attempt marker yet; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    } else {
        None
    };
    let aborted = match mark {
        Some(crate::cutover::AttemptMark::Aborted(a)) => Some(a),
        _ => None,
    };
    let switched = match (switched, &target) {
        (Some(epoch), Some(t)) if aborted == Some(epoch) => {
            tracing::warn!(epoch, "the target holds the switch record of a CUTOVER the source says aborted: routing to the source and removing the record");
            crate::cutover::retract_now(t, settings.sync.checkpoint_db)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "removing the aborted CUTOVER's switch record from the target: {e}"
                    )
                })?;
            None
        }
        (s, _) => s,
    };
    // A migration ended by FINISH: the source is retired, the configuration must change.
    // Unknown (the source does not answer): not started, rather than routing to a source
    // that may be retired.
    if switched.is_none() && target.is_some() {
        let mut tries = 0;
        loop {
            match crate::finish::finished_marked(&source).await {
                Ok(true) => anyhow::bail!(
                    "the migration from this source finished (FINISH marked it `{}`): the clients belong on the target now; configure the target as the source",
                    String::from_utf8_lossy(sync::checkpoint::FINISHED_KEY)
                ),
                Ok(false) => break,
                Err(e) if tries >= 30 => anyhow::bail!(
                    "cannot tell whether the migration from this source already finished (source: {e}): refusing to start, as a finished migration must never route to its old source; start cutover again once the source answers"
                ),
                Err(e) => {
                    tries += 1;
                    tracing::warn!(error = %e, "cannot read the source's finished mark yet; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }
    let router = Arc::new(match (&switched, &target) {
        (Some(epoch), Some(t)) => {
            tracing::warn!(epoch, "the target records a completed cutover: routing to the target; the syncer stays stopped");
            crate::route::Router::new(crate::route::Side::Target, t.clone(), *epoch)
        }
        _ => crate::route::Router::new(crate::route::Side::Source, source.clone(), 0),
    });
    let (stop_sync, stop_rx) = tokio::sync::watch::channel(false);
    let sync_set = match &settings.target {
        None => None,
        Some(_) if switched.is_some() => {
            let st = Arc::new(sync::SyncStatus::default());
            st.set_state(sync::SyncState::Stopped);
            let conn = Arc::new(source.connector().clone());
            Some(Arc::new(sync::SyncSet::single(source.addr(), conn, st)))
        }
        Some(target) => {
            let set = crate::syncing::start(&settings, &source, target, stop_rx)?;
            crate::cutover::lift_stale_pause(&set);
            // Only once the target said no switch is recorded there: an aborted mark must
            // outlive a record it may still be guarding.
            if target_answered {
                crate::cutover::clear_attempt(source.clone());
            }
            Some(set)
        }
    };
    source.probe_later();
    if let Some(t) = &target {
        t.probe_later();
    }
    let stats = Arc::new(Stats::default());
    let sh = Arc::new(Shared {
        users: Users::new(settings.password.as_deref(), &settings.users),
        router,
        scripts: Default::default(),
        source,
        target: arc_swap::ArcSwapOption::new(target.clone()),
        cutover: Default::default(),
        stop_sync: stop_sync.clone(),
        tracker: sync_set.as_ref().and_then(|s| s.tracker.clone()),
        verify: Default::default(),
        logins: Default::default(),
        clients: Default::default(),
        tls: match &settings.tls {
            Some(t) => Some(crate::tls::acceptor(t)?),
            None => None,
        },
        stats: stats.clone(),
        metrics: Metrics::new(),
        next_client_id: AtomicU64::new(1),
        shutdown: shutdown.clone(),
        sync: sync_set,
        settings,
    });
    if let Some(addr) = sh.settings.admin {
        let admin = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for admin on {addr}"))?;
        tracing::info!(%addr, "admin listening");
        tokio::spawn(crate::admin::serve(admin, sh.clone()));
    }
    if let (false, Some(epoch), Some(t)) = (target_answered, aborted, &target) {
        // The target was down: the record of that aborted CUTOVER may still be there.
        // Taken back once it answers; no CUTOVER until then.
        crate::cutover::retract_switch(sh.clone(), t.clone(), epoch);
    }
    crate::cutover::spawn_auto(sh.clone());
    if let Some(t) = &sh.tracker {
        tokio::spawn(crate::track::watch_untracked(
            t.clone(),
            Arc::new(sh.source.connector().clone()),
            sh.shutdown.clone(),
        ));
    }
    tracing::info!(listen = %sh.settings.listen, source = %sh.settings.source.url, "cutover proxy listening");
    let tracker = TaskTracker::new();
    let workers = SessionWorkers::start(sh.settings.session_workers)?;
    let mut next_worker = 0usize;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE and friends: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let clients = Stats::get(&stats.clients);
                if clients as usize >= sh.settings.max_clients {
                    Stats::add(&stats.rejected_connections, 1);
                    sh.metrics.connections_rejected.increment(1);
                    tokio::spawn(reject(stream));
                    continue;
                }
                Stats::add(&stats.clients, 1);
                Stats::add(&stats.connections_total, 1);
                sh.metrics.connections_total.increment(1);
                sh.metrics.clients.increment(1.0);
                let sh2 = sh.clone();
                next_worker = next_worker.wrapping_add(1);
                // With session workers, every client goes to one of them (the main
                // runtime keeps the admin, the syncer and the topology).
                let pick = if workers.handles.is_empty() {
                    0
                } else {
                    1 + next_worker % workers.handles.len()
                };
                if pick == 0 {
                    tracker.spawn(async move {
                        session::serve(stream, peer, sh2.clone()).await;
                        sh2.stats.clients.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        sh2.metrics.clients.decrement(1.0);
                    });
                } else {
                    // The socket moves to that worker's own runtime (and reactor).
                    let std_stream = match stream.into_std() {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot hand a client to a worker");
                            continue;
                        }
                    };
                    let fut = tracker.track_future(async move {
                        match tokio::net::TcpStream::from_std(std_stream) {
                            Ok(stream) => session::serve(stream, peer, sh2.clone()).await,
                            Err(e) => tracing::warn!(error = %e, "cannot register a client"),
                        }
                        sh2.stats.clients.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        sh2.metrics.clients.decrement(1.0);
                    });
                    workers.handles[pick - 1].spawn(fut);
                }
            }
        }
    }
    drop(listener);
    let _ = stop_sync.send(true);
    tracker.close();
    let timeout = sh.settings.shutdown_timeout;
    if tokio::time::timeout(timeout, tracker.wait()).await.is_err() {
        tracing::warn!(
            remaining = tracker.len(),
            "shutdown timeout: closing remaining clients"
        );
    }
    tracing::info!("stopped");
    Ok(())
}

/// Redis's answer when `maxclients` is reached.
async fn reject(mut stream: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
    let _ = stream.shutdown().await;
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Each client is a socket: lift the soft open-files limit to the hard one.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

/// The threads: `(main runtime workers, session workers)`.
///
/// In front of one server: a multi-threaded runtime of `proxy.threads` workers (0: half
/// the CPUs; one worker leaves the other core to Redis and does best on 2 cores).
///
/// With a Redis Cluster on either side (asked before any runtime exists, 2 s deadline; a
/// side that does not answer counts as one server), routing costs the proxy about twice
/// the CPU per command, and the clients are served by session workers (`proxy.threads`
/// of them, 0: every CPU), each a single-threaded runtime whose clients use node
/// connections of their own (`cluster::worker`), so replies never wake a task on another
/// thread; one more worker (the main runtime) keeps the admin, the syncer and the
/// topology. Measured on 2 cores, 3 masters, -P 16 (A/B, 3 rounds each): a second worker
/// of one multi-threaded runtime cost ~1.6-1.7 us of proxy CPU per request; one main
/// worker serving clients plus a session worker ~1.4, and SET 363k -> 399k, GET 380k ->
/// 443k requests/s; clients on two session workers then SET 420k -> 443k, GET equal.
pub fn worker_threads(settings: &Settings) -> (usize, usize) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = if settings.threads_auto {
        cpus
    } else {
        settings.threads
    };
    if wanted <= 1 {
        return (settings.threads, 0);
    }
    let probe = async {
        let sides = std::iter::once(&settings.source).chain(settings.target.as_ref());
        for side in sides {
            if is_cluster(side).await {
                return true;
            }
        }
        false
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return (settings.threads, 0),
    };
    if rt.block_on(probe) {
        tracing::info!(
            threads = wanted,
            "a Redis Cluster on one side: {wanted} session workers (and one for the rest)"
        );
        (1, wanted)
    } else {
        (settings.threads, 0)
    }
}

/// Whether the endpoint's node answers `cluster_enabled:1` within 2 s.
async fn is_cluster(ep: &crate::config::Endpoint) -> bool {
    let timeout = std::time::Duration::from_secs(2);
    let Ok(connector) = cluster::Connector::new(ep.url.clone(), ep.tls_ca_file.as_deref(), timeout)
    else {
        return false;
    };
    let ask = async {
        let mut conn = connector
            .connect(&cluster::SessionSetup::default())
            .await
            .ok()?;
        let reply = conn.request(&[&[b"INFO", b"cluster"]]).await.ok()?;
        let text = reply.first()?;
        Some(cluster::info::cluster_enabled(text))
    };
    matches!(tokio::time::timeout(timeout, ask).await, Ok(Some(true)))
}

/// Extra session workers: each a thread with a single-threaded runtime of its own, whose
/// clients use node connections of that worker (see `cluster::worker`).
struct SessionWorkers {
    handles: Vec<tokio::runtime::Handle>,
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl SessionWorkers {
    fn start(n: usize) -> anyhow::Result<SessionWorkers> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for i in 1..=n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting a session worker")?;
            handles.push(rt.handle().clone());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            stops.push(tx);
            std::thread::Builder::new()
                .name(format!("cutover-w{i}"))
                .spawn(move || {
                    cluster::worker::set(i);
                    // Runs its sessions until the server drops the sender.
                    let _ = rt.block_on(rx);
                })
                .context("starting a session worker thread")?;
        }
        Ok(SessionWorkers {
            handles,
            _stop: stops,
        })
    }
}
