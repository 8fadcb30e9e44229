//! Unit tests of config parsing and validation.

use super::*;

#[test]
fn permissions_forms() {
    assert_eq!(parse_permissions("=600").unwrap(), 0o600);
    assert_eq!(parse_permissions("0640").unwrap(), 0o640);
    assert_eq!(parse_permissions("600").unwrap(), 0o600);
    assert_eq!(parse_permissions("u=rw,g=rw").unwrap(), 0o660);
    assert_eq!(parse_permissions("u=rw,g=r").unwrap(), 0o640);
    assert_eq!(parse_permissions("a=rw,o-w").unwrap(), 0o664);
    assert!(parse_permissions("=800").is_err());
    assert!(parse_permissions("u=rq").is_err());
    assert!(parse_permissions("").is_err());
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
    assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
    assert!(parse_duration("5 parsecs").is_err());
}

#[test]
fn embedded_default_is_valid() {
    let c = Config::embedded_default().unwrap();
    assert_eq!(c.sources.len(), 1);
    assert!(matches!(c.sinks[0].kind, SinkKind::Stdout));
}

fn err(text: &str) -> String {
    Config::from_toml(text).unwrap_err().to_string()
}

const OK: &str = "[[sources]]\ntype = \"unix_socket_server\"\npath = \"/tmp/x.sock\"\n[[sinks]]\ntype = \"null\"\n";

#[test]
fn errors_name_the_field() {
    assert!(Config::from_toml(OK).is_ok());
    let e = err(&OK.replace("path =", "pathh ="));
    assert!(e.contains("sources[0]") && e.contains("pathh"), "{e}");
    let e = err(&format!("workers = \"two\"\n{OK}"));
    assert!(e.contains("workers"), "{e}");
    let e = err(&OK.replace(
        "path = \"/tmp/x.sock\"",
        "path = \"/tmp/x.sock\"\ncodec = \"jsn\"",
    ));
    assert!(e.contains("sources[0].codec") && e.contains("jsn"), "{e}");
    let e = err(&format!("{OK}[channel]\nwhen_full = \"dropp\"\n"));
    assert!(e.contains("channel.when_full"), "{e}");
    let e = err(&OK.replace("type = \"null\"", "type = \"log\""));
    assert!(e.contains("sinks[0].type"), "{e}");
    let e = err(&OK.replace(
        "path = \"/tmp/x.sock\"",
        "path = \"/tmp/x.sock\"\npreprocessors = [{ name = \"separate\", config = { max_lenght = 3 } }]",
    ));
    assert!(e.contains("max_lenght"), "{e}");
}

#[test]
fn preprocessor_forms() {
    let c = Config::from_toml(&OK.replace(
        "path = \"/tmp/x.sock\"",
        "path = \"/tmp/x.sock\"\npreprocessors = [{ name = \"separate\", config = { separator = \"|\", max_length = 10, buffered = false } }]",
    ))
    .unwrap();
    let SourceConfig::UnixSocketServer(u) = &c.sources[0] else {
        panic!("a unix source")
    };
    assert_eq!(u.framing.separator, b'|');
    assert_eq!(u.framing.max_length, 10);
    assert!(!u.framing.buffered);
}

#[test]
fn values_that_would_misbehave_are_refused() {
    let sink = |extra: &str| {
        OK.replace(
            "[[sinks]]\ntype = \"null\"\n",
            &format!("[[sinks]]\ntype = \"file\"\npath = \"/tmp/a\"\n{extra}"),
        )
    };
    let e = err(&sink("codec = \"string\"\nmetadata = \"envelope\"\n"));
    assert!(e.contains("sinks[0].metadata") && e.contains("json"), "{e}");
    let e = err(&format!(
        "{}[dead_letter]\ntype = \"file\"\npath = \"/tmp/d\"\ncodec = \"string\"\n",
        sink("")
    ));
    assert!(e.contains("dead_letter.codec"), "{e}");
    let e = err(&format!(
        "{}[dead_letter]\ntype = \"file\"\npath = \"/tmp/a\"\n",
        sink("")
    ));
    assert!(
        e.contains("dead_letter.path") && e.contains("sinks[0].path"),
        "{e}"
    );
    let e = err(&format!(
        "{}[[sinks]]\ntype = \"file\"\npath = \"/tmp/a\"\n",
        sink("")
    ));
    assert!(e.contains("sinks[1].path"), "{e}");
    let e = err(&format!("{OK}[channel]\ncapacity = 4611686018427387904\n"));
    assert!(e.contains("channel.capacity"), "{e}");
    let long_dir = format!("/tmp/{}/x.sock", "d".repeat(90));
    let e = err(&OK.replace("/tmp/x.sock", &long_dir));
    assert!(
        e.contains("sources[0].path") && e.contains("shorter directory"),
        "{e}"
    );
    let c = Config::from_toml(&format!("shutdown_timeout = 7\n{OK}")).unwrap();
    assert_eq!(c.shutdown_timeout, Duration::from_secs(7));
}

#[test]
fn client_sinks_taking_each_others_replies_in_a_ring_are_refused() {
    let clients = |a_inputs: &str, c_inputs: &str| {
        format!(
            "{OK}[[sinks]]\ntype = \"unix_socket_client\"\nname = \"a\"\npath = \"/tmp/a\"\n{a_inputs}\n\
             [[sinks]]\ntype = \"unix_socket_client\"\nname = \"b\"\npath = \"/tmp/b\"\ninputs = [\"a\"]\n\
             [[sinks]]\ntype = \"unix_socket_client\"\nname = \"c\"\npath = \"/tmp/c\"\n{c_inputs}\n"
        )
    };
    // a → b → c → a
    let e = err(&clients("inputs = [\"c\"]", "inputs = [\"b\"]"));
    assert!(e.contains("sinks[1].inputs"), "{e}");
    assert!(e.contains("a → b → c → a"), "{e}");
    // A chain is fine: the source → a → b → c.
    let ok = clients("", "inputs = [\"b\"]");
    assert!(Config::from_toml(&ok).is_ok(), "{}", err(&ok));
}
