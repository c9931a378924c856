//! `agentd ctx add|clear|list`: the client side of the context store. It reads a directory
//! the way Coder's `ContextPartsFromDir` does and talks HTTP to the running daemon over
//! its unix socket; in upstream mode it also sends Coder's own
//! `/api/v2/workspaceagents/me/experimental/chat-context` request.
//!
//! This is the binary's edge (it reads `CODER_AGENT_URL`/`CODER_AGENT_TOKEN` and prints for
//! a person). It must not reach into the daemon's state other than through its HTTP API.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::cli::{CtxCommand, CtxCommon};
use crate::context_api::{
    AddRequest, AddResponse, CONTEXT_STORE_PATH, ClearResponse, ListResponse, PartDto,
};

/// Coder's chat-context path on coderd.
pub(crate) const UPSTREAM_PATH: &str = "/api/v2/workspaceagents/me/experimental/chat-context";
/// Connect timeout for the daemon and upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one whole request/answer exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A failure worded for a person (its top-level message is printed); the exit code is 1.
type Fail = anyhow::Error;

/// Runs a `ctx` subcommand.
pub(crate) fn run(cmd: CtxCommand) -> ExitCode {
    let Some(rt) = crate::runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(dispatch(cmd)) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("agentd: {msg}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cmd: CtxCommand) -> Result<ExitCode, Fail> {
    match cmd {
        CtxCommand::Add(a) => add(&a.common, a.dir.as_deref(), a.upstream).await,
        CtxCommand::Clear(a) => clear(&a.common, a.upstream).await,
        CtxCommand::List(a) => list(&a.common, a.json).await,
    }
}

/// The chat from `--chat`/`CODER_CHAT_ID`; `None` (every chat) when absent, empty or nil.
fn chat_of(common: &CtxCommon) -> Result<Option<Uuid>, Fail> {
    match common.chat.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(raw) => crate::chat::parse_uuid(raw)
            .map(|id| (!id.is_nil()).then_some(id))
            .ok_or_else(|| {
                anyhow::Error::msg(format!(
                    "invalid chat ID {raw:?}: it must be a UUID (from --chat or CODER_CHAT_ID)"
                ))
            }),
    }
}

fn target(chat: Option<Uuid>) -> String {
    match chat {
        Some(id) => format!("chat {id}"),
        None => "all chats".into(),
    }
}

fn socket_of(common: &CtxCommon) -> Result<PathBuf, Fail> {
    if let Some(s) = &common.socket {
        return Ok(s.clone());
    }
    let state_dir = match std::env::var_os("AGENTD_STATE_DIR").filter(|v| !v.is_empty()) {
        Some(s) => PathBuf::from(s),
        None => {
            crate::config::default_state_dir(std::env::var_os("HOME").map(PathBuf::from).as_deref())
                .map_err(|e| {
                    anyhow::Error::msg(format!(
                        "cannot find the daemon's socket: {e}; pass --socket"
                    ))
                })?
        }
    };
    Ok(crate::config::default_socket(&state_dir))
}

/// An HTTP answer, read whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn json<T: DeserializeOwned>(&self) -> Result<T, Fail> {
        serde_json::from_slice(&self.body).map_err(|e| {
            anyhow::Error::msg(format!(
                "unexpected answer (status {}): {e}: {}",
                self.status,
                String::from_utf8_lossy(&self.body).trim()
            ))
        })
    }

    /// `message: detail` of a Coder-shaped error body, else the raw body.
    fn error_text(&self) -> String {
        #[derive(serde::Deserialize)]
        struct E {
            message: String,
            #[serde(default)]
            detail: String,
        }
        match serde_json::from_slice::<E>(&self.body) {
            Ok(e) if e.detail.is_empty() => e.message,
            Ok(e) => format!("{}: {}", e.message, e.detail),
            Err(_) => String::from_utf8_lossy(&self.body).trim().to_owned(),
        }
    }
}

/// A client with the CLI's timeouts that never follows redirects (the upstream token must
/// not travel); with `socket`, every connection goes to that unix socket.
fn client(socket: Option<&Path>) -> reqwest::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("agentd/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(EXCHANGE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(s) = socket {
        b = b.unix_socket(s);
    }
    b.build()
}

/// Sends a request (a JSON body, if any) and reads the whole answer.
async fn send(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> reqwest::Result<Answer> {
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.header("Content-Type", "application/json").body(b);
    }
    let res = req.send().await?;
    let status = res.status().as_u16();
    let body = res.bytes().await?.to_vec();
    Ok(Answer { status, body })
}

/// `e` followed by its causes (reqwest's own message hides them: refused, certificate, ...).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// A request to the daemon over its unix socket.
async fn daemon(
    socket: &Path,
    method: reqwest::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<Answer, Fail> {
    let talking = |e: &dyn std::error::Error| {
        anyhow::Error::msg(format!(
            "talking to agentd on {}: {}",
            socket.display(),
            with_causes(e)
        ))
    };
    let client = client(Some(socket)).map_err(|e| talking(&e))?;
    let url = format!("http://agentd{path}");
    let e = match send(&client, method, &url, &[], body).await {
        Ok(a) => return Ok(a),
        Err(e) => e,
    };
    if e.is_connect() {
        // The OS error (e.g. "No such file or directory") says why; reqwest's wrappers don't.
        let os = std::iter::successors(Some(&e as &dyn std::error::Error), |c| c.source())
            .find_map(|c| c.downcast_ref::<std::io::Error>());
        let why = match os {
            Some(io) => io.to_string(),
            None if e.is_timeout() => "connect timed out".into(),
            None => with_causes(&e),
        };
        return Err(anyhow::Error::msg(format!(
            "agentd is not running: cannot connect to {} ({why}).\n\
             Start it with `agentd serve` (add `--socket {}` if it is not the default), \
             or point --socket / AGENTD_SOCKET at the running daemon's socket.",
            socket.display(),
            socket.display()
        )));
    }
    if e.is_timeout() {
        return Err(anyhow::Error::msg(format!(
            "no answer from agentd on {} within {EXCHANGE_TIMEOUT:?}",
            socket.display()
        )));
    }
    Err(talking(&e))
}

/// Coder's agent URL and token, when upstream mode is on.
struct Upstream {
    /// `CODER_AGENT_URL` without a trailing slash (http:// or https://).
    base: String,
    token: String,
}

fn upstream_of(force: bool) -> Result<Option<Upstream>, Fail> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let (url, token) = match (get("CODER_AGENT_URL"), get("CODER_AGENT_TOKEN")) {
        (Some(u), Some(t)) => (u, t),
        _ if force => {
            return Err(anyhow::anyhow!(
                "--upstream needs CODER_AGENT_URL and CODER_AGENT_TOKEN to be set"
            ));
        }
        _ => return Ok(None),
    };
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            anyhow::Error::msg(format!(
                "upstream {url}: CODER_AGENT_URL must start with http:// or https://"
            ))
        })?;
    if rest.split('/').next().unwrap_or_default().is_empty() {
        return Err(anyhow::Error::msg(format!("upstream {url}: no host")));
    }
    Ok(Some(Upstream {
        base: url.trim_end_matches('/').to_owned(),
        token: token.trim().to_owned(),
    }))
}

/// Sends Coder's chat-context request to coderd (TLS through rustls for https://).
async fn upstream_request(
    up: &Upstream,
    method: reqwest::Method,
    body: Vec<u8>,
) -> Result<Answer, Fail> {
    let url = format!("{}{UPSTREAM_PATH}", up.base);
    let fail =
        |e: reqwest::Error| anyhow::Error::msg(format!("upstream {url}: {}", with_causes(&e)));
    let client = client(None).map_err(fail)?;
    let headers = [("Coder-Session-Token", up.token.as_str())];
    send(&client, method, &url, &headers, Some(body))
        .await
        .map_err(fail)
}

#[derive(Serialize)]
struct UpstreamClear {
    chat_id: String,
}

#[derive(serde::Deserialize)]
struct UpstreamAnswer {
    #[serde(default)]
    chat_id: String,
    #[serde(default)]
    count: usize,
}

/// Prints the daemon's answer: `on_ok` for a 200, the error otherwise. `Ok(false)` means the
/// command failed (already reported); `Err` means the answer was not understood.
fn report_local<T: DeserializeOwned>(
    res: Result<Answer, Fail>,
    on_ok: impl FnOnce(T),
) -> Result<bool, Fail> {
    match res {
        Ok(a) if a.status == 200 => {
            on_ok(a.json()?);
            Ok(true)
        }
        Ok(a) => {
            eprintln!("agentd: {}", a.error_text());
            Ok(false)
        }
        Err(e) => {
            eprintln!("agentd: {e}");
            Ok(false)
        }
    }
}

/// Prints the upstream outcome; `false` on failure.
fn report_upstream(res: Result<Answer, Fail>, ok: impl Fn(&UpstreamAnswer) -> String) -> bool {
    match res {
        Ok(a) if (200..300).contains(&a.status) => match a.json::<UpstreamAnswer>() {
            Ok(u) => {
                println!("Coder: {}", ok(&u));
                true
            }
            Err(e) => {
                eprintln!("agentd: Coder: {e}");
                false
            }
        },
        Ok(a) => {
            eprintln!("agentd: Coder answered {}: {}", a.status, a.error_text());
            false
        }
        Err(e) => {
            eprintln!("agentd: Coder: {e}");
            false
        }
    }
}

async fn add(
    common: &CtxCommon,
    dir: Option<&Path>,
    force_upstream: bool,
) -> Result<ExitCode, Fail> {
    let chat = chat_of(common)?;
    let upstream = upstream_of(force_upstream)?;
    let cwd = std::env::current_dir()
        .map_err(|e| anyhow::Error::msg(format!("cannot read the current directory: {e}")))?;
    let dir = match dir {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => cwd.join(d),
        None => cwd,
    };
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(anyhow::Error::msg(format!(
                "{} is not a directory",
                dir.display()
            )));
        }
        Err(e) => {
            return Err(anyhow::Error::msg(format!(
                "cannot read directory {}: {e}",
                dir.display()
            )));
        }
    }
    let found = agentcontextconfig::context_parts_from_dir(&dir);
    for s in &found.skipped {
        eprintln!("agentd: skipped {}: {}", s.path, s.reason);
    }
    if found.parts.is_empty() {
        eprintln!("No context files or skills found in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let socket = socket_of(common)?;
    // Coder's chat-context request, which the daemon's store route takes as it is.
    let body = serde_json::to_vec(&AddRequest {
        chat_id: Some(chat.unwrap_or_default().to_string()),
        parts: found
            .parts
            .into_iter()
            .map(|p| PartDto::from_part(p, None))
            .collect(),
    })?;
    let local = daemon(
        &socket,
        reqwest::Method::POST,
        CONTEXT_STORE_PATH,
        Some(body.clone()),
    )
    .await;
    let mut ok = report_local(local, |r: AddResponse| {
        println!("Added {} context part(s) to {}", r.count, target(chat));
    })?;
    if let Some(up) = upstream {
        ok &= report_upstream(
            upstream_request(&up, reqwest::Method::POST, body).await,
            |u| format!("added {} context part(s) to chat {}", u.count, u.chat_id),
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn clear(common: &CtxCommon, force_upstream: bool) -> Result<ExitCode, Fail> {
    let chat = chat_of(common)?;
    let upstream = upstream_of(force_upstream)?;
    let socket = socket_of(common)?;
    let path = format!("{CONTEXT_STORE_PATH}?chat_id={}", chat.unwrap_or_default());
    let local = daemon(&socket, reqwest::Method::DELETE, &path, None).await;
    let mut ok = report_local(local, |r: ClearResponse| {
        if r.cleared == 0 {
            println!("No context parts to clear for {}", target(chat));
        } else {
            println!(
                "Cleared {} context part(s) from {}",
                r.cleared,
                target(chat)
            );
        }
    })?;
    if let Some(up) = upstream {
        let body = serde_json::to_vec(&UpstreamClear {
            chat_id: chat.unwrap_or_default().to_string(),
        })?;
        ok &= report_upstream(
            upstream_request(&up, reqwest::Method::DELETE, body).await,
            |u| {
                if u.chat_id.is_empty() || Uuid::try_parse(&u.chat_id).is_ok_and(|id| id.is_nil()) {
                    "No active chats to clear.".into()
                } else {
                    format!("Cleared context from chat {}", u.chat_id)
                }
            },
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn list(common: &CtxCommon, json: bool) -> Result<ExitCode, Fail> {
    let chat = chat_of(common)?;
    let socket = socket_of(common)?;
    let path = match chat {
        Some(id) => format!("{CONTEXT_STORE_PATH}?chat_id={id}"),
        None => CONTEXT_STORE_PATH.to_owned(),
    };
    let a = daemon(&socket, reqwest::Method::GET, &path, None).await?;
    if a.status != 200 {
        return Err(anyhow::Error::msg(a.error_text()));
    }
    if json {
        print!("{}", String::from_utf8_lossy(&a.body));
        return Ok(ExitCode::SUCCESS);
    }
    let r: ListResponse = a.json()?;
    let scopes: Vec<_> = r.scopes.iter().filter(|s| !s.parts.is_empty()).collect();
    if scopes.is_empty() {
        match chat {
            Some(id) => println!("No context parts stored for chat {id}"),
            None => println!("No context parts stored"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    for s in scopes {
        let id = Some(s.chat_id).filter(|id| !id.is_nil());
        println!("{}:", target(id));
        for p in &s.parts {
            if p.kind == "skill" {
                let desc = if p.skill_description.is_empty() {
                    String::new()
                } else {
                    format!(" - {}", p.skill_description)
                };
                println!("  skill         {} ({}){desc}", p.skill_name, p.skill_dir);
            } else {
                let cut = if p.context_file_truncated {
                    ", truncated"
                } else {
                    ""
                };
                println!(
                    "  context-file  {} ({} bytes{cut})",
                    p.context_file_path,
                    p.context_file_content.len()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text() {
        let a = Answer {
            status: 400,
            body: br#"{"message":"m","detail":"d"}"#.to_vec(),
        };
        assert_eq!(a.error_text(), "m: d");
        let a = Answer {
            status: 404,
            body: b" not json \n".to_vec(),
        };
        assert_eq!(a.error_text(), "not json");
    }
}
