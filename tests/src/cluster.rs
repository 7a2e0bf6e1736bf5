//! Redis Clusters on loopback for the end-to-end tests: started per test (so a test may
//! reshard or fail over without disturbing others), killed on drop with their servers.
//!
//! Nodes listen on free ports below 55536 (the cluster bus is port + 10000). A cluster is
//! returned only once every node reports `cluster_state:ok` and every master accepts a
//! write for its own slots (a new cluster refuses writes for a moment after it forms).

use std::process::Command;
use std::time::Duration;

use crate::{poll_until, show, RedisServer, Wire};

/// Server arguments every cluster node gets.
const NODE_ARGS: [&str; 8] = [
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-node-timeout",
    "3000",
    "--repl-diskless-sync-delay",
    "0",
];

/// A cluster of masters (and optionally one replica per master).
pub struct RedisCluster {
    /// Masters first (in creation order), then replicas.
    pub nodes: Vec<RedisServer>,
    masters: usize,
}

impl RedisCluster {
    /// `masters` masters, no replicas.
    #[track_caller]
    pub fn start(masters: usize) -> RedisCluster {
        RedisCluster::start_with(masters, 0, &[])
    }

    /// `masters` masters with `replicas` replicas each; `extra` server arguments for every
    /// node (e.g. `--requirepass`).
    #[track_caller]
    pub fn start_with(masters: usize, replicas: usize, extra: &[&str]) -> RedisCluster {
        RedisCluster::start_built(masters, replicas, || {
            RedisServer::builder().args(&NODE_ARGS).args(extra)
        })
    }

    /// `masters` Redis 6.2 masters, no replicas: no CLUSTER SHARDS there, so whoever
    /// reads the slot map must use CLUSTER SLOTS.
    #[track_caller]
    pub fn start_v62(masters: usize) -> RedisCluster {
        RedisCluster::start_built(masters, 0, || {
            RedisServer::builder().redis62().args(&NODE_ARGS)
        })
    }

    #[track_caller]
    fn start_built(
        masters: usize,
        replicas: usize,
        node: impl Fn() -> crate::RedisBuilder,
    ) -> RedisCluster {
        let total = masters * (1 + replicas);
        let nodes: Vec<RedisServer> = (0..total).map(|_| node().start()).collect();
        if masters < 3 {
            // redis-cli creates clusters of 3 masters or more: smaller ones by hand.
            assert_eq!(
                replicas, 0,
                "a cluster of fewer than 3 masters has no replicas here"
            );
            return RedisCluster::start_small(nodes);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        let mut cmd = Command::new("redis-cli");
        cmd.args(["--cluster", "create"]).args(&addrs).args([
            "--cluster-replicas",
            &replicas.to_string(),
            "--cluster-yes",
        ]);
        let out = cmd.output().expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes, masters: 0 };
        cluster.wait_ok();
        // redis-cli makes the first `masters` addresses masters; order the nodes so.
        let mut cluster = cluster;
        cluster.masters = masters;
        for i in 0..masters {
            let mut w = cluster.nodes[i].wire();
            let role = w.cmd(&["ROLE"]);
            assert!(
                role.windows(6).any(|x| x == b"master"),
                "node {i} is not a master: {}",
                show(&role)
            );
        }
        // Writable: a SET of a key on each master answers +OK.
        for i in 0..masters {
            let key = cluster.key_on(i, "ready");
            let mut w = cluster.nodes[i].wire();
            poll_until(Duration::from_secs(10), || {
                w.cmd(&["SET", key.as_str(), "1"]) == b"+OK\r\n"
            });
            w.cmd(&["DEL", key.as_str()]);
        }
        if replicas > 0 {
            for r in &cluster.nodes[masters..] {
                let mut w = r.wire();
                poll_until(Duration::from_secs(20), || {
                    let info = w.cmd(&["INFO", "replication"]);
                    info.windows(21).any(|l| l == b"master_link_status:up")
                });
            }
        }
        cluster
    }

    /// A cluster of 1 or 2 masters: the slots split evenly (ADDSLOTSRANGE), the nodes
    /// introduced to each other (MEET).
    fn start_small(nodes: Vec<RedisServer>) -> RedisCluster {
        let n = nodes.len();
        let per = 16384 / n;
        for (i, node) in nodes.iter().enumerate() {
            let lo = i * per;
            let hi = if i + 1 == n { 16383 } else { lo + per - 1 };
            let r = node.cmd(&["CLUSTER", "ADDSLOTSRANGE", &lo.to_string(), &hi.to_string()]);
            assert_eq!(r, b"+OK\r\n", "ADDSLOTSRANGE: {}", show(&r));
            // Distinct epochs, so no collision needs resolving.
            node.cmd(&["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()]);
        }
        for node in &nodes[1..] {
            let port = node.port().to_string();
            let r = nodes[0].cmd(&["CLUSTER", "MEET", "127.0.0.1", &port]);
            assert_eq!(r, b"+OK\r\n", "MEET: {}", show(&r));
        }
        let cluster = RedisCluster { nodes, masters: n };
        cluster.wait_ok();
        for i in 0..n {
            let key = cluster.key_on(i, "ready");
            let mut w = cluster.nodes[i].wire();
            poll_until(Duration::from_secs(10), || {
                w.cmd(&["SET", key.as_str(), "1"]) == b"+OK\r\n"
            });
            w.cmd(&["DEL", key.as_str()]);
        }
        cluster
    }

    /// Waits until every node says the cluster is ok.
    pub fn wait_ok(&self) {
        for s in &self.nodes {
            let mut w = s.wire();
            poll_until(Duration::from_secs(20), || {
                let info = w.cmd(&["CLUSTER", "INFO"]);
                info.windows(16).any(|l| l == b"cluster_state:ok")
            });
        }
    }

    /// The masters (as created; after a failover a replica may have taken over).
    pub fn masters(&self) -> &[RedisServer] {
        &self.nodes[..self.masters]
    }

    /// A URL of one node (the first master): what a user gives cutover.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The node that currently owns `key`'s slot, asked of the cluster.
    pub fn owner_of(&self, key: &[u8]) -> &RedisServer {
        let slot = self.slot_of(key);
        let mut w = self.nodes[0].wire();
        let v = w.value(&["CLUSTER", "SLOTS"]);
        for range in v.items() {
            let items = range.items();
            let (lo, hi) = (items[0].int(), items[1].int());
            if (lo..=hi).contains(&(slot as i64)) {
                let port = items[2].items()[1].int() as u16;
                return self
                    .nodes
                    .iter()
                    .find(|s| s.port() == port)
                    .expect("owner is one of ours");
            }
        }
        panic!("slot {slot} has no owner");
    }

    /// What moving `key`'s slot takes: the slot, the master serving it, and another
    /// master to move it to (for [`move_slot`](Self::move_slot)).
    pub fn slot_move_for(&self, key: &[u8]) -> (u16, &RedisServer, &RedisServer) {
        let from = self.owner_of(key);
        let to = self
            .masters()
            .iter()
            .find(|m| m.port() != from.port())
            .expect("another master");
        (self.slot_of(key), from, to)
    }

    /// `CLUSTER KEYSLOT key`.
    pub fn slot_of(&self, key: &[u8]) -> u16 {
        let mut w = self.nodes[0].wire();
        w.value(&[b"CLUSTER".as_slice(), b"KEYSLOT", key]).int() as u16
    }

    /// A key named after `prefix` whose slot master `i` owns at creation.
    pub fn key_on(&self, i: usize, prefix: &str) -> String {
        let port = self.nodes[i].port();
        let mut w = self.nodes[i].wire();
        for n in 0.. {
            let key = format!("{prefix}:{n}");
            let reply = w.cmd(&["CLUSTER", "KEYSLOT", key.as_str()]);
            let slot = String::from_utf8_lossy(&reply[1..])
                .trim()
                .parse::<u16>()
                .expect("keyslot");
            if self.slot_owner_port(&mut w, slot) == port {
                return key;
            }
        }
        unreachable!()
    }

    fn slot_owner_port(&self, w: &mut Wire, slot: u16) -> u16 {
        let v = w.value(&["CLUSTER", "SLOTS"]);
        for range in v.items() {
            let items = range.items();
            if (items[0].int()..=items[1].int()).contains(&(slot as i64)) {
                return items[2].items()[1].int() as u16;
            }
        }
        0
    }

    /// The node id of a server.
    pub fn node_id(server: &RedisServer) -> String {
        server.wire().value(&["CLUSTER", "MYID"]).text()
    }

    /// Moves `slot` from `from` to `to` the way `redis-cli --cluster reshard` does:
    /// IMPORTING on the destination, MIGRATING on the source, MIGRATE the keys in batches,
    /// then SETSLOT NODE everywhere. `between` runs after the slot is MIGRATING and half
    /// of its keys have moved: clients then get -ASK for the moved keys.
    pub fn move_slot(
        &self,
        slot: u16,
        from: &RedisServer,
        to: &RedisServer,
        mut between: impl FnMut(),
    ) {
        let from_id = Self::node_id(from);
        let to_id = Self::node_id(to);
        let s = slot.to_string();
        let mut fw = from.wire();
        let mut tw = to.wire();
        let ok = |r: Vec<u8>, what: &str| assert_eq!(r, b"+OK\r\n", "{what}: {}", show(&r));
        ok(
            tw.cmd(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &from_id]),
            "IMPORTING",
        );
        ok(
            fw.cmd(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &to_id]),
            "MIGRATING",
        );
        let mut first = true;
        loop {
            let keys = fw.value(&["CLUSTER", "GETKEYSINSLOT", &s, "100"]);
            let keys: Vec<Vec<u8>> = keys.items().iter().map(|k| k.bytes().to_vec()).collect();
            if keys.is_empty() {
                break;
            }
            let half = if first {
                keys.len().div_ceil(2)
            } else {
                keys.len()
            };
            let port = to.port().to_string();
            let mut args: Vec<&[u8]> = vec![
                b"MIGRATE",
                b"127.0.0.1",
                port.as_bytes(),
                b"",
                b"0",
                b"10000",
                b"REPLACE",
            ];
            if let Some(pw) = from.password() {
                args.push(b"AUTH");
                args.push(pw.as_bytes());
            }
            args.push(b"KEYS");
            args.extend(keys[..half].iter().map(|k| k.as_slice()));
            let r = fw.cmd(&args);
            ok(r, "MIGRATE");
            if first {
                first = false;
                between();
            }
        }
        if first {
            between();
        }
        for n in &self.nodes {
            let r = n.wire().cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &to_id]);
            ok(r, "SETSLOT NODE");
        }
    }

    /// A manual `CLUSTER FAILOVER` on `replica`; returns once it is a master. A manual
    /// failover that does not complete within its own timeout (5 s: the replica must
    /// first reach the master's offset, which takes longer on a loaded machine) is
    /// abandoned by Redis without a word, so it is asked again.
    pub fn failover(&self, replica: &RedisServer) {
        let mut w = replica.wire();
        let is_master = |w: &mut Wire| w.cmd(&["ROLE"]).windows(6).any(|x| x == b"master");
        for attempt in 0..4 {
            assert_eq!(w.cmd(&["CLUSTER", "FAILOVER"]), b"+OK\r\n");
            if crate::try_poll_until(Duration::from_secs(8), || is_master(&mut w)) {
                self.wait_ok();
                return;
            }
            eprintln!("manual failover attempt {attempt} did not complete; asking again");
        }
        panic!("replica {} never became a master", replica.port());
    }

    /// A connection to the node serving `key`.
    pub fn wire_for(&self, key: &[u8]) -> Wire {
        self.owner_of(key).wire()
    }

    /// `DBSIZE` summed over the masters.
    pub fn dbsize(&self) -> i64 {
        self.nodes
            .iter()
            .filter(|s| s.wire().cmd(&["ROLE"]).windows(6).any(|x| x == b"master"))
            .map(|s| s.wire().value(&["DBSIZE"]).int())
            .sum()
    }
}
