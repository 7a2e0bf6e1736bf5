//! Reading `INFO` replies: one field, whether a node is in cluster mode, the keyspace
//! section's lines, the commandstats section's lines. Every reader of INFO in cutover
//! (proxy, syncer, topology) goes through here.

/// The value of `field` in an INFO reply's text (`field:value` lines).
pub fn field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

/// Whether an `INFO cluster` reply says the node runs in cluster mode.
pub fn cluster_enabled(reply: &[u8]) -> bool {
    reply.windows(17).any(|w| w == b"cluster_enabled:1")
}

/// An integer field of an INFO reply.
pub fn int_field(text: &str, name: &str) -> Option<i64> {
    field(text, name).and_then(|v| v.parse().ok())
}

/// `(db, keys)` from an `INFO keyspace` reply.
pub fn keyspace(text: &str) -> Vec<(u32, u64)> {
    text.lines()
        .filter_map(keyspace_line)
        .map(|d| (d.db, d.keys))
        .collect()
}

/// One database's line of `INFO keyspace`: `db<n>:keys=<k>,expires=<e>,avg_ttl=<t>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbLine {
    pub db: u32,
    pub keys: u64,
    /// Keys with a TTL (0 when the line has no `expires`).
    pub expires: u64,
}

/// Reads one line of `INFO keyspace` (None for any other line).
pub fn keyspace_line(line: &str) -> Option<DbLine> {
    let (name, rest) = line.split_once(':')?;
    let db = name.strip_prefix("db")?.parse().ok()?;
    let keys = stat(rest, "keys")?.parse().ok()?;
    let expires = stat(rest, "expires")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(DbLine { db, keys, expires })
}

/// The line of `db` in an `INFO keyspace` reply (None: the db has no keys).
pub fn keyspace_db(text: &str, db: u32) -> Option<DbLine> {
    text.lines().filter_map(keyspace_line).find(|d| d.db == db)
}

/// One line of `INFO commandstats`: `cmdstat_<name>:calls=<n>,usec=...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CmdStat<'a> {
    /// The command as INFO names it, lowercase; `<command>|<subcommand>` for a subcommand
    /// (7.0+).
    pub name: &'a str,
    pub calls: u64,
}

/// Reads one line of `INFO commandstats` (None for any other line).
pub fn commandstats_line(line: &str) -> Option<CmdStat<'_>> {
    let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
    let calls = stat(rest, "calls")?.parse().ok()?;
    Some(CmdStat { name, calls })
}

/// The value of `name` in a line's `name=value,name=value` list.
fn stat<'a>(list: &'a str, name: &str) -> Option<&'a str> {
    list.split(',').find_map(|kv| {
        kv.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_keyspace() {
        let info = "# Replication\r\nrole:master\r\nmaster_repl_offset:1234\r\n";
        assert_eq!(field(info, "role"), Some("master"));
        assert_eq!(int_field(info, "master_repl_offset"), Some(1234));
        assert_eq!(field(info, "master_repl"), None);
        assert!(cluster_enabled(b"# Cluster\r\ncluster_enabled:1\r\n"));
        assert!(!cluster_enabled(b"# Cluster\r\ncluster_enabled:0\r\n"));
        let ks =
            "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\ndb12:keys=1,expires=1,avg_ttl=5\r\n";
        assert_eq!(keyspace(ks), vec![(0, 3), (12, 1)]);
        assert_eq!(
            keyspace_db(ks, 12),
            Some(DbLine {
                db: 12,
                keys: 1,
                expires: 1
            })
        );
        assert_eq!(keyspace_db(ks, 1), None);
        assert_eq!(keyspace_line("# Keyspace"), None);
        assert_eq!(keyspace_line("db1:expires=2"), None);
        assert_eq!(
            keyspace_line("db1:keys=5"),
            Some(DbLine {
                db: 1,
                keys: 5,
                expires: 0
            })
        );
    }

    #[test]
    fn commandstats_lines() {
        let cs = "# Commandstats\r\n\
                  cmdstat_set:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=1\r\n\
                  cmdstat_config|set:calls=2,usec=5,usec_per_call=2.50\r\n\
                  cmdstat_get:usec=1\r\n";
        let lines: Vec<_> = cs.lines().filter_map(commandstats_line).collect();
        assert_eq!(
            lines,
            vec![
                CmdStat {
                    name: "set",
                    calls: 12
                },
                CmdStat {
                    name: "config|set",
                    calls: 2
                },
            ]
        );
        // `calls` is matched whole, not as the end of another name.
        assert_eq!(
            commandstats_line("cmdstat_x:rejected_calls=4,calls=1").map(|c| c.calls),
            Some(1)
        );
    }
}
