//! `agentd ctx add|clear|list`: the client side of the context store. It reads a directory
//! the way Coder's `ContextPartsFromDir` does and talks HTTP/1.1 to the running daemon over
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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use crate::cli::{CtxCommand, CtxCommon};
use crate::context_api::{
    AddRequest, AddResponse, CONTEXT_STORE_PATH, ClearResponse, ListResponse, PartDto,
};

/// Coder's chat-context path on coderd.
pub const UPSTREAM_PATH: &str = "/api/v2/workspaceagents/me/experimental/chat-context";
/// Connect timeout for the daemon and upstream.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one whole request/answer exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A failure worded for a person; the exit code is 1.
#[derive(Debug)]
struct Fail(String);

impl<E: std::fmt::Display> From<E> for Fail {
    fn from(e: E) -> Self {
        Fail(e.to_string())
    }
}

/// Runs a `ctx` subcommand.
pub fn run(cmd: CtxCommand) -> ExitCode {
    let Some(rt) = crate::runtime(tokio::runtime::Builder::new_current_thread()) else {
        return ExitCode::FAILURE;
    };
    match rt.block_on(dispatch(cmd)) {
        Ok(code) => code,
        Err(Fail(msg)) => {
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
                Fail(format!(
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
                    Fail(format!(
                        "cannot find the daemon's socket: {e}; pass --socket"
                    ))
                })?
        }
    };
    Ok(crate::config::default_socket(&state_dir))
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Body (chunked encoding already decoded).
    pub body: Vec<u8>,
}

impl Answer {
    fn json<T: DeserializeOwned>(&self) -> Result<T, Fail> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Fail(format!(
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

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`).
pub async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Answer> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: agentd/{}\r\nAccept: application/json\r\n",
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    if let Some(b) = body {
        bytes.extend_from_slice(b);
    }
    s.write_all(&bytes).await?;
    s.flush().await?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await?;
    parse_answer(&buf)
}

fn bad(msg: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.to_owned())
}

fn parse_answer(buf: &[u8]) -> std::io::Result<Answer> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("truncated HTTP answer"))?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("malformed HTTP status line"))?;
    let mut chunked = false;
    let mut length = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let rest = &buf[end + 4..];
    let body = if chunked {
        decode_chunked(rest)?
    } else {
        match length {
            Some(n) => rest
                .get(..n)
                .ok_or_else(|| bad("truncated HTTP body"))?
                .to_vec(),
            None => rest.to_vec(),
        }
    };
    Ok(Answer { status, body })
}

fn decode_chunked(mut rest: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let nl = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("truncated chunk"))?;
        let size_line = String::from_utf8_lossy(&rest[..nl]);
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad("bad chunk size"))?;
        rest = &rest[nl + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or_else(|| bad("truncated chunk"))?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or(&[]);
    }
}

/// A request to the daemon over its unix socket.
async fn daemon(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<Answer, Fail> {
    let not_running = |e: &dyn std::fmt::Display| {
        Fail(format!(
            "agentd is not running: cannot connect to {} ({e}).\n\
             Start it with `agentd serve` (add `--socket {}` if it is not the default), \
             or point --socket / AGENTD_SOCKET at the running daemon's socket.",
            socket.display(),
            socket.display()
        ))
    };
    let stream = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio::net::UnixStream::connect(socket),
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(not_running(&e)),
        Err(_) => return Err(not_running(&"connect timed out")),
    };
    tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        exchange(stream, method, "agentd", path, &[], body),
    )
    .await
    .map_err(|_| {
        Fail(format!(
            "no answer from agentd on {} within {EXCHANGE_TIMEOUT:?}",
            socket.display()
        ))
    })?
    .map_err(|e| Fail(format!("talking to agentd on {}: {e}", socket.display())))
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
            return Err(Fail(
                "--upstream needs CODER_AGENT_URL and CODER_AGENT_TOKEN to be set".into(),
            ));
        }
        _ => return Ok(None),
    };
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            Fail(format!(
                "upstream {url}: CODER_AGENT_URL must start with http:// or https://"
            ))
        })?;
    if rest.split('/').next().unwrap_or_default().is_empty() {
        return Err(Fail(format!("upstream {url}: no host")));
    }
    Ok(Some(Upstream {
        base: url.trim_end_matches('/').to_owned(),
        token: token.trim().to_owned(),
    }))
}

/// Sends Coder's chat-context request to coderd (TLS through rustls for https://), with a
/// connect and a total timeout, never following redirects (the token must not travel).
async fn upstream_request(up: &Upstream, method: &str, body: &[u8]) -> Result<Answer, Fail> {
    let url = format!("{}{UPSTREAM_PATH}", up.base);
    let fail = |e: &dyn std::error::Error| {
        // reqwest's own message hides the cause (refused, certificate, ...): add the chain.
        let mut msg = e.to_string();
        let mut src = e.source();
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        Fail(format!("upstream {url}: {msg}"))
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(EXCHANGE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| fail(&e))?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| fail(&e))?;
    let res = client
        .request(method, &url)
        .header("Coder-Session-Token", &up.token)
        .header("Content-Type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| fail(&e))?;
    let status = res.status().as_u16();
    let body = res.bytes().await.map_err(|e| fail(&e))?.to_vec();
    Ok(Answer { status, body })
}

#[derive(Serialize)]
struct UpstreamAdd<'a> {
    chat_id: String,
    parts: &'a [PartDto],
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
        Err(Fail(e)) => {
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
            Err(Fail(e)) => {
                eprintln!("agentd: Coder: {e}");
                false
            }
        },
        Ok(a) => {
            eprintln!("agentd: Coder answered {}: {}", a.status, a.error_text());
            false
        }
        Err(Fail(e)) => {
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
        .map_err(|e| Fail(format!("cannot read the current directory: {e}")))?;
    let dir = match dir {
        Some(d) if d.is_absolute() => d.to_path_buf(),
        Some(d) => cwd.join(d),
        None => cwd,
    };
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Fail(format!("{} is not a directory", dir.display()))),
        Err(e) => {
            return Err(Fail(format!(
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
    let parts: Vec<PartDto> = found
        .parts
        .iter()
        .map(|p| PartDto::from_part(p, None))
        .collect();

    let socket = socket_of(common)?;
    let body = serde_json::to_vec(&AddRequest {
        chat_id: Some(chat.unwrap_or_default().to_string()),
        parts: parts.clone(),
    })?;
    let local = daemon(&socket, "POST", CONTEXT_STORE_PATH, Some(&body)).await;
    let mut ok = report_local(local, |r: AddResponse| {
        println!("Added {} context part(s) to {}", r.count, target(chat));
    })?;
    if let Some(up) = upstream {
        let body = serde_json::to_vec(&UpstreamAdd {
            chat_id: chat.unwrap_or_default().to_string(),
            parts: &parts,
        })?;
        ok &= report_upstream(upstream_request(&up, "POST", &body).await, |u| {
            format!("added {} context part(s) to chat {}", u.count, u.chat_id)
        });
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
    let local = daemon(&socket, "DELETE", &path, None).await;
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
        ok &= report_upstream(upstream_request(&up, "DELETE", &body).await, |u| {
            if u.chat_id.is_empty() || Uuid::try_parse(&u.chat_id).is_ok_and(|id| id.is_nil()) {
                "No active chats to clear.".into()
            } else {
                format!("Cleared context from chat {}", u.chat_id)
            }
        });
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
    let a = daemon(&socket, "GET", &path, None).await?;
    if a.status != 200 {
        return Err(Fail(a.error_text()));
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
        let id = Uuid::try_parse(&s.chat_id).ok().filter(|id| !id.is_nil());
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_answers() {
        let a = parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra").unwrap();
        assert_eq!((a.status, a.body.as_slice()), (200, b"{}".as_slice()));
        let a = parse_answer(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((a.status, a.body.as_slice()), (404, b"abcde".as_slice()));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        let a = Answer {
            status: 400,
            body: br#"{"message":"m","detail":"d"}"#.to_vec(),
        };
        assert_eq!(a.error_text(), "m: d");
    }
}
