//! The `.mcp.json` model (Claude Code format): parsing one file, merging several (first wins),
//! transport inference, server-name rules and `${VAR}` / `${VAR:-default}` expansion.
//!
//! Pure: it reads the files it is given and nothing else; variables come from the lookup
//! passed in. It must not connect to anything.
//!
//! A public module: `config::load`/`config::parse` and the model they return are one group
//! (`agentd doctor` and the fuzz target read it), and `load`/`parse` would be ambiguous at the
//! crate root. The names the daemon needs everywhere (`Transport`, `validate_name`) are
//! re-exported there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::expand::{ExpandError, expand};
use crate::redact::Secrets;

/// How a server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A child process speaking JSON-RPC lines on stdin/stdout.
    Stdio,
    /// Streamable HTTP (2025-03-26 and later).
    Http,
    /// Legacy HTTP+SSE (2024-11-05).
    Sse,
}

impl Transport {
    /// The wire name: `stdio`, `http` or `sse`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdio => "stdio",
            Self::Http => "http",
            Self::Sse => "sse",
        }
    }
}

/// One server entry after validation and expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// The server name (key in `mcpServers`).
    pub name: String,
    /// The transport.
    pub transport: Transport,
    /// Executable (stdio).
    pub command: String,
    /// Arguments (stdio).
    pub args: Vec<String>,
    /// Extra environment (stdio), sorted by key.
    pub env: BTreeMap<String, String>,
    /// URL (http/sse).
    pub url: String,
    /// Headers (http/sse), sorted by name.
    pub headers: BTreeMap<String, String>,
    /// The file this entry came from.
    pub config_file: PathBuf,
}

/// Why a server name is refused. `Display` is the text shown in status, logs and
/// `agentd doctor` (unchanged from when it was a string).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("server name is empty")]
    Empty,
    /// The name contains the `__` separator of exposed tool names.
    #[error("server name {0:?} contains the reserved separator \"__\"")]
    Separator(String),
    /// The name starts or ends with `_`.
    #[error("server name {0:?} must not start or end with \"_\"")]
    EdgeUnderscore(String),
}

/// Why one server entry cannot be used. `Display` is the text shown in status, logs and
/// `agentd doctor` (unchanged from when it was a string; secrets are redacted by whoever
/// shows it, with the entry's [`EntryError::secrets`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The server name is refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The entry is not a JSON object.
    #[error("server {name:?} is not an object")]
    NotAnObject {
        /// The server.
        name: String,
    },
    /// A field that must be a string is not (`field` is e.g. `url` or `env.KEY`).
    #[error("server {name:?}: \"{field}\" must be a string")]
    NotAString {
        /// The server.
        name: String,
        /// The field.
        field: String,
    },
    /// `env` or `headers` is not an object.
    #[error("server {name:?}: \"{field}\" must be an object")]
    FieldNotAnObject {
        /// The server.
        name: String,
        /// The field.
        field: &'static str,
    },
    /// `args` is not an array.
    #[error("server {name:?}: \"args\" must be an array")]
    ArgsNotAnArray {
        /// The server.
        name: String,
    },
    /// An element of `args` is neither a string nor a number.
    #[error("server {name:?}: \"args\" must be strings")]
    ArgNotAString {
        /// The server.
        name: String,
    },
    /// No `type`, `command` or `url` to infer the transport from.
    #[error("server {name:?} has no command or url")]
    NoCommandOrUrl {
        /// The server.
        name: String,
    },
    /// A `type` this crate does not speak.
    #[error("server {name:?}: unsupported transport {transport:?}")]
    UnsupportedTransport {
        /// The server.
        name: String,
        /// The `type` as written.
        transport: String,
    },
    /// A `${VAR}` without default names an unset variable.
    #[error(
        "server {name:?}: environment variable {var:?} in {field} is not set and has no default"
    )]
    UnsetVariable {
        /// The server.
        name: String,
        /// The variable.
        var: String,
        /// Where (`command`, `args`, `env.KEY`, `url`, `headers.NAME`).
        field: String,
    },
    /// Any other expansion failure (defaults nested too deep).
    #[error("server {name:?}: {field}: {source}")]
    Expand {
        /// The server.
        name: String,
        /// Where.
        field: String,
        /// What went wrong.
        source: ExpandError,
    },
    /// A stdio entry without a command (after expansion).
    #[error("server {name:?}: stdio transport needs a command")]
    NoCommand {
        /// The server.
        name: String,
    },
    /// An http or sse entry without a url (after expansion).
    #[error("server {name:?}: {} transport needs a url", transport.as_str())]
    NoUrl {
        /// The server.
        name: String,
        /// `Http` or `Sse`.
        transport: Transport,
    },
}

/// Why a whole config file cannot be used. `Display` is the text shown in status, logs and
/// `agentd doctor` (unchanged from when it was a string).
///
/// Equality (the config is compared on reload) compares the variant and the text.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// The file exists but could not be read.
    #[error("read: {0}")]
    Read(#[source] Arc<std::io::Error>),
    /// The bytes are not JSON.
    #[error("invalid JSON: {0}")]
    InvalidJson(#[source] Arc<serde_json::Error>),
    /// The top level is not an object.
    #[error("top level is not a JSON object")]
    NotAnObject,
    /// `mcpServers` is present but not an object.
    #[error("\"mcpServers\" is not an object")]
    ServersNotAnObject,
}

impl PartialEq for LoadError {
    fn eq(&self, other: &Self) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
            && self.to_string() == other.to_string()
    }
}

impl Eq for LoadError {}

/// An entry that could not be used, with the reason (not redacted yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// The server name.
    pub name: String,
    /// Transport if it could be inferred.
    pub transport: Option<Transport>,
    /// The file.
    pub config_file: PathBuf,
    /// What is wrong.
    pub error: SpecError,
    /// Values to redact from anything shown about this entry.
    pub secrets: Secrets,
}

/// A whole file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub error: LoadError,
}

/// The merged configuration of every file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct McpConfig {
    /// Usable servers by name.
    pub servers: BTreeMap<String, ServerSpec>,
    /// Entries with errors by name.
    pub invalid: BTreeMap<String, EntryError>,
    /// Files that could not be read or parsed.
    pub file_errors: Vec<FileError>,
}

/// Variable lookup for `${VAR}` expansion.
pub type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses several files in priority order; the first definition of a name wins, later
/// duplicates are dropped. Missing files are skipped silently.
pub fn load(paths: &[PathBuf], lookup: Lookup<'_>) -> McpConfig {
    let mut out = McpConfig::default();
    for path in paths {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                out.file_errors.push(FileError {
                    path: path.clone(),
                    error: LoadError::Read(Arc::new(e)),
                });
                continue;
            }
        };
        match parse(&text, path, lookup) {
            Ok(entries) => {
                for e in entries {
                    let name = match &e {
                        Ok(s) => s.name.clone(),
                        Err(e) => e.name.clone(),
                    };
                    if out.servers.contains_key(&name) || out.invalid.contains_key(&name) {
                        continue;
                    }
                    match e {
                        Ok(s) => {
                            out.servers.insert(name, s);
                        }
                        Err(e) => {
                            out.invalid.insert(name, e);
                        }
                    }
                }
            }
            Err(e) => out.file_errors.push(e),
        }
    }
    out
}

/// Parses one file's bytes. Malformed JSON fails the file; bad entries fail alone.
/// Entries come back sorted by name.
#[expect(
    clippy::result_large_err,
    reason = "an EntryError is the value the caller keeps; config loading is a cold path"
)]
pub fn parse(
    bytes: &[u8],
    path: &Path,
    lookup: Lookup<'_>,
) -> Result<Vec<Result<ServerSpec, EntryError>>, FileError> {
    let ferr = |error: LoadError| FileError {
        path: path.to_path_buf(),
        error,
    };
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| ferr(LoadError::InvalidJson(Arc::new(e))))?;
    let Some(obj) = v.as_object() else {
        return Err(ferr(LoadError::NotAnObject));
    };
    let servers = match obj.get("mcpServers") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ferr(LoadError::ServersNotAnObject)),
    };
    let mut names: Vec<&String> = servers.keys().collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| parse_entry(name, &servers[name], path, lookup))
        .collect())
}

#[expect(
    clippy::result_large_err,
    reason = "an EntryError is the value the caller keeps; config loading is a cold path"
)]
fn parse_entry(
    name: &str,
    v: &Value,
    path: &Path,
    lookup: Lookup<'_>,
) -> Result<ServerSpec, EntryError> {
    let mut secrets = Vec::new();
    let err =
        |transport: Option<Transport>, error: SpecError, secrets: &mut Vec<String>| EntryError {
            name: name.to_owned(),
            transport,
            config_file: path.to_path_buf(),
            error,
            secrets: Secrets::new(std::mem::take(secrets)),
        };
    validate_name(name).map_err(|e| err(None, e.into(), &mut secrets))?;
    let name_s = || name.to_owned();
    let Some(o) = v.as_object() else {
        return Err(err(
            None,
            SpecError::NotAnObject { name: name_s() },
            &mut secrets,
        ));
    };
    let s = |k: &str| -> Result<String, SpecError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(SpecError::NotAString {
                name: name_s(),
                field: k.to_owned(),
            }),
        }
    };
    let map = |k: &'static str| -> Result<BTreeMap<String, String>, SpecError> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k2, v)| match v {
                    Value::String(s) => Ok((k2.clone(), s.clone())),
                    Value::Number(n) => Ok((k2.clone(), n.to_string())),
                    Value::Bool(b) => Ok((k2.clone(), b.to_string())),
                    _ => Err(SpecError::NotAString {
                        name: name_s(),
                        field: format!("{k}.{k2}"),
                    }),
                })
                .collect(),
            Some(_) => Err(SpecError::FieldNotAnObject {
                name: name_s(),
                field: k,
            }),
        }
    };
    let raw = (|| -> Result<_, SpecError> {
        let args = match o.get("args") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(SpecError::ArgNotAString { name: name_s() }),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(SpecError::ArgsNotAnArray { name: name_s() }),
        };
        Ok((
            s("type")?,
            s("command")?,
            args,
            map("env")?,
            s("url")?,
            map("headers")?,
        ))
    })();
    let (ty, command, args, env, url, headers) = raw.map_err(|e| err(None, e, &mut secrets))?;
    // Secrets are the raw values too (the unexpanded text may itself be a token).
    secrets.extend(env.values().cloned());
    secrets.extend(headers.values().cloned());
    let transport = match ty.as_str() {
        "stdio" => Transport::Stdio,
        "http" | "streamable-http" | "streamableHttp" => Transport::Http,
        "sse" => Transport::Sse,
        "" if !command.is_empty() => Transport::Stdio,
        "" if !url.is_empty() => Transport::Http,
        "" => {
            return Err(err(
                None,
                SpecError::NoCommandOrUrl { name: name_s() },
                &mut secrets,
            ));
        }
        other => {
            return Err(err(
                None,
                SpecError::UnsupportedTransport {
                    name: name_s(),
                    transport: other.to_owned(),
                },
                &mut secrets,
            ));
        }
    };
    let mut spec = ServerSpec {
        name: name.to_owned(),
        transport,
        command,
        args,
        env,
        url,
        headers,
        config_file: path.to_path_buf(),
    };
    if let Err(e) = expand_spec(&mut spec, lookup) {
        secrets.extend(spec.env.values().cloned());
        return Err(err(Some(transport), e, &mut secrets));
    }
    match transport {
        Transport::Stdio if spec.command.is_empty() => Err(err(
            Some(transport),
            SpecError::NoCommand { name: name_s() },
            &mut secrets,
        )),
        Transport::Http | Transport::Sse if spec.url.is_empty() => Err(err(
            Some(transport),
            SpecError::NoUrl {
                name: name_s(),
                transport,
            },
            &mut secrets,
        )),
        _ => Ok(spec),
    }
}

fn expand_spec(spec: &mut ServerSpec, lookup: Lookup<'_>) -> Result<(), SpecError> {
    let name = spec.name.clone();
    let e = |field: &str, v: &str| -> Result<String, SpecError> {
        expand(v, lookup).map_err(|err| match err {
            ExpandError::Unset(var) => SpecError::UnsetVariable {
                name: name.clone(),
                var,
                field: field.to_owned(),
            },
            source @ ExpandError::TooDeep => SpecError::Expand {
                name: name.clone(),
                field: field.to_owned(),
                source,
            },
        })
    };
    spec.command = e("command", &spec.command)?;
    for a in &mut spec.args {
        *a = e("args", a)?;
    }
    for (k, v) in &mut spec.env {
        *v = e(&format!("env.{k}"), v)?;
    }
    spec.url = e("url", &spec.url)?;
    for (k, v) in &mut spec.headers {
        *v = e(&format!("headers.{k}"), v)?;
    }
    Ok(())
}

/// Server names must not contain the `__` separator, nor start or end with `_`.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.contains(crate::names::SEP) {
        return Err(NameError::Separator(name.to_owned()));
    }
    if name.starts_with('_') || name.ends_with('_') {
        return Err(NameError::EdgeUnderscore(name.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "TEST_MCP_TOKEN" => Some("tok-123".into()),
            "HOST" => Some("example.com".into()),
            _ => None,
        }
    }

    fn one(json: &str) -> Vec<Result<ServerSpec, EntryError>> {
        parse(json.as_bytes(), Path::new("/w/.mcp.json"), &env).unwrap()
    }

    #[test]
    fn stdio_http_sse_and_explicit_type() {
        let r = one(r#"{"mcpServers":{
              "a":{"command":"npx","args":["-y","x"],"env":{"K":"v"}},
              "b":{"url":"https://h/mcp","headers":{"Authorization":"Bearer t"}},
              "c":{"type":"sse","url":"https://h/sse"},
              "d":{"type":"http","command":"x","url":"http://h"}}}"#);
        let s: Vec<_> = r.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        assert_eq!(s[0].transport, Transport::Stdio);
        assert_eq!(s[0].args, ["-y", "x"]);
        assert_eq!(s[0].env["K"], "v");
        assert_eq!(s[1].transport, Transport::Http);
        assert_eq!(s[1].headers["Authorization"], "Bearer t");
        assert_eq!(s[2].transport, Transport::Sse);
        assert_eq!(s[3].transport, Transport::Http);
    }

    #[test]
    fn empty_missing_and_malformed() {
        assert!(one(r#"{"mcpServers":{}}"#).is_empty());
        assert!(one(r#"{"other":1}"#).is_empty());
        let e = parse(b"{nope", Path::new("/f"), &env).unwrap_err();
        assert!(e.error.to_string().starts_with("invalid JSON"), "{e:?}");
    }

    #[test]
    fn name_rules_and_bad_entries_keep_siblings() {
        let r = one(
            r#"{"mcpServers":{"a__b":{"command":"x"},"_a":{"command":"x"},"a_":{"command":"x"},
                "none":{},"ok":{"command":"x"},"weird":{"type":"ws","url":"x"}}}"#,
        );
        let errs: Vec<String> = r
            .iter()
            .filter_map(|e| e.as_ref().err())
            .map(|e| e.error.to_string())
            .collect();
        assert_eq!(errs.len(), 5, "{errs:?}");
        assert!(errs.iter().any(|e| e.contains("reserved separator")));
        assert!(
            errs.iter()
                .any(|e| e == "server \"none\" has no command or url")
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("unsupported transport \"ws\""))
        );
        assert_eq!(r.iter().filter(|e| e.is_ok()).count(), 1);
    }

    #[test]
    fn expansion_everywhere_with_defaults_and_unset_error() {
        let r = one(r#"{"mcpServers":{
              "a":{"command":"${NOPE:-node}","args":["${HOST}"],"env":{"T":"${TEST_MCP_TOKEN}"}},
              "b":{"url":"https://${HOST}/mcp","headers":{"X":"${NOPE:-d}"}},
              "c":{"url":"https://h","headers":{"Authorization":"Bearer ${MISSING}"}}}}"#);
        let a = r[0].as_ref().unwrap();
        assert_eq!(
            (a.command.as_str(), a.args[0].as_str(), a.env["T"].as_str()),
            ("node", "example.com", "tok-123")
        );
        let b = r[1].as_ref().unwrap();
        assert_eq!(
            (b.url.as_str(), b.headers["X"].as_str()),
            ("https://example.com/mcp", "d")
        );
        let c = r[2].as_ref().unwrap_err();
        assert_eq!(
            c.error,
            SpecError::UnsetVariable {
                name: "c".into(),
                var: "MISSING".into(),
                field: "headers.Authorization".into()
            }
        );
        assert_eq!(
            c.error.to_string(),
            "server \"c\": environment variable \"MISSING\" in headers.Authorization is not set and has no default"
        );
    }

    /// The typed errors keep the texts they had as strings (status, logs, doctor and
    /// docs/troubleshooting.md show them).
    #[test]
    fn load_error_texts() {
        let read = || LoadError::Read(Arc::new(std::io::Error::from_raw_os_error(13)));
        assert_eq!(read().to_string(), "read: Permission denied (os error 13)");
        let e = parse(b"{nope", Path::new("/f"), &|_| None).unwrap_err();
        assert_eq!(
            e.error.to_string(),
            "invalid JSON: key must be a string at line 1 column 2"
        );
        assert_eq!(read(), read());
        assert_ne!(read(), LoadError::NotAnObject);
        assert_eq!(e, parse(b"{nope", Path::new("/f"), &|_| None).unwrap_err());
        assert_eq!(
            LoadError::ServersNotAnObject.to_string(),
            "\"mcpServers\" is not an object"
        );
    }

    #[test]
    fn error_texts_are_unchanged() {
        let r = one(r#"{"mcpServers":{
              "a":1,
              "b":{"command":7},
              "c":{"command":"x","env":{"K":[1]}},
              "d":{"command":"x","env":7},
              "e":{"command":"x","args":"no"},
              "f":{"command":"x","args":[{}]},
              "g":{"type":"stdio"},
              "h":{"type":"sse"},
              "i":{"type":"http","url":"${U}"}}}"#);
        let texts: Vec<String> = r
            .iter()
            .map(|e| e.as_ref().unwrap_err().error.to_string())
            .collect();
        assert_eq!(
            texts,
            [
                r#"server "a" is not an object"#,
                r#"server "b": "command" must be a string"#,
                r#"server "c": "env.K" must be a string"#,
                r#"server "d": "env" must be an object"#,
                r#"server "e": "args" must be an array"#,
                r#"server "f": "args" must be strings"#,
                r#"server "g": stdio transport needs a command"#,
                r#"server "h": sse transport needs a url"#,
                r#"server "i": environment variable "U" in url is not set and has no default"#,
            ]
        );
        let deep = format!("{}x{}", "${A:-".repeat(20), "}".repeat(20));
        let text = format!(r#"{{"mcpServers":{{"j":{{"command":"{deep}"}}}}}}"#);
        let j = one(&text);
        assert_eq!(
            j[0].as_ref().unwrap_err().error.to_string(),
            r#"server "j": command: ${...} defaults are nested more than 16 levels deep"#
        );
        assert_eq!(
            validate_name("").unwrap_err().to_string(),
            "server name is empty"
        );
        assert_eq!(
            validate_name("a__b").unwrap_err().to_string(),
            r#"server name "a__b" contains the reserved separator "__""#
        );
        assert_eq!(
            validate_name("_a").unwrap_err().to_string(),
            r#"server name "_a" must not start or end with "_""#
        );
        let p = Path::new("/f");
        let file = |b: &str| parse(b.as_bytes(), p, &env).unwrap_err().error.to_string();
        assert_eq!(file("[]"), "top level is not a JSON object");
        assert_eq!(
            file(r#"{"mcpServers":[]}"#),
            r#""mcpServers" is not an object"#
        );
    }

    #[test]
    fn merge_first_wins_and_missing_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let f1 = dir.path().join("1.json");
        let f2 = dir.path().join("2.json");
        std::fs::write(&f1, r#"{"mcpServers":{"a":{"command":"one"}}}"#).unwrap();
        std::fs::write(
            &f2,
            r#"{"mcpServers":{"a":{"command":"two"},"b":{"command":"b"}}}"#,
        )
        .unwrap();
        let c = load(&[dir.path().join("missing.json"), f1.clone(), f2], &env);
        assert_eq!(c.servers["a"].command, "one");
        assert_eq!(c.servers["a"].config_file, f1);
        assert_eq!(c.servers.len(), 2);
        assert!(c.file_errors.is_empty());
    }
}
