//! `.mcp.json` parsing with `${VAR}` expansion (`agentmcp::config::parse`): any bytes give a
//! file error or entries sorted by name, never a panic; every accepted server has a valid
//! name and what its transport needs; its fields are exactly the file's values expanded;
//! a rejected entry keeps its name and the file's secret values for redaction.

#![no_main]

use std::path::Path;

use agentmcp::Transport;
use agentmcp::config::parse;
use agentmcp::expand;
use agentmcp::validate_name;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn lookup(k: &str) -> Option<String> {
    match k {
        "A" => Some("1".into()),
        "EMPTY" => Some(String::new()),
        "HOME" => Some("/home/u".into()),
        "TOKEN" => Some("s3cr3t-t0ken".into()),
        _ => None,
    }
}

/// The file's value for `key` as parse reads it (strings, numbers and booleans as text).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn expanded(v: Option<&Value>) -> String {
    v.and_then(text)
        .map(|s| expand(&s, &lookup).expect("accepted entries expand"))
        .unwrap_or_default()
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/w/.mcp.json");
    let Ok(entries) = parse(data, path, &lookup) else {
        return;
    };
    let json: Value = serde_json::from_slice(data).expect("a parsed file is JSON");
    let servers = json.get("mcpServers").and_then(Value::as_object);
    assert_eq!(entries.len(), servers.map_or(0, |m| m.len()));
    let names: Vec<&str> = entries
        .iter()
        .map(|e| match e {
            Ok(s) => s.name.as_str(),
            Err(e) => e.name.as_str(),
        })
        .collect();
    assert!(names.windows(2).all(|w| w[0] < w[1]), "not sorted: {names:?}");
    for e in &entries {
        let spec = match e {
            Ok(s) => s,
            Err(e) => {
                assert_eq!(e.config_file, path);
                assert!(!e.error.to_string().is_empty());
                continue;
            }
        };
        assert_eq!(spec.config_file, path);
        assert!(validate_name(&spec.name).is_ok(), "{:?}", spec.name);
        let raw = &servers.expect("servers")[&spec.name];
        match spec.transport {
            Transport::Stdio => assert!(!spec.command.is_empty()),
            Transport::Http | Transport::Sse => assert!(!spec.url.is_empty()),
        }
        assert_eq!(spec.command, expanded(raw.get("command")));
        assert_eq!(spec.url, expanded(raw.get("url")));
        let args: Vec<String> = raw
            .get("args")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|x| expanded(Some(x))).collect())
            .unwrap_or_default();
        assert_eq!(spec.args, args);
        for (field, map) in [("env", &spec.env), ("headers", &spec.headers)] {
            let want = raw.get(field).and_then(Value::as_object);
            assert_eq!(map.len(), want.map_or(0, |m| m.len()));
            for (k, v) in map {
                assert_eq!(*v, expanded(want.and_then(|m| m.get(k))), "{field}.{k}");
            }
        }
    }
});
