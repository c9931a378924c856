//! The safe half of starting a child: the program's `PATH` candidates (as `execvp` would
//! try them) and the `NAME=value` environment, prepared once per [`Launcher`] and laid over
//! per start. Everything here is ordinary Rust; the `clone` code that consumes it is in
//! `spawn.rs`, which alone may use `unsafe`. This module must not start processes, read the
//! daemon's environment or touch the file system.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, c_char};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::ptr;

use crate::spawn::SpawnError;

/// glibc's default search path when `PATH` is unset (`confstr(_CS_PATH)`).
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// A program and a base environment, prepared for `execve` once and shared by every start.
pub(crate) struct Launcher {
    pub(crate) program: String,
    /// `NAME=value`, one per name.
    pub(crate) env: Vec<CString>,
    /// Where each name sits in `env`.
    pub(crate) names: HashMap<Box<[u8]>, usize>,
    /// Where `execvp` would look for the program under the base `PATH`.
    pub(crate) candidates: Vec<CString>,
}

impl Launcher {
    /// Prepares `program` (looked up in `PATH` like `execvp` does) with `env` (in order; a
    /// later entry for a name wins). Entries `execve` cannot carry (an empty name, `=` in
    /// the name, a NUL anywhere) are left out; the OS never hands such a variable over.
    pub(crate) fn new(program: &str, env: &[(&OsStr, &OsStr)]) -> Self {
        let mut names = HashMap::with_capacity(env.len());
        let mut strings = Vec::with_capacity(env.len());
        let mut path = None;
        for (k, v) in merge(env) {
            if let Ok(entry) = entry(k, v) {
                names.insert(Box::from(k), strings.len());
                strings.push(entry);
                if k == b"PATH" {
                    path = Some(v);
                }
            }
        }
        Self {
            candidates: candidates(program, path).unwrap_or_default(),
            program: program.to_owned(),
            env: strings,
            names,
        }
    }
}

pub(crate) fn nul_error(what: &str) -> SpawnError {
    SpawnError::Other(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what} contains a NUL byte"),
    ))
}

pub(crate) fn cstring(bytes: &[u8], what: &str) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| nul_error(what))
}

/// A null-terminated array of pointers into `strings` (which must outlive it).
pub(crate) fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// `env` with one entry per name (a later entry wins, at the first one's place), without
/// names `execve` cannot carry.
pub(crate) fn merge<'a>(env: &[(&'a OsStr, &'a OsStr)]) -> Vec<(&'a [u8], &'a [u8])> {
    let mut index: HashMap<&[u8], usize> = HashMap::with_capacity(env.len());
    let mut merged: Vec<(&[u8], &[u8])> = Vec::with_capacity(env.len());
    for (k, v) in env {
        let (k, v) = (k.as_bytes(), v.as_bytes());
        if k.is_empty() || k.contains(&b'=') {
            continue;
        }
        match index.get(k) {
            Some(&i) => merged[i].1 = v,
            None => {
                index.insert(k, merged.len());
                merged.push((k, v));
            }
        }
    }
    merged
}

/// `NAME=value` as a C string.
pub(crate) fn entry(k: &[u8], v: &[u8]) -> Result<CString, SpawnError> {
    let mut s = Vec::with_capacity(k.len() + v.len() + 2);
    s.extend_from_slice(k);
    s.push(b'=');
    s.extend_from_slice(v);
    cstring(&s, "an environment variable")
}

/// What [`environment`] builds: the strings made for the request's variables (which the
/// pointers reference), the null-terminated pointer array, and the program's candidates
/// when the request sets its own `PATH`.
pub(crate) type Envp = (Vec<CString>, Vec<*const c_char>, Option<Vec<CString>>);

/// The child's environment: the launcher's with `extra` laid over it.
pub(crate) fn environment(
    launcher: &Launcher,
    extra: &[(&OsStr, &OsStr)],
) -> Result<Envp, SpawnError> {
    let mut ptrs: Vec<*const c_char> = Vec::with_capacity(launcher.env.len() + extra.len() + 1);
    ptrs.extend(launcher.env.iter().map(|s| s.as_ptr()));
    let merged = merge(extra);
    let owned = merged
        .iter()
        .map(|(k, v)| entry(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    // A CString's bytes live on the heap: moving `owned` out keeps these pointers valid.
    for (s, (k, _)) in owned.iter().zip(&merged) {
        match launcher.names.get(*k) {
            Some(&i) => ptrs[i] = s.as_ptr(),
            None => ptrs.push(s.as_ptr()),
        }
    }
    ptrs.push(ptr::null());
    let path = merged.iter().find(|(k, _)| *k == b"PATH").map(|(_, v)| *v);
    let candidates = path
        .map(|p| candidates(&launcher.program, Some(p)))
        .transpose()?;
    Ok((owned, ptrs, candidates))
}

/// Where `execvp` would look for `program`, in order.
pub(crate) fn candidates(program: &str, path: Option<&[u8]>) -> Result<Vec<CString>, SpawnError> {
    if program.contains('/') {
        return Ok(vec![cstring(program.as_bytes(), "the program")?]);
    }
    let path = path.unwrap_or(DEFAULT_PATH);
    path.split(|b| *b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            let mut p = Vec::with_capacity(dir.len() + program.len() + 1);
            p.extend_from_slice(dir);
            if !dir.ends_with(b"/") {
                p.push(b'/');
            }
            p.extend_from_slice(program.as_bytes());
            cstring(&p, "PATH")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn candidates_follow_execvp() {
        let c = candidates("sh", Some(b"/a::/b/")).unwrap();
        let c: Vec<&CStr> = c.iter().map(CString::as_c_str).collect();
        assert_eq!(c, [c"/a/sh", c"./sh", c"/b/sh"]);
        let c = candidates("sh", None).unwrap();
        assert_eq!(c.len(), 2);
        let c = candidates("/bin/sh", Some(b"/a")).unwrap();
        assert_eq!(c[0].as_c_str(), c"/bin/sh");
    }
}
