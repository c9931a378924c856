//! Reading `/proc` in the e2e tests: the process table, a process's state, parent, command
//! line and children. Linux only; a process that is gone reads as `None` / empty.
//!
//! Nothing here signals or changes a process: tests decide what to do with what they read.

/// Every pid in `/proc` right now.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Children of `pid`'s main thread (`/proc/<pid>/task/<pid>/children`).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// `(state, ppid, comm)` from `/proc/<pid>/stat`.
pub fn stat(pid: u32) -> Option<(char, u32, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_owned();
    let mut rest = s[close + 2..].split(' ');
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((state, ppid, comm))
}

/// `pid` exists and is neither a zombie nor dead.
pub fn is_live(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _, _)| state != 'Z' && state != 'X')
}

/// `pid`'s command line, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let b = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&b).replace('\0', " "))
}

/// `pid`'s command line contains `needle`.
pub fn cmdline_has(pid: u32, needle: &str) -> bool {
    cmdline(pid).is_some_and(|c| c.contains(needle))
}
