//! Helpers for the context tests and bench: workspace fixtures (instruction files, skills)
//! and running `agentd ctx ...` as a real process.

use std::path::Path;
use std::process::Stdio;

/// Writes a file, creating its parent directories.
pub fn write(p: &Path, content: impl AsRef<[u8]>) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// Writes `<root>/<dir>/SKILL.md` declaring `name` and `description`.
pub fn skill(root: &Path, dir: &str, name: &str, description: &str) {
    write(
        &root.join(dir).join("SKILL.md"),
        format!("---\nname: {name}\ndescription: {description}\n---\n# {name}\n\nBody.\n"),
    );
}

/// The outcome of a CLI run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `agentd ctx <args>` with a clean environment plus `env`, in `cwd`.
pub async fn ctx(args: &[&str], env: &[(&str, &str)], cwd: &Path) -> Run {
    let mut cmd = crate::agentd_command();
    cmd.arg("ctx").args(args).current_dir(cwd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    let out = tokio::process::Command::from(cmd)
        .output()
        .await
        .expect("run agentd ctx");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
