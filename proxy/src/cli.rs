//! Command-line interface: `cutover run` and its flags, which override the config file.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, ConfigError, EndpointConfig, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "cutover",
    version,
    about = "Redis-protocol sync proxy for zero-downtime migrations"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (and, with --target, the syncer).
    Run(RunArgs),
    /// Talk to a running cutover's admin port: `ctl status`, `ctl cutover [--check]`.
    Ctl(CtlArgs),
    /// Restore backup files (RDB, AOF, multi-part AOF directory) into a Redis or a Redis
    /// Cluster; run it again to continue after an interruption.
    Restore(crate::restore::RestoreArgs),
    /// Write an RDB of a live Redis (over the replication link, as `redis-cli --rdb`),
    /// with its replication id and offset inside; one file per master of a cluster.
    Dump(crate::dump::DumpArgs),
    /// Prove the target holds what the source holds (every key or a sample, by content
    /// and TTL, both ways). Exit status 0 equal, 1 different, 2 could not run.
    Verify(crate::verify::VerifyArgs),
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    /// The admin listener of the running cutover.
    #[arg(long, default_value = "127.0.0.1:6390")]
    pub admin: String,
    /// Admin password, if one is set.
    #[arg(long, env = "CUTOVER_ADMIN_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// The admin listener speaks TLS (implied by the --tls-* files).
    #[arg(long)]
    pub tls: bool,
    /// CA certificate (PEM) that signed the admin listener's certificate, besides the
    /// web PKI roots.
    #[arg(long)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Client certificate (PEM), for a listener that requires one; with --tls-key-file.
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub action: CtlAction,
}

#[derive(Debug, Subcommand)]
pub enum CtlAction {
    /// Print STATUS.
    Status,
    /// Switch every client to the target (CUTOVER), or only check that it could.
    Cutover {
        /// Only check the preconditions (CUTOVER CHECK).
        #[arg(long)]
        check: bool,
        /// Deadline for the whole switch, in milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Largest lag (bytes) at which to start.
        #[arg(long)]
        max_lag: Option<u64>,
        /// The SCAN copy: most keys left dirty (to copy during the pause) at which to start.
        #[arg(long)]
        max_dirty: Option<u64>,
        /// Only after a VERIFY found the target equal (CUTOVER VERIFIED).
        #[arg(long)]
        verified: bool,
    },
    /// Start a VERIFY in the background (see STATUS verify_*): every key, or a sample.
    Verify {
        /// Only this many random keys.
        #[arg(long)]
        sample: Option<u64>,
    },
    /// After CUTOVER: mark the source finished and remove cutover's keys from the target.
    Finish,
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// TOML configuration file (see config.example.toml); flags override it.
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Address applications connect to [default: 127.0.0.1:6380].
    #[arg(long)]
    pub listen: Option<String>,
    /// The Redis applications use today: redis://[user:pass@]host:port[/db] or rediss://.
    #[arg(long)]
    pub source: Option<String>,
    /// The Redis to migrate to (same URL forms).
    #[arg(long)]
    pub target: Option<String>,
    /// Admin listener (RESP: STATUS, ...) [default: 127.0.0.1:6390].
    #[arg(long)]
    pub admin: Option<String>,
    /// Prometheus listener serving /metrics (off unless given).
    #[arg(long)]
    pub metrics: Option<String>,
    /// Password clients must AUTH with (default user). Prefer the config file or the
    /// CUTOVER_PASSWORD environment variable: flags show in `ps`.
    #[arg(long, env = "CUTOVER_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Who checks clients' AUTH: source (the Redis behind the proxy; each user's commands
    /// run as that user) or proxy (only --password / proxy.users; commands run with the
    /// URL's credentials).
    #[arg(long, value_parser = ["source", "proxy"])]
    pub client_auth: Option<String>,
    /// Password for the admin listener.
    #[arg(long, env = "CUTOVER_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Extra CA certificates (PEM) for rediss:// source and target.
    #[arg(long)]
    pub tls_ca_file: Option<PathBuf>,
    /// Log level or tracing filter (RUST_LOG wins).
    #[arg(long)]
    pub log_level: Option<String>,
    /// An RDB from `cutover dump` that fills the empty target before the source is asked
    /// to continue from the replication offset inside it.
    #[arg(long)]
    pub seed: Option<PathBuf>,
    /// How the data is read: auto (PSYNC, else the SCAN copy), psync, or scan (sources
    /// that refuse replication: SCAN + DUMP, with the proxy tracking written keys).
    #[arg(long, value_parser = ["auto", "psync", "scan"])]
    pub source_mode: Option<String>,
    /// TLS for applications: certificate chain (PEM); with --tls-key-file.
    #[arg(long)]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS for applications: private key (PEM).
    #[arg(long)]
    pub tls_key_file: Option<PathBuf>,
    /// Require client certificates signed by these CAs (PEM).
    #[arg(long)]
    pub tls_client_ca_file: Option<PathBuf>,
}

impl RunArgs {
    /// The file's configuration with the flags laid over it, validated.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let (mut cfg, origin) = match &self.config {
            Some(p) => (Config::from_file(p)?, p.display().to_string()),
            None => (Config::default(), "command line".to_string()),
        };
        if let Some(v) = &self.listen {
            cfg.proxy.listen = v.clone();
        }
        let endpoint = |old: Option<EndpointConfig>, url: &String| EndpointConfig {
            url: url.clone(),
            tls_ca_file: old.and_then(|o| o.tls_ca_file),
        };
        if let Some(v) = &self.source {
            cfg.source = Some(endpoint(cfg.source.take(), v));
        }
        if let Some(v) = &self.target {
            cfg.target = Some(endpoint(cfg.target.take(), v));
        }
        if let Some(ca) = &self.tls_ca_file {
            for e in [cfg.source.as_mut(), cfg.target.as_mut()]
                .into_iter()
                .flatten()
            {
                e.tls_ca_file = Some(ca.clone());
            }
        }
        if let Some(v) = &self.admin {
            cfg.admin.listen = Some(v.clone());
        }
        if let Some(v) = &self.metrics {
            cfg.metrics.listen = Some(v.clone());
        }
        if let Some(v) = &self.password {
            cfg.proxy.password = Some(v.clone());
        }
        if let Some(v) = &self.client_auth {
            cfg.proxy.client_auth = v.clone();
        }
        if let Some(v) = &self.admin_password {
            cfg.admin.password = Some(v.clone());
        }
        if let Some(v) = &self.log_level {
            cfg.log.level = v.clone();
        }
        if let Some(v) = &self.seed {
            cfg.sync.seed = v.display().to_string();
        }
        if let Some(v) = &self.source_mode {
            cfg.sync.source_mode = v.clone();
        }
        if let Some(v) = &self.tls_cert_file {
            cfg.proxy.tls_cert_file = Some(v.clone());
        }
        if let Some(v) = &self.tls_key_file {
            cfg.proxy.tls_key_file = Some(v.clone());
        }
        if let Some(v) = &self.tls_client_ca_file {
            cfg.proxy.tls_client_ca_file = Some(v.clone());
        }
        let origin = if self.config.is_some() {
            format!("{origin} (with command-line overrides)")
        } else {
            origin
        };
        cfg.validate(&origin)
    }
}
