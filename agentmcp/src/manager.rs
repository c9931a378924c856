//! The manager: owns every server's supervisor, applies configuration differentially,
//! builds the tool catalogue and proxies calls. Cheap to clone.
//!
//! Nothing here blocks on a server: listing answers from the cache, a down server fails a
//! call at once, and every server operation has a timeout.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentproc::{GroupSignal, signal_group};
use rmcp::model::CallToolRequestParams;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, EntryError, FileError};
use crate::convert::result_from_json;
use crate::names;
use crate::redact::secrets_of;
use crate::server::{Connector, Server, list_tools, supervise, transport_connector};
use crate::sync::lock;
use crate::{
    CallError, CallOutput, CatalogTool, ConfigFileError, ManagerOptions, ServerState, ServerStatus,
    Status,
};

struct Inner {
    opts: ManagerOptions,
    servers: Mutex<BTreeMap<String, Arc<Server>>>,
    /// Changed servers whose new config is connecting while the old one keeps serving.
    pending: Mutex<BTreeMap<String, Arc<Server>>>,
    invalid: Mutex<BTreeMap<String, EntryError>>,
    file_errors: Mutex<Vec<FileError>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    reload: tokio::sync::Mutex<()>,
    /// Values of the base environment, redacted from every server's errors.
    inherited: Vec<String>,
    /// Bumped whenever the servers map or a server's state or tools change.
    catalog_gen: Arc<AtomicU64>,
    /// The catalogue built at a generation; rebuilt only when the generation moved on.
    catalog: Mutex<(u64, Arc<[CatalogTool]>)>,
    /// Process groups of every server process that may be alive (see `Server::set_pid`).
    groups: Arc<Mutex<HashSet<u32>>>,
    /// How servers are connected.
    connector: Connector,
}

/// The MCP manager.
#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

impl Manager {
    /// Loads the config and starts connecting every server in the background (never
    /// waits for them), plus the config watcher. Must be called inside a tokio runtime.
    pub fn start(opts: ManagerOptions) -> Self {
        Self::start_with(opts, transport_connector())
    }

    /// [`Manager::start`] with another way of connecting servers.
    pub(crate) fn start_with(opts: ManagerOptions, connector: Connector) -> Self {
        let inherited = opts
            .base_env
            .iter()
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .collect();
        let m = Self {
            inner: Arc::new(Inner {
                opts,
                servers: Mutex::new(BTreeMap::new()),
                pending: Mutex::new(BTreeMap::new()),
                invalid: Mutex::new(BTreeMap::new()),
                file_errors: Mutex::new(Vec::new()),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                reload: tokio::sync::Mutex::new(()),
                inherited,
                catalog_gen: Arc::new(AtomicU64::new(0)),
                catalog: Mutex::new((0, Arc::from([]))),
                groups: Arc::default(),
                connector,
            }),
        };
        m.apply(m.load());
        if m.inner.opts.watch {
            crate::watch::spawn(m.clone());
        }
        m
    }

    pub(crate) fn options(&self) -> &ManagerOptions {
        &self.inner.opts
    }

    pub(crate) fn cancelled(&self) -> CancellationToken {
        self.inner.cancel.clone()
    }

    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    fn load(&self) -> config::McpConfig {
        let lookup = self.inner.opts.lookup.clone();
        config::load(&self.inner.opts.config_files, &|k| lookup(k))
    }

    /// Re-reads the config files and applies the difference: unchanged servers keep their
    /// connection, changed ones reconnect, removed ones stop. Returns whether anything
    /// changed.
    pub async fn reload(&self) -> bool {
        let _g = self.inner.reload.lock().await;
        if self.inner.cancel.is_cancelled() {
            return false;
        }
        let cfg = self.load();
        self.apply(cfg)
    }

    fn apply(&self, cfg: config::McpConfig) -> bool {
        let mut changed = false;
        {
            let mut fe = lock(&self.inner.file_errors);
            for e in &cfg.file_errors {
                if !fe.contains(e) {
                    tracing::warn!(path = %e.path.display(), error = %e.error, "MCP config file error");
                }
            }
            *fe = cfg.file_errors;
        }
        {
            let mut inv = lock(&self.inner.invalid);
            for (n, e) in &cfg.invalid {
                if inv.get(n) != Some(e) {
                    changed = true;
                    tracing::warn!(server = %n, error = %e.secrets.redact(&e.error), "MCP server config error");
                }
            }
            changed |= inv.keys().any(|k| !cfg.invalid.contains_key(k));
            *inv = cfg.invalid;
        }
        let mut servers = lock(&self.inner.servers);
        let mut pending = lock(&self.inner.pending);
        pending.retain(|n, p| {
            let keep = cfg.servers.get(n) == Some(&p.spec);
            if !keep {
                // The config moved on: drop the attempt and its warning on the kept server.
                p.cancel.cancel();
                if let Some(cur) = servers.get(n) {
                    cur.lock().warning = None;
                }
            }
            keep
        });
        let removed: Vec<String> = servers
            .keys()
            .filter(|n| !cfg.servers.contains_key(*n))
            .cloned()
            .collect();
        for n in removed {
            if let Some(s) = servers.remove(&n) {
                tracing::info!(server = %n, "MCP server removed; stopping it");
                s.cancel.cancel();
                changed = true;
            }
        }
        for (n, spec) in cfg.servers {
            let Some(cur) = servers.get(&n).cloned() else {
                changed = true;
                servers.insert(n, self.spawn_server(spec));
                continue;
            };
            if cur.spec == spec || pending.contains_key(&n) {
                continue;
            }
            changed = true;
            let ready = cur.lock().state == ServerState::Ready;
            let new = self.spawn_server(spec);
            if ready {
                // Keep the working connection until the new config connects.
                tracing::info!(server = %n, "MCP server config changed; connecting the new one");
                pending.insert(n.clone(), new.clone());
                self.inner.tasks.spawn(self.clone().hand_over(n, cur, new));
            } else {
                tracing::info!(server = %n, "MCP server config changed; replacing it");
                cur.cancel.cancel();
                servers.insert(n, new);
            }
        }
        if changed {
            self.catalog_changed();
        }
        changed
    }

    fn catalog_changed(&self) {
        self.inner.catalog_gen.fetch_add(1, Ordering::SeqCst);
    }

    fn spawn_server(&self, spec: config::ServerSpec) -> Arc<Server> {
        let secrets = secrets_of(&spec, &self.inner.inherited);
        let srv = Arc::new(Server::new(
            spec,
            secrets,
            self.inner.cancel.child_token(),
            self.inner.catalog_gen.clone(),
            self.inner.groups.clone(),
        ));
        self.inner.tasks.spawn(supervise(
            srv.clone(),
            self.inner.opts.clone(),
            self.inner.tasks.clone(),
            self.inner.connector.clone(),
        ));
        srv
    }

    /// Swaps `new` in for `old` once it is ready; while it fails, `old` keeps serving and
    /// carries a warning.
    async fn hand_over(self, name: String, old: Arc<Server>, new: Arc<Server>) {
        let mut rx = new.state_tx.subscribe();
        loop {
            let st = *rx.borrow_and_update();
            match st {
                ServerState::Ready => {
                    let mut servers = lock(&self.inner.servers);
                    let mut pending = lock(&self.inner.pending);
                    if pending.get(&name).is_some_and(|p| Arc::ptr_eq(p, &new)) {
                        pending.remove(&name);
                        if servers.get(&name).is_some_and(|s| Arc::ptr_eq(s, &old)) {
                            tracing::info!(server = %name, "MCP server reconnected with its new config");
                            servers.insert(name, new);
                            old.cancel.cancel();
                            self.catalog_changed();
                        } else {
                            new.cancel.cancel();
                        }
                    }
                    return;
                }
                ServerState::Failed => {
                    // Hold `pending` so a reload cannot drop `new` (and clear the
                    // warning) between the check and the write.
                    let pending = lock(&self.inner.pending);
                    if !pending.get(&name).is_some_and(|p| Arc::ptr_eq(p, &new)) {
                        return;
                    }
                    let err = new.lock().last_error.clone().unwrap_or_default();
                    old.lock().warning = Some(format!(
                        "the changed config has not connected yet ({err}); the previous connection is kept"
                    ));
                }
                ServerState::Stopped => return,
                _ => {}
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    fn server(&self, name: &str) -> Option<Arc<Server>> {
        lock(&self.inner.servers).get(name).cloned()
    }

    fn all(&self) -> Vec<Arc<Server>> {
        lock(&self.inner.servers).values().cloned().collect()
    }

    /// The catalogue, sorted by exposed name. Servers that are down keep their last tools.
    /// Built once per change of the servers, their states or tools; cheap otherwise.
    pub fn tools(&self) -> Arc<[CatalogTool]> {
        let generation = self.inner.catalog_gen.load(Ordering::SeqCst);
        let mut cache = lock(&self.inner.catalog);
        if cache.0 != generation {
            *cache = (generation, self.build_catalog().into());
        }
        cache.1.clone()
    }

    fn build_catalog(&self) -> Vec<CatalogTool> {
        let mut per: BTreeMap<(String, String), crate::ToolDef> = BTreeMap::new();
        for s in self.all() {
            let d = s.lock();
            if matches!(d.state, ServerState::Ready | ServerState::Restarting) {
                for t in &d.tools {
                    per.entry((s.spec.name.clone(), t.name.clone()))
                        .or_insert_with(|| t.clone());
                }
            }
        }
        let pairs: Vec<(String, String)> = per.keys().cloned().collect();
        names::assign(&pairs)
            .into_iter()
            .filter_map(|(exposed, key)| {
                per.remove(&key).map(|tool| CatalogTool {
                    server: key.0,
                    name: exposed,
                    tool,
                })
            })
            .collect()
    }

    /// Re-reads the config, then re-lists tools of every ready server (in parallel, each
    /// bounded by the connect timeout); failures keep the cached tools.
    pub async fn refresh(&self) {
        self.reload().await;
        let timeout = self.inner.opts.connect_timeout;
        let jobs = self.all().into_iter().filter_map(|s| {
            let peer = s.lock().peer.clone()?;
            Some(async move {
                match tokio::time::timeout(timeout, list_tools(&peer)).await {
                    Ok(Ok(tools)) => s.set_tools(tools),
                    Ok(Err(e)) => {
                        tracing::warn!(server = %s.spec.name, error = %s.redact(&e.to_string()), "MCP re-list failed")
                    }
                    Err(_) => tracing::warn!(server = %s.spec.name, "MCP re-list timed out"),
                }
            })
        });
        futures::future::join_all(jobs).await;
    }

    /// Calls a tool by its exposed name or the raw `server__tool`, with the default
    /// timeout. A hung call is cancelled at the timeout; other calls are unaffected.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
    ) -> Result<CallOutput, CallError> {
        let catalog = self.tools();
        let (server, tool) = match catalog.binary_search_by(|t| t.name.as_str().cmp(name)) {
            Ok(i) => (catalog[i].server.clone(), catalog[i].tool.name.clone()),
            Err(_) => {
                let (s, t) =
                    names::split(name).ok_or_else(|| CallError::InvalidName(name.to_owned()))?;
                (s.to_owned(), t.to_owned())
            }
        };
        let Some(srv) = self.server(&server) else {
            if lock(&self.inner.invalid).contains_key(&server) {
                return Err(CallError::InvalidConfig { server });
            }
            return Err(CallError::UnknownServer(server));
        };
        let (peer, state, last) = {
            let d = srv.lock();
            (d.peer.clone(), d.state, d.last_error.clone())
        };
        let Some(peer) = peer else {
            return Err(CallError::NotConnected {
                server,
                state,
                last_error: last,
            });
        };
        let timeout = self.inner.opts.call_timeout;
        let params = CallToolRequestParams::new(tool.clone()).with_arguments(arguments);
        match tokio::time::timeout(timeout, peer.call_tool(params)).await {
            Err(_) => Err(CallError::Timeout {
                server,
                tool,
                after: timeout,
            }),
            Ok(Err(e)) => {
                let transport = matches!(
                    e,
                    rmcp::ServiceError::TransportClosed | rmcp::ServiceError::TransportSend(_)
                );
                if transport {
                    srv.suspect.notify_one();
                }
                Err(CallError::Call {
                    detail: srv.redact(&format!(
                        "calling tool {tool:?} on MCP server {server:?}: {e}"
                    )),
                    server,
                    tool,
                })
            }
            Ok(Ok(res)) => {
                let v = serde_json::to_value(&res).unwrap_or(Value::Null);
                let (content, is_error) = result_from_json(&v);
                Ok(CallOutput { content, is_error })
            }
        }
    }

    /// Per-server status and config-file errors.
    pub fn status(&self) -> Status {
        let mut servers: Vec<ServerStatus> = self
            .all()
            .iter()
            .map(|s| {
                let d = s.lock();
                ServerStatus {
                    name: s.spec.name.clone(),
                    transport: Some(s.spec.transport),
                    state: d.state,
                    tools: d.tools.len(),
                    last_error: d.last_error.clone(),
                    warning: d.warning.clone(),
                    restarts: d.restarts,
                    config_file: s.spec.config_file.clone(),
                    pid: d.pid,
                }
            })
            .collect();
        servers.extend(lock(&self.inner.invalid).values().map(|e| ServerStatus {
            name: e.name.clone(),
            transport: e.transport,
            state: ServerState::Failed,
            tools: 0,
            last_error: Some(e.secrets.redact(&e.error)),
            warning: None,
            restarts: 0,
            config_file: e.config_file.clone(),
            pid: None,
        }));
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        let config_errors = lock(&self.inner.file_errors)
            .iter()
            .map(|e| ConfigFileError {
                path: e.path.clone(),
                error: e.error.to_string(),
            })
            .collect();
        Status {
            servers,
            config_errors,
        }
    }

    /// Stops every server (TERM, grace, KILL of each process group) and the watcher.
    /// Waits at most `limit`; whatever is left is killed.
    pub async fn shutdown(&self, limit: Duration) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout(limit, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("MCP servers did not stop in time; killing them");
        }
        self.kill_now();
    }

    /// Kills every server process group now (synchronous, last resort): those of serving
    /// servers, of new configs still connecting and of servers still stopping.
    pub fn kill_now(&self) {
        self.inner.cancel.cancel();
        for pid in lock(&self.inner.groups).iter() {
            let _ = signal_group(*pid, GroupSignal::Kill);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::fake::Script;

    fn write_config(path: &Path, command: &str) {
        std::fs::write(
            path,
            format!(r#"{{"mcpServers": {{"s": {{"command": "{command}"}}}}}}"#),
        )
        .unwrap();
    }

    fn status_of(m: &Manager) -> ServerStatus {
        m.status().servers.into_iter().next().unwrap()
    }

    /// Polls (on paused time) until `f` holds for the server's status.
    async fn until(m: &Manager, f: impl Fn(&ServerStatus) -> bool) -> ServerStatus {
        loop {
            let s = status_of(m);
            if f(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn call(m: &Manager) -> Result<String, CallError> {
        let out = m.call_tool("s__echo", Map::new()).await?;
        Ok(out.content[0].text.clone().unwrap_or_default())
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_config_takes_over_only_once_it_connects() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".mcp.json");
        write_config(&file, "a");
        let script = Script::new(&[("b", 2)]);
        let mut opts = crate::ManagerOptions::new(vec![file.clone()], dir.path().into());
        opts.backoff_min = Duration::from_millis(250);
        opts.watch = false;
        let m = Manager::start_with(opts, script.connector());
        until(&m, |s| s.state == ServerState::Ready).await;
        assert_eq!(call(&m).await.unwrap(), "hi");

        script.at(1000).await;
        write_config(&file, "b");
        assert!(m.reload().await);
        // The new config fails: the old connection keeps serving, with a warning.
        let s = until(&m, |s| s.warning.is_some()).await;
        assert_eq!(s.state, ServerState::Ready);
        assert_eq!(
            s.warning.as_deref(),
            Some(
                "the changed config has not connected yet (initialize failed: nope); the previous connection is kept"
            )
        );
        assert_eq!(call(&m).await.unwrap(), "hi");
        // Its third attempt connects and takes over: no warning, the new server's restarts.
        let s = until(&m, |s| s.restarts == 2).await;
        assert_eq!((s.state, s.warning), (ServerState::Ready, None));
        assert_eq!(
            script.attempts(),
            vec![
                ("a".to_owned(), 0),
                ("b".to_owned(), 1000),
                ("b".to_owned(), 1250),
                ("b".to_owned(), 1750),
            ]
        );
        assert_eq!(call(&m).await.unwrap(), "hi");
        // One server serves, nothing is pending.
        assert_eq!(lock(&m.inner.servers).len(), 1);
        assert!(lock(&m.inner.pending).is_empty());
        m.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_changed_config_of_a_server_that_is_down_replaces_it_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".mcp.json");
        write_config(&file, "a");
        let script = Script::new(&[("a", usize::MAX)]);
        let mut opts = crate::ManagerOptions::new(vec![file.clone()], dir.path().into());
        opts.watch = false;
        let m = Manager::start_with(opts, script.connector());
        until(&m, |s| s.state == ServerState::Failed).await;
        script.at(100).await;
        write_config(&file, "b");
        assert!(m.reload().await);
        assert!(lock(&m.inner.pending).is_empty());
        let s = until(&m, |s| s.state == ServerState::Ready).await;
        assert_eq!((s.restarts, s.warning), (0, None));
        assert_eq!(
            script.attempts(),
            vec![("a".to_owned(), 0), ("b".to_owned(), 100)]
        );
        // Unchanged config: nothing to apply.
        assert!(!m.reload().await);
        m.shutdown(Duration::from_secs(1)).await;
    }
}
