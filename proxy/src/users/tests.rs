use super::*;

fn bulk(s: &'static str) -> Value<'static> {
    Value::Bytes(s.as_bytes())
}

fn rules(v: &Value) -> Vec<String> {
    setuser_rules(v)
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect()
}

#[test]
fn a_7_0_user_with_a_selector() {
    // ACL GETUSER app1 on Redis 7.0 (RESP2: names and values alternate).
    let user = Value::List(vec![
        bulk("flags"),
        Value::List(vec![bulk("on"), bulk("sanitize-payload")]),
        bulk("passwords"),
        Value::List(vec![bulk("ab12")]),
        bulk("commands"),
        bulk("+@all -debug"),
        bulk("keys"),
        bulk("~app1:* %R~shared:*"),
        bulk("channels"),
        bulk("&news"),
        bulk("selectors"),
        Value::List(vec![Value::List(vec![
            bulk("commands"),
            bulk("-@all +get"),
            bulk("keys"),
            bulk("~ro:*"),
            bulk("channels"),
            bulk(""),
        ])]),
    ]);
    assert_eq!(
        rules(&user),
        [
            "reset",
            "resetchannels",
            "on",
            "sanitize-payload",
            "#ab12",
            "+@all",
            "-debug",
            "~app1:*",
            "%R~shared:*",
            "&news",
            "(-@all +get ~ro:*)"
        ]
    );
    assert_eq!(password_rules(&user), [Bytes::from_static(b"#ab12")]);
}

#[test]
fn a_6_2_user_lists_its_patterns() {
    let user = Value::List(vec![
        bulk("flags"),
        Value::List(vec![bulk("on"), bulk("allchannels"), bulk("nopass")]),
        bulk("passwords"),
        Value::List(vec![]),
        bulk("commands"),
        bulk("+@read"),
        bulk("keys"),
        Value::List(vec![bulk("app2:*"), bulk("~x")]),
        bulk("channels"),
        Value::List(vec![bulk("*")]),
    ]);
    assert_eq!(
        rules(&user),
        [
            "reset",
            "resetchannels",
            "on",
            "allchannels",
            "nopass",
            "+@read",
            "~app2:*",
            "~~x",
            "&*"
        ]
    );
}

#[test]
fn a_6_0_user_has_every_channel_and_errors_hide_passwords() {
    let user = Value::List(vec![
        bulk("flags"),
        Value::List(vec![bulk("on")]),
        bulk("passwords"),
        Value::List(vec![]),
        bulk("commands"),
        bulk("+@all"),
        bulk("keys"),
        Value::List(vec![bulk("*")]),
    ]);
    assert_eq!(
        rules(&user),
        ["reset", "resetchannels", "on", "+@all", "~*", "allchannels"]
    );
    assert_eq!(
        redact("ERR Error in ACL SETUSER modifier '#abc12': Syntax error"),
        "ERR Error in ACL SETUSER modifier <redacted> Syntax error"
    );
}
