//! The in-repo rmcp test server for agentd's MCP tests: stdio by default, streamable HTTP on
//! 127.0.0.1 with `--http` (prints its URL on stdout). Misbehaviour switches:
//!
//! `--slow-start-ms N` (sleep before serving), `--crash-after N` (exit on call N+1),
//! `--garbage` (non-JSON lines on stdout), `--stderr-junk` (non-UTF-8 bytes and a burst of
//! lines on stderr), `--grandchild` (start a `sleep` in the same process group),
//! `--ignore-term` (survive SIGTERM), `--exit-now N` (exit with status N before serving),
//! `--weird-names` (tools whose names are not provider-safe), `--stderr-env NAME` (print
//! that variable's value on stderr, as a careless server prints its API key). Tools: `echo`, `sleep`,
//! `hang`, `huge`, `rich`, `fail`, `env`, `cwd`, `schema`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub
)]

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};

static CALLS: AtomicU32 = AtomicU32::new(0);
static CRASH_AFTER: AtomicU32 = AtomicU32::new(u32::MAX);

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// The message.
    message: String,
}
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct SleepArgs {
    ms: u64,
}
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct HugeArgs {
    bytes: usize,
}
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EnvArgs {
    name: String,
}
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
enum Mode {
    Fast,
    Slow,
}
#[allow(dead_code)]
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Nested {
    mode: Mode,
    tags: Option<Vec<String>>,
}
#[allow(dead_code)]
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct SchemaArgs {
    inner: Nested,
}
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct Empty {}

fn count() {
    let n = CALLS.fetch_add(1, Ordering::SeqCst);
    if n >= CRASH_AFTER.load(Ordering::SeqCst) {
        eprintln!("fake-mcp-server: crashing after {n} calls");
        std::process::exit(3);
    }
}

#[derive(Clone)]
struct Fake {
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl Fake {
    fn new(weird: bool) -> Self {
        let mut r = Self::tool_router();
        if !weird {
            r.remove_route("dotted.name/x");
            r.remove_route(LONG);
        }
        Self { tool_router: r }
    }

    #[tool(description = "Echo the message back")]
    fn echo(&self, Parameters(EchoArgs { message }): Parameters<EchoArgs>) -> String {
        count();
        message
    }

    #[tool(description = "Sleep, then answer")]
    async fn sleep(&self, Parameters(SleepArgs { ms }): Parameters<SleepArgs>) -> String {
        count();
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        format!("slept {ms}")
    }

    #[tool(description = "Never answers")]
    async fn hang(&self, Parameters(_): Parameters<Empty>) -> String {
        count();
        std::future::pending::<()>().await;
        String::new()
    }

    #[tool(description = "A big text result")]
    fn huge(&self, Parameters(HugeArgs { bytes }): Parameters<HugeArgs>) -> String {
        count();
        "x".repeat(bytes)
    }

    #[tool(description = "Text, image, audio, embedded resource and resource link")]
    fn rich(&self, Parameters(_): Parameters<Empty>) -> Result<CallToolResult, ErrorData> {
        count();
        Ok(serde_json::from_value(serde_json::json!({"content": [
            {"type": "text", "text": "hello"},
            {"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"},
            {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
            {"type": "resource", "resource": {"uri": "file:///notes.txt", "mimeType": "text/plain", "text": "embedded body"}},
            {"type": "resource_link", "uri": "file:///linked.txt", "name": "linked.txt"}
        ]}))
        .unwrap())
    }

    #[tool(description = "Returns isError")]
    fn fail(&self, Parameters(_): Parameters<Empty>) -> CallToolResult {
        count();
        serde_json::from_value(
            serde_json::json!({"content": [{"type": "text", "text": "it broke"}], "isError": true}),
        )
        .unwrap()
    }

    #[tool(description = "An environment variable")]
    fn env(&self, Parameters(EnvArgs { name }): Parameters<EnvArgs>) -> String {
        count();
        std::env::var(&name).unwrap_or_else(|_| "<unset>".into())
    }

    #[tool(description = "The working directory")]
    fn cwd(&self, Parameters(_): Parameters<Empty>) -> String {
        count();
        std::env::current_dir().unwrap().display().to_string()
    }

    #[tool(description = "A schema with $defs and enums")]
    fn schema(&self, Parameters(_): Parameters<SchemaArgs>) -> String {
        count();
        "ok".into()
    }

    #[tool(name = "dotted.name/x", description = "Not provider-safe")]
    fn dotted(&self) -> String {
        count();
        "dotted".into()
    }

    #[tool(
        name = "a_tool_name_that_is_much_too_long_for_any_llm_provider_to_accept_as_is",
        description = "Too long"
    )]
    fn long(&self) -> String {
        count();
        "long".into()
    }
}

const LONG: &str = "a_tool_name_that_is_much_too_long_for_any_llm_provider_to_accept_as_is";

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Fake {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }
}

fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1)?.parse().ok()
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |n: &str| args.iter().any(|a| a == n);
    if let Some(code) = arg::<i32>(&args, "--exit-now") {
        eprintln!("fake-mcp-server: exiting with {code} as asked");
        std::process::exit(code);
    }
    if let Some(n) = arg::<u32>(&args, "--crash-after") {
        CRASH_AFTER.store(n, Ordering::SeqCst);
    }
    if flag("--ignore-term") {
        let mut s = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::spawn(async move {
            while s.recv().await.is_some() {
                eprintln!("fake-mcp-server: ignoring SIGTERM");
            }
        });
    }
    if flag("--grandchild") {
        let c = std::process::Command::new("sleep").arg("300").spawn()?;
        eprintln!("fake-mcp-server: grandchild {}", c.id());
    }
    if flag("--stderr-junk") {
        let mut e = std::io::stderr().lock();
        e.write_all(b"bad bytes: \xff\xfe\xfd\n")?;
        for i in 0..500 {
            writeln!(e, "junk line {i}")?;
        }
    }
    if let Some(name) = arg::<String>(&args, "--stderr-env") {
        eprintln!(
            "fake-mcp-server: my {name} is {}",
            std::env::var(&name).unwrap_or_default()
        );
    }
    if let Some(ms) = arg::<u64>(&args, "--slow-start-ms") {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    let weird = flag("--weird-names");
    if flag("--http") {
        use rmcp::transport::streamable_http_server::{
            StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
        };
        let port = arg::<u16>(&args, "--port").unwrap_or(0);
        let svc: StreamableHttpService<Fake, LocalSessionManager> = StreamableHttpService::new(
            move || Ok(Fake::new(weird)),
            Default::default(),
            StreamableHttpServerConfig::default(),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("http://{}/mcp", listener.local_addr()?);
        std::io::stdout().flush()?;
        axum::serve(listener, axum::Router::new().nest_service("/mcp", svc)).await?;
        return Ok(());
    }
    if flag("--garbage") {
        let mut o = std::io::stdout().lock();
        writeln!(o, "this is not json")?;
        writeln!(o, "{{\"neither\": \"jsonrpc\"}}")?;
        o.flush()?;
    }
    Fake::new(weird)
        .serve(rmcp::transport::stdio())
        .await?
        .waiting()
        .await?;
    Ok(())
}
