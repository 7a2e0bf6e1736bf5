//! Configuration: the TOML file, the command-line flags that override it, and validation.
//!
//! Every option has a default (documented in `config.example.toml`). Unknown keys and bad
//! values are refused at start with the file, the key and the reason.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cluster::RedisUrl;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub proxy: ProxyConfig,
    pub source: Option<EndpointConfig>,
    pub target: Option<EndpointConfig>,
    pub sync: SyncSection,
    pub cutover: CutoverSection,
    pub admin: AdminConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSection {
    /// `refuse` (default): stop if the target holds keys; `flush`: empty it first.
    pub target_not_empty: String,
    /// When a resume is answered with a full resync: `flush` (default) the target and load
    /// again, or `stop`.
    pub on_full_resync: String,
    /// The db of the target that holds cutover's checkpoint key.
    pub checkpoint_db: u32,
    /// Apply PUBLISH commands from the source's stream (Sentinel hellos never are).
    pub forward_publish: bool,
    /// Largest transaction of stream commands sent to the target.
    pub max_txn_bytes: u64,
    /// Most bytes sent to the target and not yet confirmed; past it the stream waits in
    /// the spool.
    pub max_inflight_bytes: u64,
    /// Where stream bytes the target can't take yet are spooled (empty: the system's
    /// temporary directory).
    pub spool_dir: String,
    /// Most bytes in the spool; past it the source is read more slowly.
    pub spool_max_bytes: u64,
    /// Values whose serialized size is above this are rebuilt in chunks of ordinary
    /// commands instead of one RESTORE (keep it below the target's proto-max-bulk-len).
    pub big_value_bytes: u64,
    /// Source db -> target db (`[sync.db_map]` with `"3" = 0`); unlisted dbs keep their
    /// number.
    pub db_map: std::collections::BTreeMap<String, u32>,
    /// An RDB (from `cutover dump`) that fills an empty target before the source is asked
    /// to continue from the replication offset inside it (empty: none).
    pub seed: String,
    /// Redis Cluster targets: a source transaction whose keys span slots is applied as one
    /// transaction per slot (`split`, default, counted) or stops the sync (`stop`).
    pub cross_slot_transactions: String,
    /// Redis Cluster sources: replicate from each `masters` (default) or from a replica
    /// of each master (`replicas`: the masters serve no full sync; the cutover still
    /// fences the masters).
    pub source_nodes: String,
    /// With `source_nodes = "replicas"`: the replicas to link through (`host:port` as the
    /// cluster lists them), at most one per master; a master with none listed links
    /// through the first replica the slot map gives.
    pub source_replicas: Vec<String>,
    /// How the data is read: `psync` (as a replica), `scan` (SCAN + DUMP, for sources that
    /// refuse replication, with the proxy tracking the keys written), or `auto` (default:
    /// PSYNC, and the SCAN copy when the source refuses it).
    pub source_mode: String,
    /// The SCAN copy reads at most this many keys per second (0: no limit).
    pub scan_max_ops: u64,
    /// The SCAN copy's dirty set holds at most this many keys; past it, every key is
    /// copied again instead (nothing is lost; more is copied).
    pub scan_max_dirty_keys: u64,
}

/// `sync.source_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceMode {
    Auto,
    Psync,
    Scan,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CutoverSection {
    /// Switch by itself once the lag has stayed at or below `auto_max_lag` for
    /// `auto_hold_ms`.
    pub auto: bool,
    pub auto_max_lag: u64,
    pub auto_hold_ms: u64,
    /// Deadline of the whole switch (CUTOVER without TIMEOUT, and the automatic one).
    pub timeout_ms: u64,
    /// Every CUTOVER (the automatic one too) behaves as `CUTOVER VERIFIED`: it switches only
    /// after a VERIFY found the target equal since the sync last loaded everything.
    pub require_verify: bool,
}

impl Default for CutoverSection {
    fn default() -> Self {
        CutoverSection {
            auto: false,
            auto_max_lag: 0,
            auto_hold_ms: 5_000,
            timeout_ms: 2_000,
            require_verify: false,
        }
    }
}

impl Default for SyncSection {
    fn default() -> Self {
        SyncSection {
            target_not_empty: "refuse".into(),
            on_full_resync: "flush".into(),
            checkpoint_db: 0,
            forward_publish: false,
            max_txn_bytes: 1024 * 1024,
            max_inflight_bytes: 64 * 1024 * 1024,
            spool_dir: String::new(),
            spool_max_bytes: 4 * 1024 * 1024 * 1024,
            big_value_bytes: sync::config::DEFAULT_BIG_VALUE_BYTES as u64,
            db_map: Default::default(),
            seed: String::new(),
            cross_slot_transactions: "split".into(),
            source_nodes: "masters".into(),
            source_replicas: Vec::new(),
            source_mode: "auto".into(),
            scan_max_ops: 0,
            scan_max_dirty_keys: 10_000_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyConfig {
    /// Where applications connect.
    pub listen: String,
    /// Password of the default user (like Redis `requirepass`); none = no AUTH needed.
    pub password: Option<String>,
    /// Named users for `AUTH <user> <pass>`.
    pub users: Vec<UserConfig>,
    /// Who checks a client's `AUTH` and as whom its commands run. `source` (default): the
    /// Redis behind the proxy checks it, and the client's commands run as that user on
    /// connections of its own user (so Redis enforces its ACL); `password`/`users` above,
    /// when set, are an extra gate in front. `proxy`: only the proxy's own password/users
    /// are checked, and every command runs with the URL's credentials.
    pub client_auth: String,
    /// Most clients connected at once (Redis `maxclients`).
    pub max_clients: usize,
    /// Most commands of one client waiting for replies; beyond it the proxy stops reading
    /// that client until replies come back.
    pub max_inflight_per_client: u32,
    /// Most reply bytes buffered for a client that does not read; then it is disconnected.
    pub client_output_limit: u64,
    /// Largest bulk argument accepted (Redis `proto-max-bulk-len`).
    pub max_bulk_len: u64,
    /// Shared backend connections per (db, protocol) pool. Clients are pinned to one.
    pub backend_connections: usize,
    /// Worker threads; 0 = half the CPUs (at least 1), or every CPU when the source or
    /// the target is a Redis Cluster. The proxy shares its machine with the Redis it
    /// fronts more often than not; routing over a cluster costs it more per command.
    pub threads: usize,
    /// How long to wait for a backend connection to open.
    pub connect_timeout_ms: u64,
    /// On SIGTERM, how long to wait for in-flight replies before exiting anyway.
    pub shutdown_timeout_ms: u64,
    /// TLS for applications: the certificate chain and private key (PEM); both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// With TLS: clients must present a certificate signed by one of these CAs (PEM).
    pub tls_client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// `redis://[user:pass@]host:port[/db]` or `rediss://` for TLS.
    pub url: String,
    /// Extra PEM CA certificates to trust for `rediss://`.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: Option<String>,
    pub password: Option<String>,
    /// TLS on the admin listener, as on the client listener (both or neither; PEM).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    pub tls_client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter; `RUST_LOG` wins.
    pub level: String,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listen: "127.0.0.1:6380".into(),
            password: None,
            users: Vec::new(),
            client_auth: "source".into(),
            max_clients: 10_000,
            max_inflight_per_client: 1024,
            client_output_limit: 256 * 1024 * 1024,
            max_bulk_len: 512 * 1024 * 1024,
            backend_connections: 1,
            threads: 0,
            connect_timeout_ms: 5_000,
            shutdown_timeout_ms: 10_000,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some("127.0.0.1:6390".into()),
            password: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
    }
}

/// A configuration problem, naming where it is.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {location}: {reason}")]
pub struct ConfigError {
    pub origin: String,
    /// `` `proxy.listen` `` or `line 3`.
    pub location: String,
    pub reason: String,
}

impl ConfigError {
    fn new(origin: &str, key: &str, reason: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.to_string(),
            location: format!("`{key}`"),
            reason: reason.into(),
        }
    }

    fn at_line(origin: &str, line: Option<usize>, reason: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.to_string(),
            location: line.map_or_else(|| "-".to_string(), |l| format!("line {l}")),
            reason: reason.into(),
        }
    }
}

/// The validated settings the proxy runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// TLS on the client listener (certificate, key, optional client CA).
    pub tls: Option<crate::tls::TlsFiles>,
    /// TLS on the admin listener.
    pub admin_tls: Option<crate::tls::TlsFiles>,
    pub source: Endpoint,
    pub target: Option<Endpoint>,
    pub admin: Option<SocketAddr>,
    pub admin_password: Option<String>,
    pub metrics: Option<SocketAddr>,
    pub password: Option<String>,
    pub users: Vec<UserConfig>,
    /// The backend checks clients' AUTH and runs each user's commands as that user.
    pub auth_by_backend: bool,
    pub max_clients: usize,
    pub max_inflight_per_client: u32,
    pub client_output_limit: usize,
    pub max_bulk_len: usize,
    pub backend_connections: usize,
    pub threads: usize,
    /// `threads` was left to cutover (0): [`crate::server::worker_threads`] may raise it.
    pub threads_auto: bool,
    /// Session workers beside the main runtime (a cluster on one side: see
    /// [`crate::server::worker_threads`]); set at start, 0 in the configuration.
    pub session_workers: usize,
    pub connect_timeout: std::time::Duration,
    pub shutdown_timeout: std::time::Duration,
    pub log_level: String,
    pub sync: SyncSettings,
    pub cutover: CutoverSection,
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    pub not_empty: sync::NotEmpty,
    pub on_full_resync: sync::OnFullResync,
    pub checkpoint_db: u32,
    pub forward_publish: bool,
    pub max_txn_bytes: usize,
    pub max_inflight_bytes: usize,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub big_value_bytes: usize,
    pub db_map: sync::DbMap,
    pub cross_slot: sync::CrossSlot,
    /// `sync.seed`: an RDB that fills the empty target first.
    pub seed: Option<PathBuf>,
    /// Cluster sources: link to a replica of each master instead of the master.
    pub from_replicas: bool,
    /// The replicas named in `sync.source_replicas` (only with `from_replicas`).
    pub chosen_replicas: Vec<cluster::slots::NodeAddr>,
    pub source_mode: SourceMode,
    pub scan_max_ops: u64,
    pub scan_max_dirty_keys: u64,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: RedisUrl,
    pub tls_ca_file: Option<PathBuf>,
}

impl Config {
    /// Reads and parses a TOML file; errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::at_line(&origin, None, format!("cannot read: {e}")))?;
        Self::from_toml(&text, &origin)
    }

    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // toml's message names the key for unknown fields and bad types; add the line.
            let line = e.span().map(|s| {
                text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count()
                    + 1
            });
            ConfigError::at_line(origin, line, e.message().trim_end().to_string())
        })
    }

    /// Checks every value and produces the settings. `origin` names where values came from.
    pub fn validate(&self, origin: &str) -> Result<Settings, ConfigError> {
        let err = |key: &str, reason: String| ConfigError::new(origin, key, reason);
        let addr = |key: &str, v: &str| -> Result<SocketAddr, ConfigError> {
            v.parse::<SocketAddr>().map_err(|e| {
                err(
                    key,
                    format!("`{v}` is not an address like 127.0.0.1:6380 ({e})"),
                )
            })
        };
        let endpoint = |key: &str, e: &EndpointConfig| -> Result<Endpoint, ConfigError> {
            let url =
                RedisUrl::parse(&e.url).map_err(|x| err(&format!("{key}.url"), x.to_string()))?;
            if let Some(ca) = &e.tls_ca_file {
                if !ca.is_file() {
                    return Err(err(
                        &format!("{key}.tls_ca_file"),
                        format!("{} is not a readable file", ca.display()),
                    ));
                }
            }
            Ok(Endpoint {
                url,
                tls_ca_file: e.tls_ca_file.clone(),
            })
        };
        let p = &self.proxy;
        let source = match &self.source {
            Some(s) => endpoint("source", s)?,
            None => return Err(err("source.url", "required (or --source)".into())),
        };
        let target = self
            .target
            .as_ref()
            .map(|t| endpoint("target", t))
            .transpose()?;
        if p.max_clients == 0 {
            return Err(err("proxy.max_clients", "must be at least 1".into()));
        }
        if p.max_inflight_per_client == 0 {
            return Err(err(
                "proxy.max_inflight_per_client",
                "must be at least 1".into(),
            ));
        }
        if p.threads > 1024 {
            return Err(err(
                "proxy.threads",
                "must be between 0 (auto) and 1024".into(),
            ));
        }
        if !(1..=64).contains(&p.backend_connections) {
            return Err(err(
                "proxy.backend_connections",
                "must be between 1 and 64".into(),
            ));
        }
        if p.max_bulk_len < 1024 || p.max_bulk_len > i64::MAX as u64 {
            return Err(err("proxy.max_bulk_len", "must be at least 1024".into()));
        }
        if p.client_output_limit < 1024 {
            return Err(err(
                "proxy.client_output_limit",
                "must be at least 1024".into(),
            ));
        }
        let sy = &self.sync;
        let sync = SyncSettings {
            not_empty: match sy.target_not_empty.as_str() {
                "refuse" => sync::NotEmpty::Refuse,
                "flush" => sync::NotEmpty::Flush,
                v => {
                    return Err(err(
                        "sync.target_not_empty",
                        format!("`{v}`: expected \"refuse\" or \"flush\""),
                    ))
                }
            },
            on_full_resync: match sy.on_full_resync.as_str() {
                "flush" => sync::OnFullResync::Flush,
                "stop" => sync::OnFullResync::Stop,
                v => {
                    return Err(err(
                        "sync.on_full_resync",
                        format!("`{v}`: expected \"flush\" or \"stop\""),
                    ))
                }
            },
            checkpoint_db: sy.checkpoint_db,
            forward_publish: sy.forward_publish,
            max_txn_bytes: usize::try_from(sy.max_txn_bytes.clamp(1024, 512 * 1024 * 1024))
                .unwrap_or(1024 * 1024),
            max_inflight_bytes: usize::try_from(
                sy.max_inflight_bytes
                    .clamp(64 * 1024, 16 * 1024 * 1024 * 1024),
            )
            .unwrap_or(64 * 1024 * 1024),
            spool_dir: if sy.spool_dir.is_empty() {
                std::env::temp_dir().join("cutover-spool")
            } else {
                PathBuf::from(&sy.spool_dir)
            },
            spool_max_bytes: sy.spool_max_bytes,
            big_value_bytes: usize::try_from(sy.big_value_bytes.max(1024)).unwrap_or(usize::MAX),
            db_map: {
                let mut m = Vec::new();
                for (k, v) in &sy.db_map {
                    let Ok(src) = k.parse::<u32>() else {
                        return Err(err(
                            &format!("sync.db_map.{k}"),
                            "keys are source db numbers, like \"3\" = 0".into(),
                        ));
                    };
                    m.push((src, *v));
                }
                sync::DbMap(m)
            },
            seed: if sy.seed.is_empty() {
                None
            } else {
                let p = PathBuf::from(&sy.seed);
                if !p.is_file() {
                    return Err(err(
                        "sync.seed",
                        format!("{} is not a readable file", p.display()),
                    ));
                }
                Some(p)
            },
            cross_slot: match sy.cross_slot_transactions.as_str() {
                "split" => sync::CrossSlot::Split,
                "stop" => sync::CrossSlot::Stop,
                v => {
                    return Err(err(
                        "sync.cross_slot_transactions",
                        format!("`{v}`: expected \"split\" or \"stop\""),
                    ))
                }
            },
            source_mode: match sy.source_mode.as_str() {
                "auto" => SourceMode::Auto,
                "psync" => SourceMode::Psync,
                "scan" => SourceMode::Scan,
                v => {
                    return Err(err(
                        "sync.source_mode",
                        format!("`{v}`: expected \"auto\", \"psync\" or \"scan\""),
                    ))
                }
            },
            scan_max_ops: sy.scan_max_ops,
            scan_max_dirty_keys: if sy.scan_max_dirty_keys == 0 {
                return Err(err("sync.scan_max_dirty_keys", "must be at least 1".into()));
            } else {
                sy.scan_max_dirty_keys
            },
            from_replicas: match sy.source_nodes.as_str() {
                "masters" => false,
                "replicas" => true,
                v => {
                    return Err(err(
                        "sync.source_nodes",
                        format!("`{v}`: expected \"masters\" or \"replicas\""),
                    ))
                }
            },
            chosen_replicas: {
                let mut out = Vec::with_capacity(sy.source_replicas.len());
                for (i, a) in sy.source_replicas.iter().enumerate() {
                    let addr: cluster::slots::NodeAddr = a.parse().map_err(|e| {
                        err(
                            &format!("sync.source_replicas[{i}]"),
                            format!("`{a}`: {e} (expected host:port)"),
                        )
                    })?;
                    out.push(addr);
                }
                if !out.is_empty() && sy.source_nodes != "replicas" {
                    return Err(err(
                        "sync.source_replicas",
                        "names replicas to link through, which needs sync.source_nodes = \"replicas\"".into(),
                    ));
                }
                out
            },
        };
        let auth_by_backend = match p.client_auth.as_str() {
            "source" => true,
            "proxy" => false,
            other => {
                return Err(err(
                    "proxy.client_auth",
                    format!("`{other}`: expected \"source\" or \"proxy\""),
                ))
            }
        };
        for (i, u) in p.users.iter().enumerate() {
            if u.name.is_empty() || u.name == "default" {
                return Err(err(
                    &format!("proxy.users[{i}].name"),
                    "must be non-empty and not `default` (use proxy.password)".into(),
                ));
            }
        }
        let tls_files = |section: &str,
                         cert: &Option<PathBuf>,
                         key: &Option<PathBuf>,
                         ca: &Option<PathBuf>|
         -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
            let files = match (cert, key) {
                (None, None) if ca.is_some() => {
                    return Err(err(
                        &format!("{section}.tls_client_ca_file"),
                        format!("needs {section}.tls_cert_file and {section}.tls_key_file"),
                    ))
                }
                (None, None) => return Ok(None),
                (Some(cert), Some(key)) => crate::tls::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: ca.clone(),
                },
                (Some(_), None) => {
                    return Err(err(
                        &format!("{section}.tls_key_file"),
                        format!("required with {section}.tls_cert_file"),
                    ))
                }
                (None, Some(_)) => {
                    return Err(err(
                        &format!("{section}.tls_cert_file"),
                        format!("required with {section}.tls_key_file"),
                    ))
                }
            };
            crate::tls::acceptor(&files)
                .map_err(|e| err(&format!("{section}.tls_cert_file"), format!("{e:#}")))?;
            Ok(Some(files))
        };
        let tls = tls_files(
            "proxy",
            &p.tls_cert_file,
            &p.tls_key_file,
            &p.tls_client_ca_file,
        )?;
        let a = &self.admin;
        let admin_tls = tls_files(
            "admin",
            &a.tls_cert_file,
            &a.tls_key_file,
            &a.tls_client_ca_file,
        )?;
        Ok(Settings {
            listen: addr("proxy.listen", &p.listen)?,
            tls,
            admin_tls,
            source,
            target,
            admin: self
                .admin
                .listen
                .as_deref()
                .map(|a| addr("admin.listen", a))
                .transpose()?,
            admin_password: self.admin.password.clone(),
            metrics: self
                .metrics
                .listen
                .as_deref()
                .map(|a| addr("metrics.listen", a))
                .transpose()?,
            password: p.password.clone(),
            users: p.users.clone(),
            auth_by_backend,
            max_clients: p.max_clients,
            max_inflight_per_client: p.max_inflight_per_client,
            client_output_limit: usize::try_from(p.client_output_limit).unwrap_or(usize::MAX),
            max_bulk_len: usize::try_from(p.max_bulk_len).unwrap_or(usize::MAX),
            backend_connections: p.backend_connections,
            threads_auto: p.threads == 0,
            session_workers: 0,
            threads: if p.threads == 0 {
                std::thread::available_parallelism()
                    .map(|n| (n.get() / 2).max(1))
                    .unwrap_or(1)
            } else {
                p.threads
            },
            connect_timeout: std::time::Duration::from_millis(p.connect_timeout_ms.max(1)),
            shutdown_timeout: std::time::Duration::from_millis(p.shutdown_timeout_ms),
            log_level: self.log.level.clone(),
            sync,
            cutover: {
                let c = self.cutover.clone();
                if c.auto && self.target.is_none() {
                    return Err(err("cutover.auto", "needs a target".into()));
                }
                if c.timeout_ms == 0 || c.timeout_ms > 600_000 {
                    return Err(err(
                        "cutover.timeout_ms",
                        "must be between 1 and 600000".into(),
                    ));
                }
                c
            },
        })
    }
}

#[cfg(test)]
mod tests;
