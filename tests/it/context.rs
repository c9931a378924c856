//! Context config (`GET /api/v0/context-config`) and `agentd ctx add|clear|list`, through the
//! real binary: Coder's conformance cases, the context store across restarts
//! and chats, Coder's upstream request, and hostile inputs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentd_tests::context::{ctx, skill, write};
use agentd_tests::display as s;
use agentd_tests::{Agentd, Options};
use serde_json::{Value, json};

const A: &str = "3f0e6a54-9b1c-4a8e-9d7e-2a1b8c3d4e5f";
const B: &str = "8d0f5a3e-4c1b-4f7a-9a2e-6b5c4d3e2f1a";
const NIL: &str = "00000000-0000-0000-0000-000000000000";

/// A temp dir holding HOME and the workdir, and a daemon started on them.
struct Ws {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
}

impl Ws {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        Self {
            _tmp: tmp,
            home,
            work,
        }
    }

    fn start(&self, env: &[(&str, &str)]) -> Agentd {
        self.start_opts(env, None)
    }

    fn start_opts(&self, env: &[(&str, &str)], state: Option<(&Path, &Path)>) -> Agentd {
        let mut e: Vec<(String, String)> = vec![("HOME".into(), self.home.display().to_string())];
        e.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Agentd::start_with(Options {
            env: e,
            workdir: Some(self.work.clone()),
            state_dir: state.map(|s| s.0.to_path_buf()),
            socket: state.map(|s| s.1.to_path_buf()),
            ..Options::default()
        })
    }
}

async fn config(d: &Agentd, chat: Option<&str>) -> Value {
    let mut req = d.client().get(d.url("/api/v0/context-config"));
    if let Some(c) = chat {
        req = req.header("Coder-Chat-Id", c);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn file_part(path: &Path, content: &str, source: &str) -> Value {
    json!({"type": "context-file", "context_file_path": s(path), "context_file_content": content,
           "skill_name": "", "context_source": source})
}

fn skill_part(dir: &Path, name: &str, desc: &str, meta: &str, source: &str) -> Value {
    json!({"type": "skill", "context_file_path": "", "skill_name": name, "skill_description": desc,
           "skill_dir": s(dir), "context_file_skill_meta_file": meta, "context_source": source})
}

#[tokio::test]
async fn defaults_parts_and_paths_shapes() {
    let ws = Ws::new();
    // Nothing on disk: `parts` is an empty array, never null.
    let d = ws.start(&[]);
    let v = config(&d, None).await;
    assert_eq!(v, json!({"parts": [], "skipped": []}));
    let (st, v) = d.get_json("/api/v0/context-config?format=paths").await;
    assert_eq!(st, 200);
    assert_eq!(
        v,
        json!({
            "instructions_dirs": [s(&ws.home.join(".coder"))],
            "instructions_file": "AGENTS.md",
            "skills_dirs": [s(&ws.work.join(".agents/skills"))],
            "skill_meta_file": "SKILL.md",
            "mcp_config_files": [s(&ws.work.join(".mcp.json"))],
        })
    );
    let (st, v) = d.get_json("/api/v0/context-config?format=xml").await;
    assert_eq!(
        (st, v),
        (
            400,
            json!({"message": "Invalid format.", "detail": "format must be \"parts\" or \"paths\", got \"xml\""})
        )
    );

    // Files appearing after start are found on the next request (resolved per request).
    write(&ws.home.join(".coder/AGENTS.md"), "Always run make lint.");
    write(&ws.work.join("AGENTS.md"), "Project rules");
    skill(
        &ws.work.join(".agents/skills"),
        "repo-helper",
        "repo-helper",
        "Repository instructions",
    );
    let v = config(&d, None).await;
    assert_eq!(
        v,
        json!({"parts": [
            file_part(&ws.home.join(".coder/AGENTS.md"), "Always run make lint.", "discovered"),
            file_part(&ws.work.join("AGENTS.md"), "Project rules", "discovered"),
            skill_part(&ws.work.join(".agents/skills/repo-helper"), "repo-helper",
                       "Repository instructions", "SKILL.md", "discovered"),
        ], "skipped": []})
    );
}

#[tokio::test]
async fn custom_env_vars_legacy_names_and_comma_lists() {
    let ws = Ws::new();
    let (a, b) = custom_instruction_and_skill_dirs(&ws);
    let dirs = format!(" {} , ~/b,{} ", s(&a), s(&a));
    let d = ws.start(&[
        ("CODER_AGENT_EXP_INSTRUCTIONS_DIRS", &dirs),
        ("CODER_AGENT_EXP_INSTRUCTIONS_DIR", "/legacy-loses"),
        ("CODER_AGENT_EXP_INSTRUCTIONS_FILE", "  CLAUDE.md  "),
        ("CODER_AGENT_EXP_SKILLS_DIR", "s1,s2"),
        ("CODER_AGENT_EXP_SKILL_META_FILE", "   "),
        ("CODER_AGENT_EXP_MCP_CONFIG_FILE", "/etc/mcp.json,rel.json"),
    ]);
    let (_, paths) = d.get_json("/api/v0/context-config?format=paths").await;
    assert_eq!(
        paths,
        json!({
            "instructions_dirs": [s(&a), s(&b), s(&a)],
            "instructions_file": "CLAUDE.md",
            "skills_dirs": [s(&ws.work.join("s1")), s(&ws.work.join("s2"))],
            "skill_meta_file": "SKILL.md",
            "mcp_config_files": ["/etc/mcp.json", s(&ws.work.join("rel.json"))],
        })
    );
    let v = config(&d, None).await;
    assert_eq!(
        v["parts"],
        json!([
            file_part(&a.join("claude.md"), "from a", "discovered"),
            file_part(&b.join("CLAUDE.md"), "from b", "discovered"),
            file_part(&ws.work.join("Claude.MD"), "from work", "discovered"),
            skill_part(
                &ws.work.join("s1/one"),
                "one",
                "first",
                "SKILL.md",
                "discovered"
            ),
            skill_part(
                &ws.work.join("s2/two"),
                "two",
                "second dir",
                "SKILL.md",
                "discovered"
            ),
        ])
    );
    assert_eq!(
        v["skipped"],
        json!([
            {"path": s(&ws.work.join("s1/meta-only")), "reason": "no SKILL.md"},
            {"path": s(&ws.work.join("s2/one")),
             "reason": format!("duplicate skill name \"one\": {} comes first", s(&ws.work.join("s1/one")))},
        ])
    );
    a_custom_meta_file_name(&ws).await;
    children_never_see_the_exp_variables(&d).await;
}

/// Instruction dirs `~/a` (a lowercase `claude.md`, and an AGENTS.md that the custom file
/// name ignores) and `~/b`, a mixed-case CLAUDE.md in the workdir, and skills dirs `s1`, `s2`
/// (a duplicate name, a META.md-only skill). Returns (a, b).
fn custom_instruction_and_skill_dirs(ws: &Ws) -> (PathBuf, PathBuf) {
    let (a, b) = (ws.home.join("a"), ws.home.join("b"));
    write(&a.join("claude.md"), "from a");
    write(&b.join("CLAUDE.md"), "from b");
    write(&a.join("AGENTS.md"), "wrong name: ignored");
    write(&ws.work.join("Claude.MD"), "from work");
    skill(&ws.work.join("s1"), "one", "one", "first");
    skill(&ws.work.join("s2"), "one", "one", "second wins never");
    skill(&ws.work.join("s2"), "two", "two", "second dir");
    write(
        &ws.work.join("s1/meta-only/META.md"),
        "---\nname: meta-only\ndescription: custom meta\n---\n",
    );
    (a, b)
}

/// A custom meta file name (on a second daemon).
async fn a_custom_meta_file_name(ws: &Ws) {
    // Custom meta file name.
    let d2 = ws.start(&[
        ("CODER_AGENT_EXP_SKILLS_DIRS", "s1"),
        ("CODER_AGENT_EXP_SKILL_META_FILE", "META.md"),
    ]);
    let v = config(&d2, None).await;
    assert_eq!(
        v["parts"],
        json!([skill_part(
            &ws.work.join("s1/meta-only"),
            "meta-only",
            "custom meta",
            "META.md",
            "discovered"
        )])
    );
}

/// The daemon's children never see the CODER_AGENT_EXP_* values.
async fn children_never_see_the_exp_variables(d: &Agentd) {
    // The daemon's children never see the CODER_AGENT_EXP_* values.
    let (st, v) = d
        .post_json("/api/v0/processes/start", &json!({"command": "env"}))
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, out) = d
        .get_json(&format!(
            "/api/v0/processes/{}/output?wait=true",
            v["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!((st, &out["exit_code"]), (200, &json!(0)), "{out}");
    let env = out["output"].as_str().unwrap();
    assert!(env.contains("HOME="), "{env}");
    assert!(!env.contains("CODER_AGENT_EXP_"), "{env}");
}

#[tokio::test]
async fn sanitising_truncation_and_skill_rules() {
    let ws = Ws::new();
    let sk = hostile_instructions_and_skills(&ws);

    let d = ws.start(&[]);
    let v = config(&d, None).await;
    let parts = v["parts"].as_array().unwrap();
    assert_eq!(
        parts[0]["context_file_content"].as_str().unwrap().len(),
        64 * 1024
    );
    assert_eq!(parts[0]["context_file_truncated"], true);
    assert_eq!(
        parts[1],
        file_part(
            &ws.work.join("AGENTS.md"),
            "visible\ncontent\u{200C}\nend",
            "discovered"
        )
    );
    assert_eq!(
        parts[2..].to_vec(),
        vec![
            skill_part(&sk.join("good"), "good", "ok", "SKILL.md", "discovered"),
            skill_part(
                &sk.join("linked"),
                "linked",
                "via link",
                "SKILL.md",
                "discovered"
            ),
            skill_part(
                &sk.join("quoted"),
                "quoted",
                "say \"hi\"",
                "SKILL.md",
                "discovered"
            ),
        ]
    );
    let real_outside = std::fs::canonicalize(ws.work.join("outside-skill")).unwrap();
    assert_eq!(
        skipped_pairs(&v),
        vec![
            (s(&sk.join("Upper")), "invalid skill name \"Upper\": must match ^[a-z0-9]+(-[a-z0-9]+)*$".into()),
            (s(&sk.join("broken")), "invalid front matter in SKILL.md: missing opening frontmatter delimiter".into()),
            (s(&sk.join("mismatch")), "front matter name \"other-name\" does not match the directory name \"mismatch\"".into()),
            (s(&sk.join("numeric")), "invalid front matter in SKILL.md: frontmatter field \"description\" must be a string".into()),
            (s(&sk.join("outside-skill")), format!("symlink points outside the skills directory (to {})", real_outside.display())),
            (s(&sk.join("store")), "no SKILL.md".into()),
        ]
    );
    skipped_skill_is_logged_once(&d, &sk.join("mismatch")).await;
}

/// A workdir AGENTS.md with CRLF, a comment and zero-width characters, an oversized home
/// AGENTS.md, and a skills directory of good, invalid and symlinked skills; returns the
/// skills directory.
fn hostile_instructions_and_skills(ws: &Ws) -> PathBuf {
    write(
        &ws.work.join("AGENTS.md"),
        "visible\r\n<!-- hidden\r\nmulti -->content\u{200B}\u{200C}\rend  \n",
    );
    write(
        &ws.home.join(".coder/AGENTS.md"),
        "a".repeat(64 * 1024 + 100),
    );
    let sk = ws.work.join(".agents/skills");
    skill(&sk, "good", "good", "ok");
    skill(&sk, "mismatch", "other-name", "x");
    skill(&sk, "Upper", "Upper", "x");
    write(&sk.join("broken/SKILL.md"), "no front matter here");
    write(
        &sk.join("numeric/SKILL.md"),
        "---\nname: numeric\ndescription: 42\n---\n",
    );
    write(
        &sk.join("quoted/SKILL.md"),
        "---\nname: 'quoted'\ndescription: \"say \\\"hi\\\"\"\n---\n",
    );
    std::fs::create_dir_all(ws.work.join("outside-skill")).unwrap();
    skill(&ws.work, "outside-skill", "outside-skill", "x");
    std::os::unix::fs::symlink(ws.work.join("outside-skill"), sk.join("outside-skill")).unwrap();
    skill(&sk.join("store"), "linked", "linked", "via link");
    std::os::unix::fs::symlink(sk.join("store/linked"), sk.join("linked")).unwrap();
    sk
}

/// `(path, reason)` of each entry of a context-config answer's `skipped`.
fn skipped_pairs(v: &Value) -> Vec<(String, String)> {
    v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["path"].as_str().unwrap().to_owned(),
                s["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The skipped skill at `path` is logged once (as a warning), even after another request.
async fn skipped_skill_is_logged_once(d: &Agentd, path: &Path) {
    let line = d
        .logs
        .wait_for(Duration::from_secs(5), |l| {
            l["message"] == "context: skipped" && l["path"] == s(path)
        })
        .unwrap();
    assert_eq!(line["level"], "warn");
    config(d, None).await;
    d.logs_settled().await;
    let n = d
        .logs
        .json()
        .iter()
        .filter(|l| l["message"] == "context: skipped" && l["path"] == s(path))
        .count();
    assert_eq!(n, 1);
}

/// The parts `ctx_cli_end_to_end_with_restart_and_chat_scoping` expects per scope.
struct CliWant {
    discovered: Value,
    workspace: Vec<Value>,
    chat_a: Value,
}

impl CliWant {
    /// No chat: discovered + workspace-wide parts; chat A: plus its own part, tagged "chat";
    /// a chat with nothing of its own: only the shared parts.
    async fn check(&self, d: &Agentd) {
        let mut want = vec![self.discovered.clone()];
        want.extend(self.workspace.clone());
        assert_eq!(config(d, None).await["parts"], json!(want));
        let mut want_a = want.clone();
        want_a.push(self.chat_a.clone());
        assert_eq!(config(d, Some(A)).await["parts"], json!(want_a));
        assert_eq!(
            config(d, Some("11111111-2222-4333-8444-555555555555")).await["parts"],
            json!(want)
        );
    }
}

#[tokio::test]
async fn ctx_cli_end_to_end_with_restart_and_chat_scoping() {
    let ws = Ws::new();
    let tmp = tempfile::tempdir().unwrap();
    let (state, sock) = (tmp.path().join("state"), tmp.path().join("a.sock"));
    let (src, other) = (tmp.path().join("extra"), tmp.path().join("other"));
    write(&src.join("AGENTS.md"), "Extra rules <!-- x -->");
    skill(
        &src.join(".agents/skills"),
        "deploy",
        "deploy",
        "Deploys things",
    );
    skill(&src.join("skills"), "lint", "lint", "Lints");
    write(&other.join("agents.md"), "Chat B only");
    write(&ws.work.join("AGENTS.md"), "Workdir rules");

    let mut d = ws.start_opts(&[], Some((&state, &sock)));
    let sock_s = s(&sock);
    let env = [("AGENTD_SOCKET", sock_s.as_str())];
    ctx_add_for_workspace_and_chats(&env, tmp.path(), &src, &other).await;
    let want = CliWant {
        discovered: file_part(&ws.work.join("AGENTS.md"), "Workdir rules", "discovered"),
        workspace: vec![
            file_part(&src.join("AGENTS.md"), "Extra rules", "workspace"),
            skill_part(
                &src.join(".agents/skills/deploy"),
                "deploy",
                "Deploys things",
                "SKILL.md",
                "workspace",
            ),
            skill_part(
                &src.join("skills/lint"),
                "lint",
                "Lints",
                "SKILL.md",
                "workspace",
            ),
        ],
        chat_a: file_part(&other.join("agents.md"), "Chat B only", "chat"),
    };
    want.check(&d).await;
    ctx_list_text_and_json(&env, tmp.path(), &src, &other).await;

    // A restart (SIGTERM, new daemon on the same state dir) keeps everything.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        d.wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    drop(d);
    let d = ws.start_opts(&[], Some((&state, &sock)));
    want.check(&d).await;
    assert!(
        d.metrics_text()
            .await
            .contains("agentd_context_parts_stored 5\n")
    );
    ctx_clear_chat_then_workspace(&d, &env, tmp.path(), &other, &want.discovered).await;
}

/// Workspace-wide add (no --chat, no CODER_CHAT_ID) from the cwd; chat A via CODER_CHAT_ID;
/// chat B via --chat; re-adding is deduplicated by path (replaced, not duplicated).
async fn ctx_add_for_workspace_and_chats(
    env: &[(&str, &str); 1],
    cwd: &Path,
    src: &Path,
    other: &Path,
) {
    let r = ctx(&["add"], env, src).await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (0, "Added 3 context part(s) to all chats\n", "")
    );
    let r = ctx(
        &["add", "--dir", &s(other)],
        &[env[0], ("CODER_CHAT_ID", A)],
        cwd,
    )
    .await;
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, format!("Added 1 context part(s) to chat {A}\n").as_str())
    );
    let r = ctx(
        &["add", "--dir", "other", "--chat", B, "--socket", env[0].1],
        &[],
        cwd,
    )
    .await;
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, format!("Added 1 context part(s) to chat {B}\n").as_str())
    );
    let r = ctx(&["add", "--dir", &s(src)], env, cwd).await;
    assert_eq!(r.code, 0, "{r:?}");
}

/// `list` as text (every scope) and as JSON (one chat).
async fn ctx_list_text_and_json(env: &[(&str, &str); 1], cwd: &Path, src: &Path, other: &Path) {
    let r = ctx(&["list"], env, cwd).await;
    assert_eq!(r.code, 0);
    let (first, second) = if A < B { (A, B) } else { (B, A) };
    assert_eq!(
        r.stdout,
        format!(
            "all chats:\n  context-file  {} (11 bytes)\n  skill         deploy ({}) - Deploys things\n  skill         lint ({}) - Lints\n\
             chat {first}:\n  context-file  {} (11 bytes)\nchat {second}:\n  context-file  {} (11 bytes)\n",
            s(&src.join("AGENTS.md")),
            s(&src.join(".agents/skills/deploy")),
            s(&src.join("skills/lint")),
            s(&other.join("agents.md")),
            s(&other.join("agents.md")),
        )
    );
    let r = ctx(&["list", "--json", "--chat", A], env, cwd).await;
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v,
        json!({"scopes": [{"chat_id": A, "parts": [{"type": "context-file",
            "context_file_path": s(&other.join("agents.md")), "context_file_content": "Chat B only", "skill_name": ""}]}]})
    );
}

/// `clear`: chat A only (twice: the second finds nothing), then the workspace-wide parts.
async fn ctx_clear_chat_then_workspace(
    d: &Agentd,
    env: &[(&str, &str); 1],
    cwd: &Path,
    other: &Path,
    discovered: &Value,
) {
    let r = ctx(&["clear", "--chat", A], env, cwd).await;
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            format!("Cleared 1 context part(s) from chat {A}\n").as_str()
        )
    );
    let r = ctx(&["clear", "--chat", A], env, cwd).await;
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            format!("No context parts to clear for chat {A}\n").as_str()
        )
    );
    assert_eq!(
        config(d, Some(A)).await["parts"].as_array().unwrap().len(),
        4
    );
    let r = ctx(&["clear"], env, cwd).await;
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "Cleared 3 context part(s) from all chats\n")
    );
    assert_eq!(config(d, Some(A)).await["parts"], json!([discovered]));
    let r = ctx(&["list", "--chat", B], env, cwd).await;
    assert_eq!(
        r.stdout,
        format!(
            "chat {B}:\n  context-file  {} (11 bytes)\n",
            s(&other.join("agents.md"))
        )
    );
}

#[tokio::test]
async fn store_routes_limits_and_corrupt_file() {
    let ws = Ws::new();
    let tmp = tempfile::tempdir().unwrap();
    let (state, sock) = (tmp.path().join("state"), tmp.path().join("b.sock"));
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("context-store.json"),
        b"{\"version\":1,\"scopes\":[tru",
    )
    .unwrap();
    let d = ws.start_opts(&[], Some((&state, &sock)));
    let warn = d
        .logs
        .wait_for(Duration::from_secs(5), |l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("context store file is unreadable"))
        })
        .unwrap();
    let moved = PathBuf::from(warn["moved_to"].as_str().unwrap());
    assert_eq!(
        std::fs::read(&moved).unwrap(),
        b"{\"version\":1,\"scopes\":[tru"
    );
    assert!(!state.join("context-store.json").exists());

    // Over TCP too, with Coder's limits and messages.
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"type": "context-file", "context_file_path": format!("/f{i}"), "context_file_content": "x"}))
        .collect();
    for (body, want) in [
        (
            json!({"parts": many}),
            json!({"message": "Too many context parts: 101 (at most 100 per request)."}),
        ),
        (
            json!({"parts": [{"type": "text", "text": "hi"}, {"type": "context-file", "context_file_path": "/e", "context_file_content": " \u{200B} "}]}),
            json!({"message": "No context-file or skill parts provided."}),
        ),
        (
            json!({"chat_id": "nope", "parts": []}),
            json!({"message": "Invalid chat ID.", "detail": "\"nope\" is not a UUID"}),
        ),
    ] {
        assert_eq!(
            d.post_json("/api/v0/context-store", &body).await,
            (400, want)
        );
    }
    // Content is sanitised, then capped at 64 KiB on a UTF-8 boundary.
    let big = format!("{}{}", "\u{200B}".repeat(100), "€".repeat(30_000));
    let (st, v) = d
        .post_json(
            "/api/v0/context-store",
            &json!({"chat_id": NIL, "parts": [{"type": "context-file", "context_file_path": "/big", "context_file_content": big}]}),
        )
        .await;
    assert_eq!(
        (st, v),
        (
            200,
            json!({"chat_id": NIL, "count": 1, "replaced": 0, "total": 1})
        )
    );
    let (_, v) = d.get_json("/api/v0/context-store").await;
    let c = v["scopes"][0]["parts"][0]["context_file_content"]
        .as_str()
        .unwrap();
    assert_eq!((c.len(), c.chars().all(|ch| ch == '€')), (65535, true));
    assert_eq!(v["scopes"][0]["parts"][0]["context_file_truncated"], true);
    // The chat header picks the scope when the body names none.
    let res = d
        .client()
        .post(d.url("/api/v0/context-store"))
        .header("Coder-Chat-Id", B)
        .json(&json!({"parts": [{"type": "skill", "skill_name": "x", "skill_dir": "/x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"chat_id": B, "count": 1, "replaced": 0, "total": 1})
    );
    // The file on disk is complete JSON after every acknowledged write.
    let on_disk: Value =
        serde_json::from_slice(&std::fs::read(state.join("context-store.json")).unwrap()).unwrap();
    assert_eq!(on_disk["scopes"].as_array().unwrap().len(), 2);
}

/// A temp dir with `full/AGENTS.md`, an `empty` dir and a `file`, and a socket path
/// nobody listens on.
fn ctx_error_dirs() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dead = tmp.path().join("nobody.sock");
    write(&tmp.path().join("full/AGENTS.md"), "x");
    std::fs::create_dir_all(tmp.path().join("empty")).unwrap();
    write(&tmp.path().join("file"), "x");
    (tmp, dead)
}

#[tokio::test]
async fn ctx_cli_errors_for_directories_and_chat_ids() {
    let (tmp, dead) = ctx_error_dirs();
    let env = [("AGENTD_SOCKET", dead.to_str().unwrap())];
    let r = ctx(&["add", "--dir", "missing"], &env, tmp.path()).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "agentd: cannot read directory {}: No such file or directory (os error 2)\n",
            s(&tmp.path().join("missing"))
        )
    );
    let r = ctx(&["add", "--dir", "file"], &env, tmp.path()).await;
    assert_eq!(
        (r.code, r.stderr.clone()),
        (
            1,
            format!(
                "agentd: {} is not a directory\n",
                s(&tmp.path().join("file"))
            )
        )
    );
    let r = ctx(&["add", "--dir", "empty"], &env, tmp.path()).await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.clone()),
        (
            0,
            "",
            format!(
                "No context files or skills found in {}\n",
                s(&tmp.path().join("empty"))
            )
        )
    );
    for args in [
        vec!["add", "--chat", "not-a-uuid"],
        vec!["clear", "--chat", "not-a-uuid"],
        vec!["list", "--chat", "not-a-uuid"],
    ] {
        let r = ctx(&args, &env, &tmp.path().join("full")).await;
        assert_eq!(
            (r.code, r.stderr.as_str()),
            (
                1,
                "agentd: invalid chat ID \"not-a-uuid\": it must be a UUID (from --chat or CODER_CHAT_ID)\n"
            ),
            "{args:?}"
        );
    }
}

#[tokio::test]
async fn ctx_cli_errors_for_the_socket_and_upstream() {
    let (tmp, dead) = ctx_error_dirs();
    let env = [("AGENTD_SOCKET", dead.to_str().unwrap())];
    // Daemon not running: the socket tried and how to start it.
    let r = ctx(&["add"], &env, &tmp.path().join("full")).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "agentd: agentd is not running: cannot connect to {d} (No such file or directory (os error 2)).\n\
             Start it with `agentd serve` (add `--socket {d}` if it is not the default), or point --socket / AGENTD_SOCKET at the running daemon's socket.\n",
            d = s(&dead)
        )
    );
    // Default socket: $XDG_RUNTIME_DIR/agentd.sock, as `serve` picks it.
    let r = ctx(
        &["list"],
        &[("XDG_RUNTIME_DIR", tmp.path().to_str().unwrap())],
        tmp.path(),
    )
    .await;
    assert!(
        r.stderr.contains(&format!(
            "cannot connect to {}",
            s(&tmp.path().join("agentd.sock"))
        )),
        "{r:?}"
    );
    // --upstream without CODER_AGENT_URL/TOKEN.
    let r = ctx(&["clear", "--upstream"], &env, tmp.path()).await;
    assert_eq!(
        (r.code, r.stderr.as_str()),
        (
            1,
            "agentd: --upstream needs CODER_AGENT_URL and CODER_AGENT_TOKEN to be set\n"
        )
    );
}

/// A one-shot recording HTTP server: answers each request with `status`/`body` and sends
/// what it received (head, body) on the channel.
async fn recording_server(
    answers: Vec<(u16, &'static str)>,
) -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        for (status, body) in answers {
            let (mut c, _) = l.accept().await.unwrap();
            let mut buf = Vec::new();
            let (head, rest) = loop {
                let mut chunk = [0u8; 4096];
                let n = c.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break (
                        String::from_utf8_lossy(&buf[..i]).into_owned(),
                        buf[i + 4..].to_vec(),
                    );
                }
            };
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body_in = rest;
            while body_in.len() < len {
                let mut chunk = [0u8; 4096];
                let n = c.read(&mut chunk).await.unwrap();
                body_in.extend_from_slice(&chunk[..n]);
            }
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            c.write_all(resp.as_bytes()).await.unwrap();
            let _ = c.shutdown().await;
            tx.send((head, String::from_utf8(body_in).unwrap()))
                .unwrap();
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn upstream_mode_sends_coders_request() {
    let ws = Ws::new();
    let d = ws.start(&[]);
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("AGENTS.md"), "Up rules");
    skill(&tmp.path().join("skills"), "up", "up", "Upstream skill");
    let (addr, mut rx) = recording_server(vec![
        (
            200,
            "{\"chat_id\":\"5f0c5b6e-1111-4222-8333-444455556666\",\"count\":2}",
        ),
        (
            409,
            "{\"message\":\"Cannot modify context: this chat is no longer active.\"}",
        ),
        (
            200,
            "{\"chat_id\":\"00000000-0000-0000-0000-000000000000\"}",
        ),
    ])
    .await;
    let url = format!("http://{addr}/");
    let sock = s(&d.socket);
    let env = [
        ("AGENTD_SOCKET", sock.as_str()),
        ("CODER_AGENT_URL", url.as_str()),
        ("CODER_AGENT_TOKEN", "agent-tok"),
    ];
    let r = ctx(&["add"], &env, tmp.path()).await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (
            0,
            "Added 2 context part(s) to all chats\nCoder: added 2 context part(s) to chat 5f0c5b6e-1111-4222-8333-444455556666\n",
            ""
        )
    );
    the_add_request_is_coders(&mut rx, tmp.path()).await;
    upstream_error_then_clear(&env, tmp.path(), &mut rx).await;
}

/// The first recorded request is Coder's chat-context POST: its path, session token,
/// content type and body (the workspace-wide parts of `dir`).
async fn the_add_request_is_coders(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
    dir: &Path,
) {
    let (head, body) = rx.recv().await.unwrap();
    assert!(
        head.starts_with("POST /api/v2/workspaceagents/me/experimental/chat-context HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ncoder-session-token: agent-tok"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("\r\ncontent-type: application/json"),
        "{head}"
    );
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"chat_id": NIL, "parts": [
            {"type": "context-file", "context_file_path": s(&dir.join("AGENTS.md")),
             "context_file_content": "Up rules", "skill_name": ""},
            {"type": "skill", "context_file_path": "", "skill_name": "up", "skill_description": "Upstream skill",
             "skill_dir": s(&dir.join("skills/up")), "context_file_skill_meta_file": "SKILL.md"},
        ]})
    );
}

/// An upstream error is printed and fails the command (the local add still happened);
/// clear sends a DELETE with Coder's body.
async fn upstream_error_then_clear(
    env: &[(&str, &str); 3],
    dir: &Path,
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
) {
    // An upstream error is printed and fails the command; the local add still happened.
    let r = ctx(&["add", "--chat", A], env, dir).await;
    assert_eq!(
        (r.code, r.stdout.as_str(), r.stderr.as_str()),
        (
            1,
            format!("Added 2 context part(s) to chat {A}\n").as_str(),
            "agentd: Coder answered 409: Cannot modify context: this chat is no longer active.\n"
        )
    );
    let (_, body) = rx.recv().await.unwrap();
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["chat_id"], A);
    // clear: DELETE with Coder's body.
    let r = ctx(&["clear"], env, dir).await;
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (
            0,
            "Cleared 2 context part(s) from all chats\nCoder: No active chats to clear.\n"
        )
    );
    let (head, body) = rx.recv().await.unwrap();
    assert!(
        head.starts_with(
            "DELETE /api/v2/workspaceagents/me/experimental/chat-context HTTP/1.1\r\n"
        ),
        "{head}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"chat_id": NIL})
    );
}

#[tokio::test]
async fn upstream_https_is_attempted_and_bad_schemes_are_refused() {
    let d = Agentd::start();
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("AGENTS.md"), "rules");
    let sock = s(&d.socket);
    let port = agentd_tests::free_port();
    let url = format!("https://127.0.0.1:{port}");
    let env = [
        ("AGENTD_SOCKET", sock.as_str()),
        ("CODER_AGENT_URL", url.as_str()),
        ("CODER_AGENT_TOKEN", "agent-tok"),
    ];
    let r = ctx(&["add"], &env, tmp.path()).await;
    // The local add succeeds; the upstream request goes out over TLS and fails to connect.
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.stdout, "Added 1 context part(s) to all chats\n");
    let want = format!(
        "agentd: Coder: upstream https://127.0.0.1:{port}/api/v2/workspaceagents/me/experimental/chat-context: error sending request"
    );
    assert!(r.stderr.starts_with(&want), "{}", r.stderr);
    assert!(r.stderr.contains("Connect"), "{}", r.stderr);

    let env = [
        ("AGENTD_SOCKET", sock.as_str()),
        ("CODER_AGENT_URL", "ftp://coder.example"),
        ("CODER_AGENT_TOKEN", "agent-tok"),
    ];
    let r = ctx(&["add"], &env, tmp.path()).await;
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        "agentd: upstream ftp://coder.example: CODER_AGENT_URL must start with http:// or https://\n"
    );
}

#[tokio::test]
async fn hostile_inputs() {
    let ws = Ws::new();
    let sk = hostile_context_tree(&ws);
    let root = nix::unistd::geteuid().is_root();

    let d = ws.start(&[]);
    let t0 = Instant::now();
    let v = config(&d, None).await;
    let took = t0.elapsed();
    let parts = v["parts"].as_array().unwrap();
    assert_eq!(
        parts[0]["context_file_content"],
        "bin\u{0}ary\u{FFFD}\u{FFFD} tail"
    );
    assert_eq!(
        parts[1]["context_file_content"].as_str().unwrap().len(),
        64 * 1024
    );
    assert_eq!(parts[1]["context_file_truncated"], true);
    let skills = parts.iter().filter(|p| p["type"] == "skill").count();
    assert_eq!(skills, 10_000 + usize::from(root));
    let skipped: Vec<(&str, &str)> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["path"].as_str().unwrap(), s["reason"].as_str().unwrap()))
        .collect();
    let p = |n: &str| s(&sk.join(n));
    let (loop_p, fifo_p, locked_p, meta_p) = (
        p("zz-loop"),
        p("zz-fifo"),
        p("zz-locked"),
        p("zz-meta-loop"),
    );
    let mut want = vec![
        (fifo_p.as_str(), "SKILL.md is not a regular file"),
        (
            loop_p.as_str(),
            "cannot resolve symlink: Too many levels of symbolic links (os error 40)",
        ),
        (
            meta_p.as_str(),
            "cannot read SKILL.md: Too many levels of symbolic links (os error 40)",
        ),
    ];
    if !root {
        want.insert(
            1,
            (
                locked_p.as_str(),
                "cannot read SKILL.md: Permission denied (os error 13)",
            ),
        );
    }
    assert_eq!(skipped, want);
    // Generous bound for a debug build on a shared 2-core machine.
    assert!(took < Duration::from_secs(20), "{took:?}");
    more_than_100_parts_are_refused_and_nothing_stored(&d, &ws, root).await;
}

/// Binary content with NULs and invalid UTF-8, a 10 MB workdir AGENTS.md, 10 000 skill dirs,
/// symlink loops, a FIFO and an unreadable SKILL.md; returns the skills directory.
fn hostile_context_tree(ws: &Ws) -> PathBuf {
    let coder = ws.home.join(".coder");
    // Binary content with NULs and invalid UTF-8.
    write(
        &coder.join("AGENTS.md"),
        b"bin\x00ary\xff\xfe tail".as_slice(),
    );
    // 10 MB workdir AGENTS.md.
    write(&ws.work.join("AGENTS.md"), "0123456789".repeat(1_000_000));
    // 10 000 skill dirs.
    let sk = ws.work.join(".agents/skills");
    for i in 0..10_000 {
        let name = format!("s{i:05}");
        write(
            &sk.join(&name).join("SKILL.md"),
            format!("---\nname: {name}\n---\n"),
        );
    }
    // Symlink loops: a self-referencing skill link and a skill whose SKILL.md loops.
    std::os::unix::fs::symlink(sk.join("zz-loop"), sk.join("zz-loop")).unwrap();
    std::fs::create_dir_all(sk.join("zz-meta-loop")).unwrap();
    std::os::unix::fs::symlink(
        sk.join("zz-meta-loop/SKILL.md"),
        sk.join("zz-meta-loop/SKILL.md"),
    )
    .unwrap();
    // A FIFO named like a skill meta file must not hang discovery.
    std::fs::create_dir_all(sk.join("zz-fifo")).unwrap();
    nix::unistd::mkfifo(
        &sk.join("zz-fifo/SKILL.md"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // An unreadable SKILL.md (mode 000). Root reads it anyway; say which case we are in.
    write(
        &sk.join("zz-locked/SKILL.md"),
        "---\nname: zz-locked\n---\n",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        sk.join("zz-locked/SKILL.md"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    sk
}

/// `ctx add` of the same hostile directory: more than 100 parts is refused by the daemon
/// with Coder's message, and nothing is stored.
async fn more_than_100_parts_are_refused_and_nothing_stored(d: &Agentd, ws: &Ws, root: bool) {
    let r = ctx(
        &["add", "--dir", &s(&ws.work)],
        &[("AGENTD_SOCKET", &s(&d.socket))],
        &ws.work,
    )
    .await;
    assert_eq!(r.code, 1);
    let want = format!(
        "agentd: Too many context parts: {} (at most 100 per request).\n",
        10_001 + usize::from(root)
    );
    assert!(
        r.stderr.ends_with(&want),
        "{}",
        &r.stderr[r.stderr.len().saturating_sub(300)..]
    );
    let (_, v) = d.get_json("/api/v0/context-store").await;
    assert_eq!(v, json!({"scopes": []}));
}
