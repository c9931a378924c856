//! The command-line tools beside `serve`: `doctor`, `completions`, `man`.

use agentd_tests::agentd_command;
use serde_json::{Value, json};

fn doctor(args: &[&str]) -> (i32, Value) {
    let out = agentd_command()
        .arg("doctor")
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), v)
}

fn check<'a>(v: &'a Value, name: &str) -> Vec<&'a Value> {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == name)
        .collect()
}

/// A workdir, state dir and socket path in a temp dir, as doctor's arguments.
struct DoctorDirs {
    _tmp: tempfile::TempDir,
    work: std::path::PathBuf,
    st: std::path::PathBuf,
    sock: std::path::PathBuf,
}

impl DoctorDirs {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let st = tmp.path().join("st");
        let sock = tmp.path().join("s.sock");
        Self {
            _tmp: tmp,
            work,
            st,
            sock,
        }
    }

    /// `--workdir … --state-dir … --socket … --listen <listen>`.
    fn args(&self, listen: &str) -> Vec<String> {
        vec![
            "--workdir".to_owned(),
            self.work.display().to_string(),
            "--state-dir".to_owned(),
            self.st.display().to_string(),
            "--socket".to_owned(),
            self.sock.display().to_string(),
            "--listen".to_owned(),
            listen.to_owned(),
        ]
    }
}

#[test]
fn doctor_reports_what_serve_would_need() {
    let dirs = DoctorDirs::new();
    let free = agentd_tests::free_port();
    let args = dirs.args(&format!("127.0.0.1:{free}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, v) = doctor(&args);
    assert_eq!(code, 0, "{v:#}");
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "config",
            "git",
            "inotify",
            "containment",
            "workdir",
            "state-dir",
            "socket",
            "listen",
            "mcp"
        ]
    );
    assert_eq!(
        check(&v, "listen")[0],
        &json!({"name": "listen", "level": "ok",
                "message": format!("127.0.0.1:{free} is free (loopback, no token)")})
    );
    assert_eq!(
        check(&v, "mcp")[0]["message"],
        format!(
            "no config file found (looked for {})",
            dirs.work.join(".mcp.json").display()
        )
    );
    assert!(dirs.st.is_dir());
    // This machine (root, writable cgroup2) gets cgroup mode; asked for, subreaper is ok too.
    let mode = &check(&v, "containment")[0];
    assert_eq!(mode["level"], "ok", "{mode}");
    let mut sub = args.clone();
    sub.extend(["--containment", "subreaper"]);
    let (code, v) = doctor(&sub);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        check(&v, "containment")[0]["message"],
        "subreaper (as requested): orphans are adopted and tracked by a marker variable"
    );
}

#[test]
fn doctor_fails_a_port_in_use_and_a_broken_mcp_config() {
    let dirs = DoctorDirs::new();
    // A port in use and a broken MCP config both fail, with serve's and /servers' words.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    std::fs::write(
        dirs.work.join(".mcp.json"),
        r#"{"mcpServers":{"ok":{"command":"true"},"bad__name":{"command":"x"}}}"#,
    )
    .unwrap();
    let args = dirs.args(&addr);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, v) = doctor(&args);
    assert_eq!(code, 1, "{v:#}");
    let listen = check(&v, "listen");
    assert_eq!(listen[0]["level"], "fail");
    assert!(
        listen[0]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("cannot listen on {addr}: Address already in use")),
        "{v:#}"
    );
    let mcp = check(&v, "mcp");
    assert_eq!(mcp.len(), 1, "{v:#}");
    assert_eq!(mcp[0]["level"], "fail");
    let msg = mcp[0]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!(
            "server \"bad__name\" in {}: ",
            dirs.work.join(".mcp.json").display()
        )),
        "{msg}"
    );

    // Malformed JSON fails the file.
    std::fs::write(dirs.work.join(".mcp.json"), "{nope").unwrap();
    let (code, v) = doctor(&args);
    assert_eq!(code, 1);
    assert!(
        check(&v, "mcp")[0]["message"]
            .as_str()
            .unwrap()
            .starts_with(&dirs.work.join(".mcp.json").display().to_string()),
        "{v:#}"
    );
}

#[test]
fn doctor_reports_a_configuration_serve_would_refuse() {
    let dirs = DoctorDirs::new();
    // A configuration serve would refuse is reported, not a crash.
    let (code, v) = doctor(&[
        "--listen",
        "0.0.0.0:0",
        "--state-dir",
        &dirs.st.display().to_string(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(check(&v, "config")[0]["level"], "fail");
    assert!(
        check(&v, "config")[0]["message"]
            .as_str()
            .unwrap()
            .starts_with(
                "refusing to listen on non-loopback address 0.0.0.0:0 without an auth token"
            )
    );
}

#[test]
fn text_report_and_exit_status() {
    let tmp = tempfile::tempdir().unwrap();
    let st = tmp.path().join("st").display().to_string();
    let sock = tmp.path().join("s.sock").display().to_string();
    let port = format!("127.0.0.1:{}", agentd_tests::free_port());
    let out = agentd_command()
        .args([
            "doctor",
            "--state-dir",
            &st,
            "--socket",
            &sock,
            "--listen",
            &port,
        ])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("9 checks: "), "{text}");
    assert!(last.ends_with(", 0 failure(s)"), "{text}");
    assert!(
        text.contains(&format!("ok    listen       {port} is free")),
        "{text}"
    );
}

#[test]
fn completions_and_man_page() {
    for (shell, marker) in [
        ("bash", "_agentd()"),
        ("zsh", "#compdef agentd"),
        ("fish", "complete -c agentd"),
    ] {
        let out = agentd_command()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker), "{shell}: {text}");
        for sub in ["serve", "ctx", "doctor"] {
            assert!(text.contains(sub), "{shell} lacks {sub}");
        }
    }
    let out = agentd_command()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = agentd_command().arg("man").output().unwrap();
    assert!(out.status.success());
    let man = String::from_utf8_lossy(&out.stdout);
    assert!(man.contains(".TH agentd 1"), "{man}");
    assert!(man.contains("doctor"), "{man}");
}
