//! Reading `INFO` replies: one field, whether a node is in cluster mode, the keyspace
//! section. Every reader of INFO in cutover (proxy, syncer, topology) goes through here.

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
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let db = name.strip_prefix("db")?.parse().ok()?;
            let keys = rest
                .split(',')
                .find_map(|kv| kv.strip_prefix("keys="))?
                .trim()
                .parse()
                .ok()?;
            Some((db, keys))
        })
        .collect()
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
    }
}
