use super::*;

fn bulk(s: &str) -> Value {
    Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
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
    let user = Value::Array(vec![
        bulk("flags"),
        Value::Array(vec![bulk("on"), bulk("sanitize-payload")]),
        bulk("passwords"),
        Value::Array(vec![bulk("ab12")]),
        bulk("commands"),
        bulk("+@all -debug"),
        bulk("keys"),
        bulk("~app1:* %R~shared:*"),
        bulk("channels"),
        bulk("&news"),
        bulk("selectors"),
        Value::Array(vec![Value::Array(vec![
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
    let user = Value::Array(vec![
        bulk("flags"),
        Value::Array(vec![bulk("on"), bulk("allchannels"), bulk("nopass")]),
        bulk("passwords"),
        Value::Array(vec![]),
        bulk("commands"),
        bulk("+@read"),
        bulk("keys"),
        Value::Array(vec![bulk("app2:*"), bulk("x")]),
        bulk("channels"),
        Value::Array(vec![bulk("*")]),
    ]);
    assert_eq!(
        rules(&user),
        [
            "reset",
            "on",
            "allchannels",
            "nopass",
            "+@read",
            "~app2:*",
            "~x",
            "&*"
        ]
    );
}
