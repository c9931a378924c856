//! Build metadata for `agentd version`: git commit, target triple and build profile. Uses
//! only `git` (if present) and Cargo's environment; never fails the build.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn env(k: &str) -> String {
    std::env::var(k).unwrap_or_default()
}

fn main() {
    println!("cargo:rerun-if-env-changed=AGENTD_GIT_COMMIT");
    let commit = match std::env::var("AGENTD_GIT_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => {
            // Rebuild when HEAD moves (the ref file, or packed-refs after a gc).
            for p in ["HEAD", "packed-refs"] {
                if let Some(f) = git(&["rev-parse", "--git-path", p]) {
                    println!("cargo:rerun-if-changed={}", abs(&f));
                }
            }
            if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"])
                && let Some(f) = git(&["rev-parse", "--git-path", &r])
            {
                println!("cargo:rerun-if-changed={}", abs(&f));
            }
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into())
        }
    };
    // The profile is the directory Cargo builds into: target/[<triple>/]<profile>/build/...
    let out_dir = env("OUT_DIR");
    let profile = Path::new(&out_dir)
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| env("PROFILE"));
    let profile = if profile == "debug" {
        "dev".into()
    } else {
        profile
    };
    println!("cargo:rustc-env=AGENTD_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=AGENTD_BUILD_TARGET={}", env("TARGET"));
    println!("cargo:rustc-env=AGENTD_BUILD_PROFILE={profile}");
}

fn abs(p: &str) -> String {
    let path = Path::new(p);
    if path.is_absolute() {
        p.to_owned()
    } else {
        Path::new(&env("CARGO_MANIFEST_DIR"))
            .join(path)
            .display()
            .to_string()
    }
}
