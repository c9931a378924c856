//! The OpenAPI document (`agentd/openapi.json`) against the real binary: every route of
//! the router is documented and every documented operation is routed (same methods); every
//! answer of a route-by-route walk (successes and the main errors) matches the documented
//! schema of its route and status; the git watch's WebSocket messages match theirs; and the
//! validator does reject a wrong body. The file API is walked on temp files under the
//! daemon's workdir.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use agentd_tests::context::write;
use agentd_tests::openapi::Spec;
use agentd_tests::{Agentd, Options, RawResponse, enc, raw_tcp};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TOKEN: &str = "openapi-walk-token";
const CHAT: &str = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";
const PARENT: &str = "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d";

/// How a request is sent.
#[derive(Clone, Copy)]
enum Auth {
    Token,
    None,
}

/// The walk: the document, a client, and every (operation, status) answered so far.
struct Walk<'a> {
    spec: Spec,
    d: &'a Agentd,
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl<'a> Walk<'a> {
    fn new(d: &'a Agentd) -> Self {
        Self {
            spec: Spec::embedded(),
            d,
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// Sends a request for the operation `method template` at `path` (the template with its
    /// parameters filled in, plus a query), checks that the status is documented for the
    /// operation, that the content type is the documented one and that the body matches the
    /// documented schema. Returns status and body (JSON, or a string for text).
    /// A client for one request.
    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    async fn call(
        &self,
        method: &str,
        template: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
        auth: Auth,
    ) -> (u16, Value) {
        let mut req = Self::client().request(method.parse().unwrap(), self.d.url(path));
        if let Auth::Token = auth {
            req = req.bearer_auth(TOKEN);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_owned());
        }
        self.send(method, template, req).await
    }

    /// Sends a built request and checks its answer as [`Walk::call`] does.
    async fn send(
        &self,
        method: &str,
        template: &str,
        req: reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let (status, _, value) = self.send_typed(method, template, req).await;
        (status, value)
    }

    /// [`Walk::send`], also returning the answer's content type.
    async fn send_typed(
        &self,
        method: &str,
        template: &str,
        req: reqwest::RequestBuilder,
    ) -> (u16, String, Value) {
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let ctype = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = res.text().await.unwrap();
        let value = self.check(method, template, status, &ctype, &text);
        (status, ctype, value)
    }

    /// Validates one answer against the document and records it.
    fn check(&self, method: &str, template: &str, status: u16, ctype: &str, text: &str) -> Value {
        let what = format!("{method} {template} → {status}");
        let response = self
            .spec
            .response(method, template, status)
            .unwrap_or_else(|| panic!("{what} is not documented; body: {text}"));
        let content = response["content"].as_object();
        let value = match content {
            None => {
                assert!(text.is_empty(), "{what}: undocumented body {text}");
                Value::Null
            }
            Some(c) => {
                let (media, media_obj) = c
                    .iter()
                    .find(|(m, _)| ctype.starts_with(m.as_str()))
                    .unwrap_or_else(|| panic!("{what}: content type {ctype:?} not documented"));
                // A media type without a schema is raw bytes (read-file): kept as text.
                if media_obj.get("schema").is_none() {
                    self.seen.lock().unwrap().insert((
                        method.to_owned(),
                        template.to_owned(),
                        status,
                    ));
                    return Value::String(text.to_owned());
                }
                let value = if media == "application/json" {
                    serde_json::from_str(text)
                        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
                } else {
                    Value::String(text.to_owned())
                };
                if let Err(errors) = self.spec.validate(&media_obj["schema"], &value) {
                    panic!("{what}: the body does not match the document:\n{errors:#?}\n{value:#}");
                }
                value
            }
        };
        self.seen
            .lock()
            .unwrap()
            .insert((method.to_owned(), template.to_owned(), status));
        value
    }

    async fn get(&self, template: &str, path: &str) -> (u16, Value) {
        self.call("GET", template, path, None, &[], Auth::Token)
            .await
    }

    async fn post(&self, template: &str, path: &str, body: &Value) -> (u16, Value) {
        self.call(
            "POST",
            template,
            path,
            Some(&body.to_string()),
            &[],
            Auth::Token,
        )
        .await
    }
}

/// A daemon with a token, a fake MCP server, instruction files, a good and a bad skill and
/// a git repository in its workdir, and `HOME` an empty directory in it.
fn daemon(work: &Path, extra: &[&str]) -> Agentd {
    std::fs::create_dir_all(work.join("home")).unwrap();
    write(&work.join("AGENTS.md"), "Be brief.\n");
    write(
        &work.join(".agents/skills/good-skill/SKILL.md"),
        "---\nname: good-skill\ndescription: A good skill\n---\nBody.\n",
    );
    write(
        &work.join(".agents/skills/bad-skill/SKILL.md"),
        "---\nname: another-name\ndescription: x\n---\n",
    );
    std::fs::write(
        work.join(".mcp.json"),
        serde_json::to_vec(
            &json!({"mcpServers": {"fake": agentd_tests::mcp::fake(&[]), "broken": {"command": "/nonexistent/mcp"}}}),
        )
        .unwrap(),
    )
    .unwrap();
    let mut args: Vec<String> = vec!["--mcp-call-timeout-ms".into(), "500".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    Agentd::start_with(Options {
        workdir: Some(work.to_path_buf()),
        token: Some(TOKEN.into()),
        args,
        env: vec![
            ("HOME".into(), work.join("home").display().to_string()),
            ("AGENTD_MCP_BACKOFF_MIN_MS".into(), "100".into()),
            ("AGENTD_MCP_BACKOFF_MAX_MS".into(), "1000".into()),
        ],
        ..Options::default()
    })
}

/// The `.route(PATH, METHODS)` calls in agentd's sources: path → methods. A path given as a
/// constant is resolved from the `const NAME: &str = "..."` items of the same sources.
fn source_routes() -> BTreeMap<String, BTreeSet<String>> {
    // Every `.rs` file under agentd/src, subdirectories included.
    let mut dirs = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../agentd/src")];
    let mut sources = String::new();
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                // `#[cfg(test)]` modules (at the end of a file) build their own routers.
                let text = text.split("#[cfg(test)]").next().unwrap_or_default();
                sources.push_str(text);
                sources.push('\n');
            }
        }
    }
    let mut consts = BTreeMap::new();
    for line in sources.lines() {
        let l = line.trim();
        // `const`, `pub const`, `pub(crate) const`, `pub(super) const`, ….
        let unvis = match l.strip_prefix("pub(") {
            Some(r) => r.split_once(") ").map_or(l, |(_, r)| r),
            None => l.strip_prefix("pub ").unwrap_or(l),
        };
        if let Some(rest) = unvis.strip_prefix("const ")
            && let Some((name, value)) = rest.split_once(": &str = \"")
        {
            consts.insert(name.to_owned(), value.trim_end_matches("\";").to_owned());
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut rest = sources.as_str();
    while let Some(i) = rest.find(".route(") {
        rest = &rest[i + ".route(".len()..];
        // The call's text up to its closing parenthesis.
        let mut depth = 1;
        let end = rest
            .char_indices()
            .find_map(|(j, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                (depth == 0).then_some(j)
            })
            .expect("balanced .route(...)");
        let call = &rest[..end];
        let (first, methods) = call.split_once(',').expect(".route(path, methods)");
        let first = first.trim();
        let path = match first.strip_prefix('"') {
            Some(lit) => lit.trim_end_matches('"').to_owned(),
            None => consts
                .get(first)
                .unwrap_or_else(|| panic!("route path constant {first} not found"))
                .clone(),
        };
        let entry = out.entry(path).or_default();
        for m in ["get", "post", "put", "delete", "patch"] {
            let pat = format!("{m}(");
            let found = methods.match_indices(&pat).any(|(k, _)| {
                k == 0
                    || !methods.as_bytes()[k - 1].is_ascii_alphanumeric()
                        && methods.as_bytes()[k - 1] != b'_'
            });
            if found {
                entry.insert(m.to_ascii_uppercase());
            }
        }
        rest = &rest[end..];
    }
    out
}

/// (a) Every route the router serves is documented, with the same methods, and every
/// documented operation is served: read from the sources, and probed on the real binary
/// (a method the router does not serve on a known path is Coder's 405, an unknown path 404).
#[tokio::test]
async fn document_and_router_have_the_same_operations() {
    let spec = Spec::embedded();
    let documented: BTreeMap<String, BTreeSet<String>> =
        spec.operations()
            .into_iter()
            .fold(BTreeMap::new(), |mut m, (method, path)| {
                m.entry(path).or_default().insert(method);
                m
            });
    let routed = source_routes();
    assert_eq!(
        routed, documented,
        "routes in agentd/src vs agentd/openapi.json"
    );

    let work = tempfile::tempdir().unwrap();
    let d = daemon(work.path(), &[]);
    let client = reqwest::Client::new();
    for (path, methods) in &documented {
        let concrete = path.replace("{id}", "no-such-process");
        let mut served = BTreeSet::new();
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            let res = client
                .request(m.parse().unwrap(), d.url(&concrete))
                .bearer_auth(TOKEN)
                .header("Content-Type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            assert!(
                !(status == 404 && body["message"] == "Route not found."),
                "{m} {path}: the router does not know the path"
            );
            if !(status == 405 && body["message"] == "Method not allowed.") {
                served.insert(m.to_owned());
            }
        }
        assert_eq!(&served, methods, "methods served on {path}");
    }
}

/// Every operation carries the responses every route can give (403 from the Origin/Host
/// guard, 413 from the body limit, 500 from a panic; 401 unless it needs no token), every
/// `$ref` resolves, and each operation has a unique id.
#[test]
fn every_operation_documents_the_common_errors() {
    let spec = Spec::embedded();
    let mut ids = BTreeSet::new();
    for (method, path) in spec.operations() {
        let op = spec.operation(&method, &path);
        assert!(
            ids.insert(op["operationId"].as_str().unwrap().to_owned()),
            "duplicate operationId on {method} {path}"
        );
        let public = op.get("security") == Some(&json!([]));
        assert_eq!(public, path == "/healthz", "{method} {path}: security");
        let mut want = vec![403, 413, 500];
        if !public {
            want.push(401);
        }
        for status in want {
            let r = spec
                .response(&method, &path, status)
                .unwrap_or_else(|| panic!("{method} {path} does not document {status}"));
            let schema = &r["content"]["application/json"]["schema"];
            // The error shape (or a superset of it, for a start failure).
            assert!(
                spec.validate(schema, &json!({"message": "x", "detail": "y"}))
                    .is_ok(),
                "{method} {path} {status}: not the error shape"
            );
        }
        for r in op["responses"].as_object().unwrap().values() {
            let r = spec.deref(r);
            assert!(r["description"].is_string(), "{method} {path}: description");
        }
        for p in op
            .get("parameters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            assert!(spec.deref(p)["name"].is_string());
        }
    }
    // Every $ref in the document resolves.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    out.push(r);
                }
                o.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&spec.doc, &mut all);
    for r in all {
        assert!(
            spec.doc.pointer(r.trim_start_matches('#')).is_some(),
            "dangling {r}"
        );
    }
}

/// The validator can fail: wrong types, missing and extra properties, enum misses, a bad
/// `$ref`'d item, oneOf with no match, null where not allowed.
#[test]
fn the_validator_rejects_wrong_bodies() {
    let spec = Spec::embedded();
    let health = spec.component("Health");
    assert!(
        spec.validate(
            health,
            &json!({"status": "ok", "version": "1", "containment": "cgroup"})
        )
        .is_ok()
    );
    let bad = [
        json!({"status": "ok", "version": "1"}),
        json!({"status": "ok", "version": 1, "containment": "cgroup"}),
        json!({"status": "down", "version": "1", "containment": "cgroup"}),
        json!({"status": "ok", "version": "1", "containment": "cgroup", "extra": 1}),
        json!(null),
        json!([]),
    ];
    for b in bad {
        assert!(spec.validate(health, &b).is_err(), "accepted {b}");
    }
    let list = spec.component("ListProcessesResponse");
    assert!(spec.validate(list, &json!({"processes": []})).is_ok());
    let e = spec
        .validate(list, &json!({"processes": [{"id": "x"}]}))
        .unwrap_err();
    assert!(
        e.iter()
            .any(|m| m == "/processes/0: missing required property \"command\""),
        "{e:?}"
    );
    let server = spec.component("McpServer");
    let ok = json!({"name": "a", "transport": null, "state": "failed", "tools": 0, "last_error": "x",
                    "warning": null, "restarts": 0, "config_file": "/x", "pid": null});
    assert!(spec.validate(server, &ok).is_ok());
    let mut bad = ok.clone();
    bad["tools"] = json!(-1);
    assert!(spec.validate(server, &bad).is_err());
    let mut bad = ok.clone();
    bad["name"] = json!(null);
    assert!(spec.validate(server, &bad).is_err());
    let msg = spec.component("GitWatchServerMessage");
    assert!(
        spec.validate(
            msg,
            &json!({"type": "error", "message": "unknown message type"})
        )
        .is_ok()
    );
    assert!(
        spec.validate(msg, &json!({"type": "changes", "message": "x"}))
            .is_err()
    );
    assert!(
        spec.validate(
            msg,
            &json!({"type": "changes", "scanned_at": "yesterday", "repositories": []})
        )
        .is_err()
    );
    let store = spec.component("ContextStoreAddResponse");
    assert!(
        spec.validate(
            store,
            &json!({"chat_id": "not-a-uuid", "count": 1, "replaced": 0, "total": 1})
        )
        .is_err()
    );
}

/// (b) Every route, its success and its main errors, validated against the document.
#[tokio::test]
async fn every_answer_matches_the_document() {
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    agentd_tests::gitwatch::init_repo(&repo);
    let d = daemon(work.path(), &["--max-processes", "1"]);
    let w = Walk::new(&d);

    walk_core(&w).await;
    walk_body_limit(&w).await;
    let done = walk_process_start_and_output(&w).await;
    walk_process_limit_list_and_signal(&w, &done).await;
    walk_context_config_and_store_writes(&w).await;
    walk_context_store_reads_and_deletes(&w).await;
    walk_mcp(&w).await;
    let root = walk_git_paths(&w, &repo).await;
    walk_git_watch(&w, &root).await;
    walk_files(&w, work.path()).await;

    // Coverage: every operation answered its success; every documented status was seen,
    // except those no test can cause on demand (listed).
    let seen = w.seen.lock().unwrap().clone();
    let unreachable: &[(&str, &str, u16)] = &[
        ("POST", "/api/v0/processes/start", 500),
        ("POST", "/api/v0/processes/start", 504),
        ("GET", "/api/v0/context-config", 504),
        ("POST", "/api/v0/git/watch/paths", 504),
        ("GET", "/api/v0/git/watch", 405),
        ("GET", "/api/v0/git/watch", 426),
        // A hung mount, a directory removed mid-write, a body that stalls for 60 s.
        ("GET", "/api/v0/read-file", 504),
        ("GET", "/api/v0/read-file-lines", 504),
        ("POST", "/api/v0/write-file", 404),
        ("POST", "/api/v0/write-file", 408),
        ("POST", "/api/v0/write-file", 504),
        ("POST", "/api/v0/edit-files", 504),
        ("GET", "/api/v0/resolve-path", 504),
        ("POST", "/api/v0/list-directory", 504),
        ("GET", "/api/v0/resolve-path", 404),
    ];
    let common = [401, 403, 413, 500];
    let mut missing = Vec::new();
    for (method, path) in w.spec.operations() {
        let op = w.spec.operation(&method, &path);
        for code in op["responses"].as_object().unwrap().keys() {
            let code: u16 = code.parse().unwrap();
            let hit = seen.contains(&(method.clone(), path.clone(), code));
            let excused = common.contains(&code)
                || unreachable.contains(&(method.as_str(), path.as_str(), code));
            if !hit && !excused {
                missing.push(format!("{method} {path} {code}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "documented but never exercised: {missing:#?}"
    );
    for code in [401, 403, 413] {
        assert!(
            seen.iter().any(|(_, _, c)| *c == code),
            "no route answered {code}"
        );
    }
}

/// Core routes: the root with and without a (right) token, /healthz and its Origin and Host
/// checks, /metrics and the served document.
async fn walk_core(w: &Walk<'_>) {
    let (s, v) = w.get("/", "/").await;
    assert_eq!((s, v), (200, json!({"message": "Hello from the agent!"})));
    let (s, _) = w.call("GET", "/", "/", None, &[], Auth::None).await;
    assert_eq!(s, 401);
    let (s, v) = w
        .call(
            "GET",
            "/",
            "/",
            None,
            &[("Authorization", "Bearer wrong")],
            Auth::None,
        )
        .await;
    assert_eq!((s, v["message"].as_str()), (401, Some("Unauthorized.")));
    let (s, v) = w
        .call("GET", "/healthz", "/healthz", None, &[], Auth::None)
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ok")));
    let (s, _) = w
        .call(
            "GET",
            "/healthz",
            "/healthz",
            None,
            &[("Origin", "https://evil.example")],
            Auth::None,
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = w
        .call(
            "GET",
            "/api/v0/mcp/servers",
            "/api/v0/mcp/servers",
            None,
            &[("Host", "rebind.example")],
            Auth::None,
        )
        .await;
    assert_eq!(s, 403);
    let (s, v) = w.get("/metrics", "/metrics").await;
    assert_eq!(s, 200);
    assert!(v.as_str().unwrap().contains("agentd_processes_running"));
    let (s, v) = w.get("/api/v0/openapi.json", "/api/v0/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(v, w.spec.doc, "the served document is the checked-in one");
    let (s, _) = w
        .call(
            "GET",
            "/api/v0/openapi.json",
            "/api/v0/openapi.json",
            None,
            &[],
            Auth::None,
        )
        .await;
    assert_eq!(s, 401);
}

/// A body announced over 4 MiB is refused before it is read, with a documented 413.
async fn walk_body_limit(w: &Walk<'_>) {
    let d = w.d;
    // A body announced over 4 MiB is refused before it is read.
    let head = format!(
        "POST /api/v0/processes/start HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{",
        5 * 1024 * 1024
    );
    let r = RawResponse::parse(&raw_tcp(&d.addr, head.as_bytes()).await);
    assert_eq!(r.status, 413);
    w.check(
        "POST",
        "/api/v0/processes/start",
        r.status,
        &r.content_type,
        &r.body,
    );
}

/// A finished process's output (waited, from an offset), and start's 400s. Returns its id.
async fn walk_process_start_and_output(w: &Walk<'_>) -> String {
    let start = "/api/v0/processes/start";
    let chat = [("Coder-Chat-Id", CHAT)];
    let (s, v) = w
        .call(
            "POST",
            start,
            start,
            Some(r#"{"command":"printf hi; exit 3"}"#),
            &chat,
            Auth::Token,
        )
        .await;
    assert_eq!(s, 200);
    let done = v["id"].as_str().unwrap().to_owned();
    let output = "/api/v0/processes/{id}/output";
    let (s, v) = w
        .call(
            "GET",
            output,
            &format!("/api/v0/processes/{done}/output?wait=true"),
            None,
            &chat,
            Auth::Token,
        )
        .await;
    assert_eq!(
        (s, &v["output"], &v["exit_code"], &v["running"]),
        (200, &json!("hi"), &json!(3), &json!(false))
    );
    let (s, v) = w
        .get(output, &format!("/api/v0/processes/{done}/output?since=1"))
        .await;
    assert_eq!(
        (s, &v["output"], &v["next_offset"]),
        (200, &json!("i"), &json!(2))
    );
    let (s, v) = w
        .get(output, &format!("/api/v0/processes/{done}/output?since=-1"))
        .await;
    assert_eq!(
        (s, v["message"].as_str()),
        (400, Some("Invalid \"since\" query parameter."))
    );
    let (s, _) = w.get(output, "/api/v0/processes/nope/output").await;
    assert_eq!(s, 404);
    for (body, message) in [
        ("{}", "Command is required."),
        ("[1]", "Request body must be valid JSON."),
        ("{\"command\":", "Request body must be valid JSON."),
        (
            r#"{"command":"true","workdir":"/nonexistent/dir"}"#,
            "Working directory \"/nonexistent/dir\" does not exist.",
        ),
    ] {
        let (s, v) = w
            .call("POST", start, start, Some(body), &[], Auth::Token)
            .await;
        assert_eq!((s, v["message"].as_str()), (400, Some(message)), "{body}");
    }
    done
}

/// The process limit's 429, list (all and one chat's), and signal's answers up to 409 and
/// 404; another chat's process is not found.
async fn walk_process_limit_list_and_signal(w: &Walk<'_>, done: &str) {
    let start = "/api/v0/processes/start";
    let output = "/api/v0/processes/{id}/output";
    let chat = [("Coder-Chat-Id", CHAT)];
    let (s, v) = w.post(start, start, &json!({"command": "sleep 30"})).await;
    assert_eq!(s, 200);
    let sleeper = v["id"].as_str().unwrap().to_owned();
    let (s, v) = w.post(start, start, &json!({"command": "true"})).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (429, Some("Too many running processes."))
    );
    let (s, v) = w
        .get("/api/v0/processes/list", "/api/v0/processes/list")
        .await;
    assert_eq!((s, v["processes"].as_array().unwrap().len()), (200, 2));
    let (s, v) = w
        .call(
            "GET",
            "/api/v0/processes/list",
            "/api/v0/processes/list",
            None,
            &chat,
            Auth::Token,
        )
        .await;
    assert_eq!((s, v["processes"][0]["id"].as_str()), (200, Some(done)));
    let signal = "/api/v0/processes/{id}/signal";
    let sig_path = format!("/api/v0/processes/{sleeper}/signal");
    for (body, status) in [
        (json!({}), 400),
        (json!({"signal": "hup"}), 400),
        (json!({"signal": "kill"}), 200),
    ] {
        let (s, _) = w.post(signal, &sig_path, &body).await;
        assert_eq!(s, status, "{body}");
    }
    let (s, v) = w
        .get(
            output,
            &format!("/api/v0/processes/{sleeper}/output?wait=true"),
        )
        .await;
    assert_eq!((s, &v["exit_signal"]), (200, &json!("SIGKILL")));
    let (s, v) = w
        .post(signal, &sig_path, &json!({"signal": "terminate"}))
        .await;
    assert_eq!(
        (s, v["message"].as_str().unwrap()),
        (
            409,
            format!("Process \"{sleeper}\" is not running.").as_str()
        )
    );
    let (s, _) = w
        .post(
            signal,
            "/api/v0/processes/nope/signal",
            &json!({"signal": "kill"}),
        )
        .await;
    assert_eq!(s, 404);
    // Another chat's process is not found.
    let (s, _) = w
        .call(
            "GET",
            output,
            &format!("/api/v0/processes/{done}/output"),
            None,
            &[("Coder-Chat-Id", PARENT)],
            Auth::Token,
        )
        .await;
    assert_eq!(s, 404);
}

/// context-config in both formats, and context-store writes (chat, workspace-wide, bad).
async fn walk_context_config_and_store_writes(w: &Walk<'_>) {
    let chat = [("Coder-Chat-Id", CHAT)];
    let cc = "/api/v0/context-config";
    let (s, v) = w.get(cc, cc).await;
    assert_eq!(s, 200);
    assert_eq!(v["skipped"].as_array().unwrap().len(), 1, "{v}");
    let (s, v) = w.get(cc, &format!("{cc}?format=paths")).await;
    assert_eq!((s, &v["instructions_file"]), (200, &json!("AGENTS.md")));
    let (s, v) = w.get(cc, &format!("{cc}?format=yaml")).await;
    assert_eq!((s, v["message"].as_str()), (400, Some("Invalid format.")));
    let store = "/api/v0/context-store";
    let part = json!({"type": "context-file", "context_file_path": "/extra/AGENTS.md", "context_file_content": "More."});
    let (s, v) = w
        .call(
            "POST",
            store,
            store,
            Some(&json!({"parts": [part]}).to_string()),
            &chat,
            Auth::Token,
        )
        .await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"chat_id": CHAT, "count": 1, "replaced": 0, "total": 1})
        )
    );
    let (s, v) = w
        .post(
            store,
            store,
            &json!({"chat_id": "", "parts": [{"type": "skill", "skill_name": "ws-skill", "skill_dir": "/s"}]}),
        )
        .await;
    assert_eq!(
        (s, &v["chat_id"]),
        (200, &json!(uuid::Uuid::nil().to_string()))
    );
    for body in [
        json!({"parts": []}),
        json!({"chat_id": "nope", "parts": [part]}),
        json!({"parts": "x"}),
    ] {
        let (s, _) = w.post(store, store, &body).await;
        assert_eq!(s, 400, "{body}");
    }
    let (s, v) = w
        .call(
            "GET",
            cc,
            cc,
            None,
            &[
                ("Coder-Chat-Id", CHAT),
                ("Coder-Ancestor-Chat-Ids", &format!("[\"{PARENT}\"]")),
            ],
            Auth::Token,
        )
        .await;
    let sources: Vec<&str> = v["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["context_source"].as_str().unwrap())
        .collect();
    assert_eq!(
        (s, sources),
        (200, vec!["discovered", "discovered", "workspace", "chat"])
    );
}

/// context-store reads (all, one chat, bad id) and deletes.
async fn walk_context_store_reads_and_deletes(w: &Walk<'_>) {
    let store = "/api/v0/context-store";
    let (s, v) = w.get(store, store).await;
    assert_eq!((s, v["scopes"].as_array().unwrap().len()), (200, 2));
    let (s, v) = w.get(store, &format!("{store}?chat_id={CHAT}")).await;
    assert_eq!(
        (s, v["scopes"][0]["parts"].as_array().unwrap().len()),
        (200, 1)
    );
    let (s, _) = w.get(store, &format!("{store}?chat_id=nope")).await;
    assert_eq!(s, 400);
    let (s, v) = w
        .call(
            "DELETE",
            store,
            &format!("{store}?chat_id={CHAT}"),
            None,
            &[],
            Auth::Token,
        )
        .await;
    assert_eq!((s, v), (200, json!({"chat_id": CHAT, "cleared": 1})));
    let (s, _) = w
        .call(
            "DELETE",
            store,
            &format!("{store}?chat_id=nope"),
            None,
            &[],
            Auth::Token,
        )
        .await;
    assert_eq!(s, 400);
}

/// MCP servers, tools (with refresh) and call-tool's statuses, once the servers settled.
async fn walk_mcp(w: &Walk<'_>) {
    let d = w.d;
    agentd_tests::eventually(Duration::from_secs(20), async || {
        let (_, v) = d.get_json("/api/v0/mcp/servers").await;
        let states: Vec<&str> = v["servers"]
            .as_array()?
            .iter()
            .filter_map(|s| s["state"].as_str())
            .collect();
        (states.contains(&"ready") && !states.contains(&"connecting")).then_some(())
    })
    .await;
    let (s, v) = w.get("/api/v0/mcp/servers", "/api/v0/mcp/servers").await;
    assert_eq!((s, v["servers"].as_array().unwrap().len()), (200, 2));
    let tools = "/api/v0/mcp/tools";
    let (s, v) = w.get(tools, tools).await;
    assert_eq!(s, 200);
    assert!(v["tools"].as_array().unwrap().len() >= 5);
    let (s, _) = w.get(tools, &format!("{tools}?refresh=true")).await;
    assert_eq!(s, 200);
    let (s, _) = w.get(tools, &format!("{tools}?refresh=a&refresh=b")).await;
    assert_eq!(s, 400);
    let call = "/api/v0/mcp/call-tool";
    for (tool, status) in [
        ("fake__echo", 200),
        ("fake__rich", 200),
        ("fake__fail", 200),
        ("no-separator", 400),
        ("ghost__echo", 404),
        ("fake__hang", 502),
        ("broken__x", 502),
    ] {
        let (s, v) = w
            .post(
                call,
                call,
                &json!({"tool_name": tool, "arguments": {"message": "m"}}),
            )
            .await;
        assert_eq!(s, status, "{tool}: {v}");
    }
    let (s, _) = w.post(call, call, &json!({"tool_name": 1})).await;
    assert_eq!(s, 400);
}

/// git watch paths: record, the request caps, and reads. Returns the repo's canonical root.
async fn walk_git_paths(w: &Walk<'_>, repo: &Path) -> std::path::PathBuf {
    let paths = "/api/v0/git/watch/paths";
    let (s, v) = w
        .post(
            paths,
            paths,
            &json!({"chat_id": CHAT, "ancestor_chat_ids": [PARENT], "paths": [repo.join("a.txt"), "/"]}),
        )
        .await;
    let root = std::fs::canonicalize(repo).unwrap();
    assert_eq!(
        (s, v),
        (
            200,
            json!({"accepted": 2, "repo_roots": [root.display().to_string()]})
        )
    );
    let too_many: Vec<String> = (0..1025).map(|i| format!("/p/{i}")).collect();
    for body in [
        json!({"paths": ["/x"]}),
        json!({"chat_id": "nope", "paths": []}),
        json!({"chat_id": CHAT, "paths": too_many}),
        json!({"chat_id": CHAT, "paths": ["x".repeat(4097)]}),
    ] {
        let (s, _) = w.post(paths, paths, &body).await;
        assert_eq!(s, 400);
    }
    let (s, v) = w.get(paths, &format!("{paths}?chat_id={PARENT}")).await;
    assert_eq!((s, v["paths"].as_array().unwrap().len()), (200, 2));
    let (s, _) = w.get(paths, paths).await;
    assert_eq!(s, 400);
    let (s, _) = w.get(paths, &format!("{paths}?chat_id=x")).await;
    assert_eq!(s, 400);
    root
}

/// git watch without an upgrade (400), then the upgrade and its messages against the
/// document's schemas.
async fn walk_git_watch(w: &Walk<'_>, root: &Path) {
    let d = w.d;
    let watch = "/api/v0/git/watch";
    let (s, v) = w.get(watch, &format!("{watch}?chat_id={CHAT}")).await;
    assert_eq!(
        (s, v["message"].as_str()),
        (400, Some("Failed to accept websocket."))
    );
    // The upgrade and its messages.
    let url = format!("ws://{}{watch}?chat_id={CHAT}", d.addr);
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let (mut ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(res.status(), 101);
    assert!(w.spec.response("GET", watch, 101).is_some());
    w.seen
        .lock()
        .unwrap()
        .insert(("GET".into(), watch.into(), 101));
    let server_schema = w.spec.component("GitWatchServerMessage");
    let client_schema = w.spec.component("GitWatchClientMessage");
    let first = next_text(&mut ws).await;
    w.spec.validate(server_schema, &first).unwrap();
    assert_eq!(
        first["repositories"][0]["repo_root"],
        root.display().to_string()
    );
    w.spec
        .validate(client_schema, &json!({"type": "refresh"}))
        .unwrap();
    // Anything else is not a client message: the server answers it with an error.
    assert!(
        w.spec
            .validate(client_schema, &json!({"type": "bogus"}))
            .is_err()
    );
    ws.send(Message::Text(json!({"type": "bogus"}).to_string().into()))
        .await
        .unwrap();
    let err = loop {
        let v = next_text(&mut ws).await;
        w.spec.validate(server_schema, &v).unwrap();
        if v["type"] == "error" {
            break v;
        }
    };
    assert_eq!(
        err,
        json!({"type": "error", "message": "unknown message type"})
    );
}

type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text frame as JSON.
async fn next_text(ws: &mut WsStream) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if let Message::Text(t) = m {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

/// `GET /api/v0/read-file?<query>` through the walk: status, content type and body.
async fn read_file(w: &Walk<'_>, query: &str) -> (u16, String, Value) {
    let req = Walk::client()
        .get(w.d.url(&format!("/api/v0/read-file?{query}")))
        .bearer_auth(TOKEN);
    w.send_typed("GET", "/api/v0/read-file", req).await
}

/// `POST /api/v0/write-file?<query>` through the walk with a raw body, as chat `CHAT` if
/// `chat`.
async fn write_file_raw(w: &Walk<'_>, query: &str, body: &'static str, chat: bool) -> (u16, Value) {
    let wf = "/api/v0/write-file";
    let mut req = Walk::client()
        .post(w.d.url(&format!("{wf}?{query}")))
        .bearer_auth(TOKEN)
        .body(body);
    if chat {
        req = req.header("Coder-Chat-Id", CHAT);
    }
    w.send("POST", wf, req).await
}

/// The file API, route by route, on temp files under the daemon's workdir.
async fn walk_files(w: &Walk<'_>, work: &Path) {
    let dir = work.join("files");
    std::fs::create_dir_all(&dir).unwrap();
    let dir = std::fs::canonicalize(&dir).unwrap();
    let p = |name: &str| dir.join(name).display().to_string();
    let txt = p("a file.txt");
    write(Path::new(&txt), "hello\nworld\n");
    std::fs::write(p("pixel.png"), b"\x89PNG\r\n").unwrap();

    walk_read_file(w, &dir).await;
    walk_read_file_lines(w, &dir).await;
    walk_write_file(w, &dir).await;
    walk_edit_files(w, &dir).await;
    walk_resolve_path(w, &dir).await;
    walk_list_directory(w, &dir, work).await;
}

/// read-file: a range, past the end, the content type, and its 400s and 404.
async fn walk_read_file(w: &Walk<'_>, dir: &Path) {
    let p = |name: &str| dir.join(name).display().to_string();
    let ds = dir.display().to_string();
    let txt = p("a file.txt");
    let (s, ct, v) = read_file(w, &format!("path={}&offset=1&limit=4", enc(&txt))).await;
    assert_eq!(
        (s, ct.as_str(), v),
        (200, "application/octet-stream", json!("ello"))
    );
    let (s, ct, v) = read_file(w, &format!("path={}&offset=100", enc(&txt))).await;
    assert_eq!(
        (s, ct.as_str(), v),
        (200, "application/octet-stream", json!(""))
    );
    let (s, ct, _) = read_file(w, &format!("path={}", enc(&p("pixel.png")))).await;
    assert_eq!((s, ct.as_str()), (200, "image/png"));
    let (s, _, v) = read_file(w, "path=rel%2Fx").await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"message": "file path must be absolute: \"rel/x\""})
        )
    );
    let (s, _, v) = read_file(w, &format!("path={}", enc(&ds))).await;
    assert_eq!(
        (s, v),
        (400, json!({"message": format!("open {ds}: not a file")}))
    );
    let (s, _, v) = read_file(w, "offset=-1&bogus=1").await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"message": "Query parameters have invalid values.", "validations": [
                {"field": "path", "detail": "Query param \"path\" is required and cannot be empty"},
                {"field": "offset", "detail": "Query param \"offset\" must be a valid 64-bit positive integer: value is negative"},
                {"field": "bogus", "detail": "Query param \"bogus\" is not a valid query param"},
            ]})
        )
    );
    let (s, _, v) = read_file(w, "path=/a%00b").await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"message": "open /a\u{0}b: file name contained an unexpected NUL byte"})
        )
    );
    let long = format!("/{}", "a".repeat(300));
    let (s, _, v) = read_file(w, &format!("path={long}")).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"message": format!("open {long}: file name too long")})
        )
    );
    let missing = p("missing.txt");
    let (s, _, v) = read_file(w, &format!("path={}", enc(&missing))).await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"message": format!("open {missing}: no such file or directory")})
        )
    );
}

/// read-file-lines: a window and its query errors.
async fn walk_read_file_lines(w: &Walk<'_>, dir: &Path) {
    let p = |name: &str| dir.join(name).display().to_string();
    let txt = p("a file.txt");
    let missing = p("missing.txt");
    let lines = "/api/v0/read-file-lines";
    let (s, v) = w
        .get(lines, &format!("{lines}?path={}&offset=2", enc(&txt)))
        .await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"success": true, "file_size": 12, "total_lines": 3, "lines_read": 2, "content": "2\tworld\n3\t"})
        )
    );
    let (s, v) = w
        .get(lines, &format!("{lines}?path={}", enc(&missing)))
        .await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"success": false, "error": format!("file does not exist: {missing}")})
        )
    );
    let (s, v) = w
        .get(lines, &format!("{lines}?path={}&limit=x", enc(&txt)))
        .await;
    assert_eq!(
        (s, &v["validations"][0]["detail"]),
        (
            400,
            &json!(
                "Query param \"limit\" must be a valid 64-bit positive integer: strconv.ParseInt: parsing \"x\": invalid syntax"
            )
        )
    );
}

/// write-file: a new file with parents, the SHA-256 precondition, a hard-linked file's
/// warning, its 400s, and a body over the limit refused before anything is written.
async fn walk_write_file(w: &Walk<'_>, dir: &Path) {
    let p = |name: &str| dir.join(name).display().to_string();
    let new = p("new/deeper/b.txt");
    let (s, v) = write_file_raw(w, &format!("path={}", enc(&new)), "hello\n", true).await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"message": format!("Successfully wrote to \"{new}\""),
                   "sha256": "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"})
        )
    );
    assert_eq!(std::fs::read_to_string(&new).unwrap(), "hello\n");
    let (s, v) = w
        .get(
            "/api/v0/git/watch/paths",
            &format!("/api/v0/git/watch/paths?chat_id={CHAT}"),
        )
        .await;
    assert!(
        s == 200 && v["paths"].as_array().unwrap().contains(&json!(new)),
        "{v}"
    );
    let (s, v) = write_file_raw(
        w,
        &format!(
            "path={}&expected_sha256=5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03",
            enc(&new)
        ),
        "hello\nworld\n",
        false,
    )
    .await;
    assert_eq!(
        (s, &v["sha256"]),
        (
            200,
            &json!("4a1e67f2fe1d1cc7b31d0ca2ec441da4778203a036a77da10344c85e24ff0f92")
        )
    );
    let (s, v) = write_file_raw(
        w,
        &format!("path={}&expected_sha256={}", enc(&new), "0".repeat(64)),
        "x",
        false,
    )
    .await;
    assert_eq!(
        (s, v),
        (
            412,
            json!({"message": format!(
                "file {new} changed: its SHA-256 is 4a1e67f2fe1d1cc7b31d0ca2ec441da4778203a036a77da10344c85e24ff0f92, expected {}",
                "0".repeat(64)
            )})
        )
    );
    walk_write_file_links_and_400s(w, dir).await;
    walk_write_file_body_limit(w, dir).await;
}

/// write-file over a hard-linked file (a warning), and its 400s.
async fn walk_write_file_links_and_400s(w: &Walk<'_>, dir: &Path) {
    let p = |name: &str| dir.join(name).display().to_string();
    let ds = dir.display().to_string();
    let txt = p("a file.txt");
    let linked = p("linked.txt");
    std::fs::write(&linked, "old").unwrap();
    std::fs::hard_link(&linked, p("other-name.txt")).unwrap();
    let (s, v) = write_file_raw(w, &format!("path={}", enc(&linked)), "new", false).await;
    assert_eq!(
        (s, v["warnings"].clone()),
        (
            200,
            json!([format!(
                "{linked} had 2 hard links; it was replaced by a new file, the other 1 names keep the old content"
            )])
        )
    );
    for (query, message) in [
        (
            "path=rel".to_owned(),
            "file path must be absolute: \"rel\"".to_owned(),
        ),
        (
            format!("path={}", enc(&ds)),
            format!("open {ds}: is a directory"),
        ),
        (
            format!("path={}", enc(&format!("{txt}/x"))),
            format!("mkdir {txt}: not a directory"),
        ),
    ] {
        let (s, v) = write_file_raw(w, &query, "x", false).await;
        assert_eq!((s, v), (400, json!({"message": message})), "{query}");
    }
    let (s, v) = write_file_raw(w, "", "x", false).await;
    assert_eq!(
        (s, &v["message"]),
        (400, &json!("Query parameters have invalid values."))
    );
}

/// write-file: a body announced over 128 MiB is refused before anything is written.
async fn walk_write_file_body_limit(w: &Walk<'_>, dir: &Path) {
    let p = |name: &str| dir.join(name).display().to_string();
    let wf = "/api/v0/write-file";
    // A body announced over 128 MiB is refused before anything is written.
    let head = format!(
        "POST {wf}?path={} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\nx",
        enc(&p("huge.bin")),
        200 << 20
    );
    let r = RawResponse::parse(&raw_tcp(&w.d.addr, head.as_bytes()).await);
    assert_eq!(r.status, 413, "{r:?}");
    let v = w.check("POST", wf, r.status, "application/json", &r.body);
    assert_eq!(
        v,
        json!({"message": "Request body too large.", "detail": "the limit is 134217728 bytes"})
    );
    assert!(!Path::new(&p("huge.bin")).exists());
}

/// edit-files: an edit, its 400s, a matcher miss, the precondition and a file too large.
async fn walk_edit_files(w: &Walk<'_>, dir: &Path) {
    let p = |name: &str| dir.join(name).display().to_string();
    let txt = p("a file.txt");
    let missing = p("missing.txt");
    let ef = "/api/v0/edit-files";
    let edit = |path: &str, old: &str, new: &str| json!({"path": path, "edits": [{"old_text": old, "new_text": new}]});
    let (s, v) = w
        .post(ef, ef, &json!({"files": [edit(&txt, "hello", "hi")]}))
        .await;
    assert_eq!(
        (s, v),
        (
            200,
            json!({"sha256": {txt.clone(): "9ca5605847400f264055cb2afd82efba81005b5e420f654f06c9554f267cd43d"}})
        )
    );
    let (s, v) = w
        .post(
            ef,
            ef,
            &json!({"files": [{"path": txt, "edits": [{"search": "world", "replace": "there"}]}], "include_diff": true}),
        )
        .await;
    assert_eq!(
        (
            s,
            &v["files"][0]["path"],
            v["files"][0]["diff"]
                .as_str()
                .map(|d| d.starts_with(&format!("--- {txt}\n+++ {txt}\n")))
        ),
        (200, &json!(txt), Some(true)),
        "{v}"
    );
    assert_eq!(std::fs::read_to_string(&txt).unwrap(), "hi\nthere\n");
    let (s, v) = w.post(ef, ef, &json!({})).await;
    assert_eq!(
        (s, v),
        (400, json!({"message": "must specify at least one file"}))
    );
    let (s, v) = w
        .call("POST", ef, ef, Some("{\"files\":"), &[], Auth::Token)
        .await;
    assert_eq!(
        (s, &v["message"]),
        (400, &json!("Request body must be valid JSON."))
    );
    // A matcher miss: the wording after `edit <path>: ` is the matcher's.
    let (s, v) = w
        .post(ef, ef, &json!({"files": [edit(&txt, "absent text", "x")]}))
        .await;
    let m = v["message"].as_str().unwrap();
    assert!(
        s == 400 && m.starts_with(&format!("edit {txt}: ")) && m.contains("not found in file"),
        "{s} {v}"
    );
    let (s, v) = w
        .post(ef, ef, &json!({"files": [edit(&missing, "a", "b")]}))
        .await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"message": format!("open {missing}: no such file or directory")})
        )
    );
    let (s, v) = w
        .post(
            ef,
            ef,
            &json!({"files": [{"path": txt, "edits": [{"old_text": "hi", "new_text": "yo"}], "expected_sha256": "ab"}]}),
        )
        .await;
    assert_eq!(
        (s, v["message"].as_str().unwrap().ends_with(", expected ab")),
        (412, true),
        "{v}"
    );
    let big = p("big.txt");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    let (s, v) = w
        .post(ef, ef, &json!({"files": [edit(&big, "a", "b")]}))
        .await;
    assert_eq!(
        (s, v),
        (
            413,
            json!({"message": format!("edit {big}: file is 67108865 bytes; edit-files handles files up to 67108864 bytes")})
        )
    );
}

/// resolve-path: a link, and its 400s and 500.
async fn walk_resolve_path(w: &Walk<'_>, dir: &Path) {
    let p = |name: &str| dir.join(name).display().to_string();
    let txt = p("a file.txt");
    let rp = "/api/v0/resolve-path";
    std::os::unix::fs::symlink(&txt, p("link")).unwrap();
    let (s, v) = w
        .get(
            rp,
            &format!("{rp}?path={}", enc(&format!("{}/more", p("link")))),
        )
        .await;
    assert_eq!(
        (s, v),
        (200, json!({"resolved_path": format!("{txt}/more")}))
    );
    let (s, v) = w.get(rp, &format!("{rp}?path=rel")).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"message": "file path must be absolute: \"rel\""})
        )
    );
    let (s, v) = w.get(rp, &format!("{rp}?path=/a%00b")).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"message": "lstat /a\u{0}b: file name contained an unexpected NUL byte"})
        )
    );
    let (s, v) = w.get(rp, &format!("{rp}?path=/a&path=/b")).await;
    assert_eq!(
        (s, v),
        (
            400,
            json!({"message": "Query parameters have invalid values.", "validations": [
                {"field": "path", "detail": "Query param \"path\" provided more than once, found 2 times"}]})
        )
    );
    std::os::unix::fs::symlink("loop2", p("loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", p("loop2")).unwrap();
    let (s, v) = w.get(rp, &format!("{rp}?path={}", enc(&p("loop1")))).await;
    assert_eq!(
        (s, v),
        (
            500,
            json!({"message": format!("too many levels of symlinks resolving \"{}\"", p("loop1"))})
        )
    );
}

/// list-directory: by query path, by components, home-relative, and its errors.
async fn walk_list_directory(w: &Walk<'_>, dir: &Path, work: &Path) {
    let p = |name: &str| dir.join(name).display().to_string();
    let txt = p("a file.txt");
    let missing = p("missing.txt");
    let ls = "/api/v0/list-directory";
    let sub = dir.join("new");
    let (s, v) = w
        .post(
            ls,
            &format!("{ls}?path={}", enc(&sub.display().to_string())),
            &json!({}),
        )
        .await;
    let comps: Vec<String> = sub
        .components()
        .skip(1)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        (s, v),
        (
            200,
            json!({"absolute_path": comps, "absolute_path_string": sub.display().to_string(),
                   "contents": [{"name": "deeper", "absolute_path_string": sub.join("deeper").display().to_string(), "is_dir": true}]})
        )
    );
    let (s, v) = w
        .post(ls, ls, &json!({"path": comps, "relativity": "root"}))
        .await;
    assert_eq!((s, &v["contents"][0]["name"]), (200, &json!("deeper")));
    let (s, v) = w.post(ls, ls, &json!({"relativity": "home"})).await;
    assert_eq!(
        (s, &v["absolute_path_string"]),
        (200, &json!(work.join("home").display().to_string()))
    );
    for (path, body, message) in [
        (
            format!("{ls}?path=rel"),
            json!({}),
            json!("path must be absolute: \"rel\""),
        ),
        (
            ls.to_owned(),
            json!({"relativity": "cwd"}),
            json!("unsupported relativity type \"cwd\""),
        ),
        (
            format!("{ls}?path={}", enc(&txt)),
            json!({}),
            json!(format!("path \"{txt}\" is not a directory")),
        ),
        (
            format!("{ls}?x=1"),
            json!({}),
            json!("Query parameters have invalid values."),
        ),
        (
            format!("{ls}?path=/a%00b"),
            json!({}),
            json!(
                "failed to open directory \"/a\\x00b\": open /a\u{0}b: file name contained an unexpected NUL byte"
            ),
        ),
        (
            ls.to_owned(),
            json!([]),
            json!("Request body must be valid JSON."),
        ),
    ] {
        let (s, v) = w.post(ls, &path, &body).await;
        assert_eq!((s, &v["message"]), (400, &message), "{path} {body}");
    }
    let (s, v) = w
        .post(ls, &format!("{ls}?path={}", enc(&missing)), &json!({}))
        .await;
    assert_eq!(
        (s, v),
        (
            404,
            json!({"message": format!("failed to open directory \"{missing}\": open {missing}: no such file or directory")})
        )
    );
}
