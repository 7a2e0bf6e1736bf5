//! Prometheus metrics: installed once, served at `/metrics` on the metrics listener.
//!
//! Hot paths hold metric handles (an atomic each) instead of looking metrics up by name
//! per command.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Kinds of commands counted separately (`cutover_commands_total{kind=...}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read = 0,
    Write,
    Admin,
    PubSub,
    Transaction,
    Scripting,
    Blocking,
    Local,
    Other,
}

const KIND_NAMES: [&str; 9] = [
    "read",
    "write",
    "admin",
    "pubsub",
    "transaction",
    "scripting",
    "blocking",
    "local",
    "other",
];

impl Kind {
    pub fn of(info: &resp::command::CommandInfo) -> Kind {
        use resp::command::flags as f;
        if info.has(f::TRANSACTION) {
            Kind::Transaction
        } else if info.has(f::SCRIPTING) {
            Kind::Scripting
        } else if info.has(f::BLOCKING) {
            Kind::Blocking
        } else if info.has(f::PUBSUB) {
            Kind::PubSub
        } else if info.has(f::ADMIN) {
            Kind::Admin
        } else if info.has(f::WRITE) {
            Kind::Write
        } else if info.has(f::READONLY) {
            Kind::Read
        } else {
            Kind::Other
        }
    }
}

/// Handles of every metric the proxy updates.
#[derive(Clone)]
pub struct Metrics {
    pub commands: [Counter; 9],
    pub connections_total: Counter,
    pub connections_rejected: Counter,
    pub clients: Gauge,
    pub client_errors: Counter,
    pub protocol_errors: Counter,
    pub backend_errors: Counter,
    pub output_limit_disconnects: Counter,
    pub dedicated_connections: Counter,
    pub latency: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics {
            commands: KIND_NAMES.map(|k| counter!("cutover_commands_total", "kind" => k)),
            connections_total: counter!("cutover_client_connections_total"),
            connections_rejected: counter!("cutover_client_connections_rejected_total"),
            clients: gauge!("cutover_clients"),
            client_errors: counter!("cutover_errors_total", "kind" => "client"),
            protocol_errors: counter!("cutover_errors_total", "kind" => "protocol"),
            backend_errors: counter!("cutover_errors_total", "kind" => "backend"),
            output_limit_disconnects: counter!("cutover_output_limit_disconnects_total"),
            dedicated_connections: counter!("cutover_dedicated_connections_total"),
            latency: histogram!("cutover_command_latency_seconds"),
        }
    }

    pub fn count(&self, kind: Kind, n: u64) {
        self.commands[kind as usize].increment(n);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Installs the Prometheus recorder and its HTTP listener. Must run before `Metrics::new`
/// for the handles to be live (otherwise they are no-ops).
pub fn install(listen: SocketAddr) -> anyhow::Result<()> {
    let buckets = [
        0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5, 5.0,
    ];
    PrometheusBuilder::new()
        .with_http_listener(listen)
        .set_buckets_for_metric(
            Matcher::Full("cutover_command_latency_seconds".into()),
            &buckets,
        )?
        .upkeep_timeout(Duration::from_secs(5))
        .install()
        .map_err(|e| anyhow::anyhow!("metrics listener on {listen}: {e}"))?;
    describe();
    Ok(())
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!("cutover_commands_total", "Client commands handled, by kind");
    describe_counter!(
        "cutover_client_connections_total",
        "Client connections accepted"
    );
    describe_counter!(
        "cutover_client_connections_rejected_total",
        "Client connections refused (max_clients)"
    );
    describe_gauge!("cutover_clients", "Clients connected now");
    describe_counter!(
        "cutover_errors_total",
        "Errors by kind: client, protocol, backend"
    );
    describe_counter!(
        "cutover_backend_reconnects_total",
        "Shared backend connections lost and re-opened"
    );
    describe_counter!(
        "cutover_output_limit_disconnects_total",
        "Clients disconnected for not reading their replies"
    );
    describe_counter!(
        "cutover_dedicated_connections_total",
        "Dedicated backend connections opened (MULTI, blocking, pub/sub, ...)"
    );
    describe_histogram!(
        "cutover_command_latency_seconds",
        Unit::Seconds,
        "Time from forwarding a client's batch of commands to its last reply"
    );
    describe_gauge!(
        "cutover_sync_state",
        "Syncer state: 0 connecting, 1 full_sync, 2 streaming, 3 stopped, 4 error"
    );
    describe_gauge!(
        "cutover_sync_source_offset",
        "The source's replication offset"
    );
    describe_gauge!(
        "cutover_sync_applied_offset",
        "End of the last source command the target confirmed"
    );
    describe_gauge!("cutover_sync_lag_bytes", "source_offset - applied_offset");
    describe_gauge!(
        "cutover_sync_lag_ms",
        "Milliseconds since the target last caught up"
    );
    describe_gauge!(
        "cutover_sync_keys_loaded",
        "Keys loaded by the current or last full sync"
    );
    let _ = gauge!("cutover_up");
    gauge!("cutover_up").set(1.0);
}
