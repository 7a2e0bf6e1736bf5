use super::*;

#[test]
fn the_example_file_parses_and_validates() {
    let text = include_str!("../../../config.example.toml");
    let cfg = Config::from_toml(text, "config.example.toml").unwrap();
    let s = cfg.validate("config.example.toml").unwrap();
    assert_eq!(s.listen.port(), 6380);
    assert_eq!(s.max_clients, 10_000);
}

#[test]
fn unknown_keys_are_refused_with_file_and_line() {
    let e =
        Config::from_toml("[proxy]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n", "f.toml").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.starts_with("f.toml: line 3: unknown field `lisen`"),
        "{msg}"
    );
    assert!(msg.contains("lisen"), "{msg}");
}

#[test]
fn bad_values_name_the_key() {
    let cfg = Config::from_toml(
        "[source]\nurl = \"redis://h:1\"\n[proxy]\nlisten = \"nope\"\n",
        "f.toml",
    )
    .unwrap();
    let msg = cfg.validate("f.toml").unwrap_err().to_string();
    assert!(msg.contains("`proxy.listen`"), "{msg}");

    let cfg = Config::from_toml("[source]\nurl = \"http://h:1\"\n", "f.toml").unwrap();
    let msg = cfg.validate("f.toml").unwrap_err().to_string();
    assert!(msg.contains("`source.url`"), "{msg}");

    let e = Config::from_toml("[proxy]\nmax_clients = \"many\"\n", "f.toml").unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn a_source_is_required() {
    let msg = Config::default().validate("flags").unwrap_err().to_string();
    assert!(msg.contains("source.url"), "{msg}");
}

#[test]
fn cross_slot_transactions_is_split_or_stop() {
    let base = "[source]\nurl = \"redis://h:1\"\n[sync]\n";
    let cfg = Config::from_toml(base, "f.toml").unwrap();
    assert_eq!(
        cfg.validate("f.toml").unwrap().sync.cross_slot,
        sync::CrossSlot::Split
    );
    let cfg = Config::from_toml(
        &format!("{base}cross_slot_transactions = \"stop\"\n"),
        "f.toml",
    )
    .unwrap();
    assert_eq!(
        cfg.validate("f.toml").unwrap().sync.cross_slot,
        sync::CrossSlot::Stop
    );
    let cfg = Config::from_toml(
        &format!("{base}cross_slot_transactions = \"maybe\"\n"),
        "f.toml",
    )
    .unwrap();
    let msg = cfg.validate("f.toml").unwrap_err().to_string();
    assert!(msg.contains("sync.cross_slot_transactions"), "{msg}");
}

#[test]
fn source_replicas_are_addresses_and_need_source_nodes_replicas() {
    let base = "[source]\nurl = \"redis://h:1\"\n[sync]\n";
    let validate = |extra: &str| {
        Config::from_toml(&format!("{base}{extra}"), "f.toml")
            .unwrap()
            .validate("f.toml")
    };
    let s = validate(
        "source_nodes = \"replicas\"\nsource_replicas = [\"10.0.0.5:7001\", \"[::1]:7002\"]\n",
    )
    .unwrap();
    assert!(s.sync.from_replicas);
    assert_eq!(
        s.sync.chosen_replicas,
        vec![
            cluster::slots::NodeAddr::new("10.0.0.5", 7001),
            cluster::slots::NodeAddr::new("::1", 7002)
        ]
    );
    assert!(validate("").unwrap().sync.chosen_replicas.is_empty());

    let msg = validate("source_replicas = [\"10.0.0.5:7001\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("sync.source_replicas") && msg.contains("source_nodes = \"replicas\""),
        "{msg}"
    );
    let msg = validate("source_nodes = \"replicas\"\nsource_replicas = [\"a:1\", \"b:x\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("sync.source_replicas[1]") && msg.contains("b:x"),
        "{msg}"
    );
}
