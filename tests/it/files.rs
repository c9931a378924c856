//! File API end to end (Coder's `agent/agentfiles` routes through the real binary): every
//! §9 case of the spec that is not a pure matcher case, durability under `kill -9`,
//! permissions and symlinks, concurrent edits, bad input, and the git watch push.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentd_tests::display as s;
use agentd_tests::gitwatch::{Ws, diff_of, init_repo};
use agentd_tests::{Agentd, Options, enc};
use serde_json::{Value, json};

const CHAT: &str = "00000000-0000-4000-8000-00000000f001";
const PARENT: &str = "00000000-0000-4000-8000-00000000f002";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A canonical temp dir (the daemon resolves symlinks, so `/tmp` aliases would differ).
fn tmpdir() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(t.path()).unwrap();
    (t, root)
}

async fn get_raw(d: &Agentd, path_and_query: &str) -> (u16, String, Vec<u8>) {
    let r = d.client().get(d.url(path_and_query)).send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

async fn read_file(d: &Agentd, q: &str) -> (u16, String, Vec<u8>) {
    get_raw(d, &format!("/api/v0/read-file?{q}")).await
}

async fn lines(d: &Agentd, q: &str) -> (u16, Value) {
    d.get_json(&format!("/api/v0/read-file-lines?{q}")).await
}

async fn write(d: &Agentd, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    write_with(d, &format!("path={}", enc(path)), body, &[]).await
}

async fn write_with(
    d: &Agentd,
    q: &str,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut req = d.client().post(d.url(&format!("/api/v0/write-file?{q}")));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.body(body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn edit(d: &Agentd, body: &Value) -> (u16, Value) {
    d.post_json("/api/v0/edit-files", body).await
}

async fn edit_with(d: &Agentd, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = d.client().post(d.url("/api/v0/edit-files")).json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn one(path: &Path, search: &str, replace: &str) -> Value {
    json!({"files": [{"path": s(path), "edits": [{"search": search, "replace": replace}]}]})
}

async fn chat_paths(d: &Agentd, chat: &str) -> Vec<String> {
    let (st, v) = d
        .get_json(&format!("/api/v0/git/watch/paths?chat_id={chat}"))
        .await;
    assert_eq!(st, 200, "{v}");
    v["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

fn sha256(data: &[u8]) -> String {
    agentfiles_sha(data)
}

fn agentfiles_sha(data: &[u8]) -> String {
    // The `sha256sum` CLI: an independent implementation.
    use std::io::Write;
    let mut c = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[tokio::test]
async fn read_file_ranges_errors_and_query_parsing() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let f = root.join("file");
    std::fs::write(&f, "content").unwrap();
    let fp = enc(&s(&f));

    read_file_query_validation(&d, &fp).await;
    read_file_missing_and_directory(&d, &root).await;
    read_file_ranges_and_content_types(&d, &root, &fp).await;
    read_file_fifo_device_and_big_file(&d, &root).await;
}

/// Coder's 400s for a missing, relative, negative, unknown or repeated query parameter.
async fn read_file_query_validation(d: &Agentd, fp: &str) {
    let (st, v) = d.get_json("/api/v0/read-file").await;
    assert_eq!(st, 400);
    assert_eq!(v["message"], "Query parameters have invalid values.");
    assert_eq!(v["validations"][0]["field"], "path");
    assert_eq!(
        v["validations"][0]["detail"],
        "Query param \"path\" is required and cannot be empty"
    );
    for rel in ["./relative", "also-relative"] {
        let (st, v) = d.get_json(&format!("/api/v0/read-file?path={rel}")).await;
        assert_eq!(st, 400);
        assert_eq!(
            v["message"],
            format!("file path must be absolute: \"{rel}\"")
        );
    }
    for p in ["limit", "offset"] {
        let (st, v) = d
            .get_json(&format!("/api/v0/read-file?path={fp}&{p}=-10"))
            .await;
        assert_eq!(st, 400);
        assert!(
            v["validations"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("value is negative"),
            "{v}"
        );
    }
    let (st, v) = d
        .get_json(&format!("/api/v0/read-file?path={fp}&bogus=1"))
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        v["validations"][0]["detail"],
        "Query param \"bogus\" is not a valid query param"
    );
    let (st, v) = d
        .get_json(&format!("/api/v0/read-file?path={fp}&path={fp}"))
        .await;
    assert_eq!(st, 400);
    assert!(
        v["validations"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("more than once")
    );
}

/// A missing path is a 404, a directory a 400, with Go's wording.
async fn read_file_missing_and_directory(d: &Agentd, root: &Path) {
    let missing = s(&root.join("missing"));
    let (st, v) = d
        .get_json(&format!("/api/v0/read-file?path={}", enc(&missing)))
        .await;
    assert_eq!(st, 404);
    assert_eq!(
        v["message"],
        format!("open {missing}: no such file or directory")
    );
    let (st, v) = d
        .get_json(&format!("/api/v0/read-file?path={}", enc(&s(root))))
        .await;
    assert_eq!(st, 400);
    assert_eq!(v["message"], format!("open {}: not a file", root.display()));
}

/// Offset/limit ranges, the content type from the extension, and odd names escaped as
/// Go's client does.
async fn read_file_ranges_and_content_types(d: &Agentd, root: &Path, fp: &str) {
    let cases: &[(&str, &str)] = &[
        ("", "content"),
        ("&limit=1", "c"),
        ("&offset=1", "ontent"),
        ("&limit=1&offset=2", "n"),
        ("&limit=7&offset=0", "content"),
        ("&limit=100", "content"),
        ("&offset=7", ""),
        ("&offset=100", ""),
        ("&limit=0", "content"),
        ("&limit=", "content"),
    ];
    for (q, want) in cases {
        let (st, ct, body) = read_file(d, &format!("path={fp}{q}")).await;
        assert_eq!(st, 200, "{q}");
        assert_eq!(ct, "application/octet-stream");
        assert_eq!(String::from_utf8(body).unwrap(), *want, "{q}");
    }
    let png = root.join("file.png");
    std::fs::write(&png, b"\x89PNG").unwrap();
    let (st, ct, _) = read_file(d, &format!("path={}", enc(&s(&png)))).await;
    assert_eq!((st, ct.as_str()), (200, "image/png"));

    // `+` is a space; `&`, `#`, `%`, `?` escaped as Go's client does.
    let odd = root.join("a&b ?#%c.md");
    std::fs::write(&odd, "odd").unwrap();
    let (st, _, body) = read_file(d, &format!("path={}", enc(&s(&odd)))).await;
    assert_eq!((st, body.as_slice()), (200, b"odd".as_slice()));
}

/// A FIFO and /dev/zero are refused at once; a large file streams exactly.
async fn read_file_fifo_device_and_big_file(d: &Agentd, root: &Path) {
    // A FIFO never blocks: refused at once. /dev/zero too (a device).
    let fifo = root.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let t0 = Instant::now();
    let (st, v) = d
        .get_json(&format!("/api/v0/read-file?path={}", enc(&s(&fifo))))
        .await;
    assert_eq!(st, 400);
    assert_eq!(
        v["message"],
        format!("open {}: not a regular file", fifo.display())
    );
    let (st, v) = d.get_json("/api/v0/read-file?path=/dev/zero").await;
    assert_eq!(st, 400);
    assert_eq!(v["message"], "open /dev/zero: not a regular file");
    assert!(t0.elapsed() < Duration::from_secs(2));

    // A large file streams exactly (several chunks), with Content-Length.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let bf = root.join("big.bin");
    std::fs::write(&bf, &big).unwrap();
    let (st, _, body) =
        read_file(d, &format!("path={}&offset=10&limit=2500000", enc(&s(&bf)))).await;
    assert_eq!(st, 200);
    assert_eq!(body, big[10..2_500_010]);
}

#[tokio::test]
async fn read_file_lines_coder_cases_and_bounds() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let f = root.join("f.txt");
    std::fs::write(&f, "line1\nline2\nline3").unwrap();
    let fp = enc(&s(&f));

    read_lines_path_errors(&d, &root).await;
    read_lines_ranges_and_budgets(&d, &root, &fp).await;
    read_lines_long_large_and_sparse_files(&d, &root).await;
    read_lines_special_binary_and_invalid_utf8(&d, &root).await;
}

/// A missing path is a 400; a relative, missing or directory path is Coder's 200 failure.
async fn read_lines_path_errors(d: &Agentd, root: &Path) {
    let (st, v) = lines(d, "").await;
    assert_eq!(st, 400);
    assert!(
        v["validations"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("is required")
    );
    let (st, v) = lines(d, "path=rel").await;
    assert_eq!(
        (st, &v),
        (
            200,
            &json!({"success": false, "error": "file path must be absolute: \"rel\""})
        )
    );
    let missing = s(&root.join("nope"));
    let (_, v) = lines(d, &format!("path={}", enc(&missing))).await;
    assert_eq!(
        v,
        json!({"success": false, "error": format!("file does not exist: {missing}")})
    );
    let (_, v) = lines(d, &format!("path={}", enc(&s(root)))).await;
    assert_eq!(
        v,
        json!({"success": false, "error": format!("not a file: {}", root.display())})
    );
}

/// An empty file, offset/limit windows, the full client query and a zero byte budget.
async fn read_lines_ranges_and_budgets(d: &Agentd, root: &Path, fp: &str) {
    let empty = root.join("empty");
    std::fs::write(&empty, "").unwrap();
    let (_, v) = lines(d, &format!("path={}", enc(&s(&empty)))).await;
    assert_eq!(v, json!({"success": true}));

    let (_, v) = lines(d, &format!("path={fp}")).await;
    assert_eq!(
        v,
        json!({"success": true, "file_size": 17, "total_lines": 3, "lines_read": 3,
               "content": "1\tline1\n2\tline2\n3\tline3"})
    );
    let (_, v) = lines(d, &format!("path={fp}&offset=2")).await;
    assert_eq!(v["content"], "2\tline2\n3\tline3");
    let (_, v) = lines(d, &format!("path={fp}&limit=1")).await;
    assert_eq!(v["content"], "1\tline1");
    let (_, v) = lines(d, &format!("path={fp}&offset=2&limit=1")).await;
    assert_eq!(
        (v["content"].as_str(), v["lines_read"].as_u64()),
        (Some("2\tline2"), Some(1))
    );
    let (_, v) = lines(d, &format!("path={fp}&offset=100")).await;
    assert_eq!(
        v["error"],
        "offset 100 is beyond the file length of 3 lines"
    );
    // The full client query (all seven parameters), as chatd sends it.
    let (_, v) = lines(
        d,
        &format!("path={fp}&offset=1&limit=0&max_file_size=1048576&max_line_bytes=1024&max_response_lines=2000&max_response_bytes=32768"),
    )
    .await;
    assert_eq!(v["lines_read"], 3);
    // `0` is literal: a zero byte budget fails.
    let (_, v) = lines(d, &format!("path={fp}&max_response_bytes=0")).await;
    assert_eq!(
        v["error"],
        "output would exceed 0 bytes. Read less at a time using offset and limit parameters."
    );
}

/// A long line is truncated, a file over max_file_size refused, a 2 GiB sparse file refused
/// from its size without reading it (and read-file still serves its tail).
async fn read_lines_long_large_and_sparse_files(d: &Agentd, root: &Path) {
    let long = root.join("long");
    std::fs::write(&long, "x".repeat(1025)).unwrap();
    let (_, v) = lines(d, &format!("path={}", enc(&s(&long)))).await;
    assert_eq!(
        v["content"],
        format!("1\t{}... [truncated]", "x".repeat(1024))
    );
    assert_eq!(v["file_size"], 1025);

    let large = root.join("large");
    std::fs::write(&large, vec![b'a'; (1 << 20) + 1]).unwrap();
    let (_, v) = lines(d, &format!("path={}", enc(&s(&large)))).await;
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("file is 1048577 bytes which exceeds the maximum of 1048576 bytes.")
    );

    // A 2 GiB sparse file: refused from its size, nothing read.
    let sparse = root.join("sparse");
    std::fs::File::create(&sparse)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let t0 = Instant::now();
    let (_, v) = lines(
        d,
        &format!(
            "path={}&max_file_size=9223372036854775807",
            enc(&s(&sparse))
        ),
    )
    .await;
    assert_eq!(v["success"], false);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("file is 2147483648 bytes"),
        "{v}"
    );
    assert!(t0.elapsed() < Duration::from_secs(2));
    let (st, _, body) = read_file(
        d,
        &format!(
            "path={}&offset={}&limit=4",
            enc(&s(&sparse)),
            (2u64 << 30) - 2
        ),
    )
    .await;
    assert_eq!((st, body), (200, vec![0, 0]));
}

/// Devices and FIFOs are refused without blocking, NUL bytes are "binary", invalid UTF-8
/// is U+FFFD.
async fn read_lines_special_binary_and_invalid_utf8(d: &Agentd, root: &Path) {
    // Devices and FIFOs are refused without blocking; NUL bytes are "binary".
    let (_, v) = lines(d, "path=/dev/zero").await;
    assert_eq!(
        v,
        json!({"success": false, "error": "not a regular file: /dev/zero"})
    );
    let fifo = root.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let (_, v) = lines(d, &format!("path={}", enc(&s(&fifo)))).await;
    assert_eq!(
        v["error"],
        format!("not a regular file: {}", fifo.display())
    );
    let bin = root.join("bin");
    std::fs::write(&bin, b"a\0b").unwrap();
    let (_, v) = lines(d, &format!("path={}", enc(&s(&bin)))).await;
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .starts_with("file appears to be binary"),
        "{v}"
    );
    // Invalid UTF-8 comes out as U+FFFD, numbered as usual.
    let bad = root.join("bad");
    std::fs::write(&bad, b"ok\n\xff\xfe\n").unwrap();
    let (_, v) = lines(d, &format!("path={}", enc(&s(&bad)))).await;
    assert_eq!(v["content"], "1\tok\n2\t\u{fffd}\u{fffd}\n3\t");
}

/// Coder's 400s for a missing or relative path, a directory and a file in the way of the
/// parents; missing parents are created.
#[tokio::test]
async fn write_file_request_validation_and_parents() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let r = d
        .client()
        .post(d.url("/api/v0/write-file"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for rel in ["./relative", "also-relative"] {
        let (st, v) = write(&d, rel, "x").await;
        assert_eq!(
            (st, v["message"].as_str().unwrap()),
            (
                400,
                format!("file path must be absolute: \"{rel}\"").as_str()
            )
        );
    }
    let nested = root.join("nested/does-not-exist");
    let (st, v) = write(&d, &s(&nested), "content").await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["message"],
        format!("Successfully wrote to \"{}\"", nested.display())
    );
    assert_eq!(v["sha256"], sha256(b"content"));
    assert_eq!(std::fs::read_to_string(&nested).unwrap(), "content");
    let (st, v) = write(&d, &s(&root), "x").await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (
            400,
            format!("open {}: is a directory", root.display()).as_str()
        )
    );
    let (st, v) = write(&d, &format!("{}/file2", nested.display()), "x").await;
    assert_eq!(st, 400);
    assert_eq!(
        v["message"],
        format!("mkdir {}: not a directory", nested.display())
    );
}

/// The mode (setuid too) and owner survive, symlinks (dangling ones too) are written
/// through, FIFOs are refused, hard links reported; no temp file is left.
#[tokio::test]
async fn write_file_keeps_modes_owners_and_symlinks() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    // Mode kept (0755), setuid included; a symlink is written through and survives.
    let script = root.join("run.sh");
    std::fs::write(&script, "old").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let (st, _) = write(&d, &s(&script), "new").await;
    assert_eq!(st, 200);
    assert_eq!(
        std::fs::metadata(&script).unwrap().permissions().mode() & 0o7777,
        0o4755
    );
    let target = root.join("target.txt");
    std::fs::write(&target, "t").unwrap();
    let link = root.join("link.txt");
    std::os::unix::fs::symlink("target.txt", &link).unwrap();
    let (st, _) = write(&d, &s(&link), "through").await;
    assert_eq!(st, 200);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "through");
    // A dangling link: its target (and the target's parents) are created.
    let dangling = root.join("dangling");
    std::os::unix::fs::symlink("made/later.txt", &dangling).unwrap();
    let (st, _) = write(&d, &s(&dangling), "late").await;
    assert_eq!(st, 200);
    assert_eq!(
        std::fs::read_to_string(root.join("made/later.txt")).unwrap(),
        "late"
    );
    // Owner kept (as root): a file owned by nobody stays owned by nobody.
    if is_root() {
        let owned = root.join("owned");
        std::fs::write(&owned, "o").unwrap();
        std::os::unix::fs::chown(&owned, Some(65534), Some(65534)).unwrap();
        assert_eq!(write(&d, &s(&owned), "p").await.0, 200);
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&owned).unwrap();
        assert_eq!((m.uid(), m.gid()), (65534, 65534));
    }
    // FIFOs are refused (never swapped for a regular file, never blocking).
    let fifo = root.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let (st, v) = write(&d, &s(&fifo), "x").await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (
            400,
            format!("open {}: not a regular file", fifo.display()).as_str()
        )
    );
    // Hard links: replaced as Coder does, but reported.
    let hl = root.join("hl");
    std::fs::write(&hl, "a").unwrap();
    std::fs::hard_link(&hl, root.join("hl2")).unwrap();
    let (st, v) = write(&d, &s(&hl), "b").await;
    assert_eq!(st, 200);
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap()
            .contains("had 2 hard links"),
        "{v}"
    );
    // No temp file is ever left next to the targets.
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Bodies beyond the JSON limit stream; beyond 128 MiB are a 413 up front.
#[tokio::test]
async fn write_file_streams_big_bodies_and_refuses_beyond_the_limit() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    // Bodies beyond the JSON limit stream fine; beyond 128 MiB are a 413 up front.
    let five = vec![b'z'; 5 << 20];
    let big = root.join("big");
    let (st, v) = write(&d, &s(&big), five.clone()).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(std::fs::read(&big).unwrap(), five);
    let req = format!(
        "POST /api/v0/write-file?path={} HTTP/1.1\r\nHost: {}\r\nContent-Length: 200000000\r\n\r\n",
        enc(&s(&big)),
        d.addr
    );
    let res = agentd_tests::raw_tcp(&d.addr, req.as_bytes()).await;
    assert!(res.starts_with("HTTP/1.1 413"), "{res}");
    assert!(
        res.contains("\"detail\":\"the limit is 134217728 bytes\""),
        "{res}"
    );
    assert_eq!(std::fs::read(&big).unwrap().len(), 5 << 20);
}

/// A stale `expected_sha256` is a 412 and changes nothing; a current one writes.
#[tokio::test]
async fn write_file_expected_sha256_precondition() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    // Preconditions (additive): a stale hash is a 412 and nothing changes.
    let pre = root.join("pre");
    std::fs::write(&pre, "v1").unwrap();
    let q = format!(
        "path={}&expected_sha256={}",
        enc(&s(&pre)),
        sha256(b"other")
    );
    let (st, v) = write_with(&d, &q, "v2", &[]).await;
    assert_eq!(st, 412, "{v}");
    assert_eq!(std::fs::read_to_string(&pre).unwrap(), "v1");
    let q = format!("path={}&expected_sha256={}", enc(&s(&pre)), sha256(b"v1"));
    let (st, v) = write_with(&d, &q, "v2", &[]).await;
    assert_eq!(
        (st, v["sha256"].as_str().unwrap()),
        (200, sha256(b"v2").as_str())
    );
}

/// The path store gets the raw caller path for the chat and its ancestors, on success only.
#[tokio::test]
async fn write_file_records_caller_paths_on_success_only() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    // Path store: the raw caller path, for the chat and its ancestors, on success only.
    let raw = format!("{}/./tracked.txt", root.display());
    let anc = format!("[\"{PARENT}\"]");
    let h = [
        ("Coder-Chat-Id", CHAT),
        ("Coder-Ancestor-Chat-Ids", anc.as_str()),
    ];
    assert_eq!(
        write_with(&d, &format!("path={}", enc(&raw)), "t", &h)
            .await
            .0,
        200
    );
    let want = vec![s(&root.join("tracked.txt"))];
    assert_eq!(chat_paths(&d, CHAT).await, want);
    assert_eq!(chat_paths(&d, PARENT).await, want);
    assert_eq!(write_with(&d, "path=relative", "t", &h).await.0, 400);
    assert_eq!(chat_paths(&d, CHAT).await, want);
    let other = "00000000-0000-4000-8000-00000000f0ff";
    assert_eq!(write(&d, &s(&root.join("nochat")), "t").await.0, 200);
    assert!(chat_paths(&d, other).await.is_empty());
}

/// Coder's 400s and 404s for empty batches, bad JSON, empty and relative paths, no edits,
/// a missing file and a directory.
#[tokio::test]
async fn edit_files_request_validation_and_open_errors() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let f = root.join("f");
    let w = |p: &Path, c: &str| std::fs::write(p, c).unwrap();
    let (st, v) = edit(&d, &json!({"files": []})).await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (400, "must specify at least one file")
    );
    let (st, v) = edit(&d, &json!({})).await;
    assert_eq!(st, 400, "{v}");
    let (st, v) = d
        .client()
        .post(d.url("/api/v0/edit-files"))
        .body("{nope")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(st, 400, "{v:?}");
    let (st, v) = edit(
        &d,
        &json!({"files": [{"path": "", "edits": [{"search": "a", "replace": "b"}]}]}),
    )
    .await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (400, "\"path\" is required")
    );
    for rel in ["./relative", "also-relative"] {
        let (st, v) = edit(
            &d,
            &json!({"files": [{"path": rel, "edits": [{"search": "a", "replace": "b"}]}]}),
        )
        .await;
        assert_eq!(
            (st, v["message"].as_str().unwrap()),
            (
                400,
                format!("file path must be absolute: \"{rel}\"").as_str()
            )
        );
    }
    w(&f, "foo bar");
    let (st, v) = edit(&d, &json!({"files": [{"path": s(&f), "edits": []}]})).await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (400, "must specify at least one edit")
    );
    let missing = root.join("missing");
    let (st, v) = edit(&d, &one(&missing, "a", "b")).await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (
            404,
            format!("open {}: no such file or directory", missing.display()).as_str()
        )
    );
    let (st, v) = edit(&d, &one(&root, "a", "b")).await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (400, format!("open {}: not a file", root.display()).as_str())
    );
}

/// One file: sequential edits, ambiguity and not-found refusals (nothing written),
/// `replace_all`, multiline; `old_text`/`new_text` against `search`/`replace`.
#[tokio::test]
async fn edit_files_sequential_replace_all_multiline_and_field_spellings() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let f = root.join("f");
    let w = |p: &Path, c: &str| std::fs::write(p, c).unwrap();
    let r = |p: &Path| std::fs::read_to_string(p).unwrap();
    w(&f, "foo bar");
    // Edit1, sequential edits, replace_all, multiline.
    let (st, v) = edit(&d, &one(&f, "foo", "bar")).await;
    assert_eq!(
        (st, &v),
        (200, &json!({"sha256": {s(&f): sha256(b"bar bar")}}))
    );
    assert_eq!(r(&f), "bar bar");
    w(&f, "foo bar");
    let (st, v) = edit(
        &d,
        &json!({"files": [{"path": s(&f), "edits": [
        {"search": "foo", "replace": "bar"}, {"search": "bar", "replace": "qux"}]}]}),
    )
    .await;
    assert_eq!(st, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("edit {}: ", f.display()))
    );
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("matches 2 occurrences"),
        "{v}"
    );
    assert_eq!(r(&f), "foo bar");
    let (st, _) = edit(&d, &json!({"files": [{"path": s(&f), "edits": [
        {"search": "foo", "replace": "bar"}, {"search": "bar", "replace": "qux", "replace_all": true}]}]})).await;
    assert_eq!((st, r(&f).as_str()), (200, "qux qux"));
    w(&f, "foo\nbar\nbaz\nqux");
    assert_eq!(edit(&d, &one(&f, "bar\nbaz", "frob")).await.0, 200);
    assert_eq!(r(&f), "foo\nfrob\nqux");
    w(&f, "qux bar qux baz qux");
    let (st, v) = edit(&d, &one(&f, "qux", "x")).await;
    assert_eq!(st, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("matches 3 occurrences")
    );
    let (st, v) = edit(&d, &one(&f, "nothere", "x")).await;
    assert_eq!(st, 400);
    assert!(v["message"].as_str().unwrap().contains("not found in file"));
    let (st, v) = edit(&d, &one(&f, "", "x")).await;
    assert_eq!(st, 400, "{v}");
    assert_eq!(r(&f), "qux bar qux baz qux");

    // Both field spellings: old_text/new_text win unless both are empty; an explicit empty
    // new_text deletes.
    w(&f, "alpha beta");
    let (st, _) = edit(
        &d,
        &json!({"files": [{"path": s(&f), "edits": [
        {"old_text": "alpha ", "new_text": "", "search": "beta", "replace": "WRONG"}]}]}),
    )
    .await;
    assert_eq!((st, r(&f).as_str()), (200, "beta"));
    let (st, _) = edit(
        &d,
        &json!({"files": [{"path": s(&f), "edits": [
        {"old_text": "", "new_text": "", "search": "beta", "replace": "gamma"}]}]}),
    )
    .await;
    assert_eq!((st, r(&f).as_str()), (200, "gamma"));
}

/// Several files: all or nothing, every error message with the highest status, and a stale
/// `expected_sha256` is a 412 that writes nothing.
#[tokio::test]
async fn edit_files_multifile_batches_are_atomic() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let missing = root.join("missing");
    let w = |p: &Path, c: &str| std::fs::write(p, c).unwrap();
    let r = |p: &Path| std::fs::read_to_string(p).unwrap();
    // Multifile; MultiError (max status, every message, nothing written); atomic batch.
    let (a, b, c) = (root.join("a"), root.join("b"), root.join("c"));
    for (p, t) in [(&a, "a1"), (&b, "b1"), (&c, "c1")] {
        w(p, t);
    }
    let three = json!({"files": [
        {"path": s(&a), "edits": [{"search": "a1", "replace": "A"}]},
        {"path": s(&b), "edits": [{"search": "b1", "replace": "B"}]},
        {"path": s(&c), "edits": [{"search": "c1", "replace": "C"}]}]});
    assert_eq!(edit(&d, &three).await.0, 200);
    assert_eq!((r(&a), r(&b), r(&c)), ("A".into(), "B".into(), "C".into()));
    let mixed = json!({"files": [
        {"path": s(&a), "edits": [{"search": "A", "replace": "a"}]},
        {"path": s(&b), "edits": [{"search": "missing", "replace": "x"}]},
        {"path": s(&missing), "edits": [{"search": "x", "replace": "y"}]}]});
    let (st, v) = edit(&d, &mixed).await;
    assert_eq!(st, 404);
    let msg = v["message"].as_str().unwrap();
    let parts: Vec<&str> = msg.split('\n').collect();
    assert_eq!(parts.len(), 2, "{msg}");
    assert!(parts[0].starts_with(&format!("edit {}: ", b.display())));
    assert_eq!(
        parts[1],
        format!("open {}: no such file or directory", missing.display())
    );
    assert_eq!(r(&a), "A");

    // Preconditions: a stale hash is a 412 and nothing in the batch is written.
    w(&a, "pa");
    w(&b, "pb");
    let (st, v) = edit(&d, &json!({"files": [
        {"path": s(&a), "edits": [{"search": "pa", "replace": "x"}], "expected_sha256": sha256(b"pa")},
        {"path": s(&b), "edits": [{"search": "pb", "replace": "x"}], "expected_sha256": sha256(b"old")}]})).await;
    assert_eq!(st, 412, "{v}");
    assert_eq!((r(&a), r(&b)), ("pa".into(), "pb".into()));
}

/// The mode and symlinks survive an edit; `include_diff` diffs against the original, in
/// request order, empty for a no-op.
#[tokio::test]
async fn edit_files_keep_modes_and_symlinks_and_report_diffs() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let (a, b) = (root.join("a"), root.join("b"));
    let w = |p: &Path, c: &str| std::fs::write(p, c).unwrap();
    let r = |p: &Path| std::fs::read_to_string(p).unwrap();
    // Permissions and symlinks kept.
    let sh = root.join("x.sh");
    w(&sh, "echo hi");
    std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(edit(&d, &one(&sh, "hi", "ho")).await.0, 200);
    assert_eq!(
        std::fs::metadata(&sh).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let real = root.join("real.txt");
    w(&real, "hello world");
    let link = root.join("link.txt");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (st, v) = edit(
        &d,
        &json!({"files": [{"path": s(&link), "edits": [
        {"search": "hello", "replace": "HELLO"}]}], "include_diff": true}),
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(r(&real), "HELLO world");
    assert_eq!(v["files"][0]["path"], s(&link));
    let diff = v["files"][0]["diff"].as_str().unwrap();
    assert!(
        diff.starts_with(&format!("--- {}\n+++ {}\n", link.display(), link.display())),
        "{diff}"
    );
    assert!(
        diff.contains("-hello world") && diff.contains("+HELLO world"),
        "{diff}"
    );

    // include_diff: no-op edit gives an empty diff; order kept; against the original.
    w(&a, "same");
    w(&b, "one\ntwo\n");
    let (st, v) = edit(&d, &json!({"include_diff": true, "files": [
        {"path": s(&a), "edits": [{"search": "same", "replace": "same"}]},
        {"path": s(&b), "edits": [{"search": "one", "replace": "ONE"}, {"search": "two", "replace": "TWO"}]}]})).await;
    assert_eq!(st, 200);
    assert_eq!(v["files"][0], json!({"path": s(&a), "diff": ""}));
    assert_eq!(v["files"][1]["path"], s(&b));
    let diff = v["files"][1]["diff"].as_str().unwrap();
    assert!(
        diff.contains("-one\n")
            && diff.contains("-two\n")
            && diff.contains("+ONE\n")
            && diff.contains("+TWO\n"),
        "{diff}"
    );
    let (_, v) = edit(&d, &one(&a, "same", "same")).await;
    assert!(v.get("files").is_none());
}

/// Literal duplicates merge (also non-canonical spellings); a symlink alias of another
/// entry is refused and nothing is written.
#[tokio::test]
async fn edit_files_duplicate_paths_merge_or_reject() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let f = root.join("f");
    let real = root.join("real.txt");
    std::fs::write(&real, "HELLO world").unwrap();
    let link = root.join("link.txt");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let w = |p: &Path, c: &str| std::fs::write(p, c).unwrap();
    let r = |p: &Path| std::fs::read_to_string(p).unwrap();
    // Duplicates: literal ones merge (also non-canonical spellings); symlink aliases reject.
    w(&f, "one\ntwo\nthree\n");
    let (st, v) = edit(&d, &json!({"files": [
        {"path": s(&f), "edits": [{"search": "one", "replace": "CHANGED"}]},
        {"path": format!("{}/./f", root.display()), "edits": [{"search": "CHANGED", "replace": "FINAL"}]}]})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(r(&f), "FINAL\ntwo\nthree\n");
    let (st, v) = edit(
        &d,
        &json!({"files": [
        {"path": s(&real), "edits": [{"search": "HELLO", "replace": "a"}]},
        {"path": s(&link), "edits": [{"search": "world", "replace": "b"}]}]}),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        v["message"],
        format!(
            "duplicate file path \"{}\" aliases \"{}\" (same real file): combine edits into a single entry's \"edits\" list",
            link.display(),
            real.display()
        )
    );
    assert_eq!(r(&real), "HELLO world");
}

/// Files that are not UTF-8 are edited as bytes; a FIFO is refused without blocking.
#[tokio::test]
async fn edit_files_non_utf8_as_bytes_and_fifos_refused() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    // Files that are not UTF-8 are edited as bytes (more cases in the matcher test below).
    let bad = root.join("bad");
    std::fs::write(&bad, b"ok \xff").unwrap();
    let (st, v) = edit(&d, &one(&bad, "ok", "OK")).await;
    assert_eq!(
        (st, &v),
        (200, &json!({"sha256": {s(&bad): sha256(b"OK \xff")}}))
    );
    assert_eq!(std::fs::read(&bad).unwrap(), b"OK \xff");
    // FIFOs never block.
    let fifo = root.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let (st, v) = edit(&d, &one(&fifo, "a", "b")).await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (
            400,
            format!("open {}: not a regular file", fifo.display()).as_str()
        )
    );
}

/// The path store gets every caller path of a successful batch, for the chat and its
/// ancestors, and nothing from a failed one.
#[tokio::test]
async fn edit_files_record_caller_paths_on_success_only() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let (a, b) = (root.join("a"), root.join("b"));
    std::fs::write(&b, "pb").unwrap();
    let w = |p: &Path, c: &str| std::fs::write(p, c).unwrap();
    // Path store: every caller path after merging, on success only.
    let anc = format!("[\"{PARENT}\"]");
    let h = [
        ("Coder-Chat-Id", CHAT),
        ("Coder-Ancestor-Chat-Ids", anc.as_str()),
    ];
    w(&a, "x");
    assert_eq!(edit_with(&d, &one(&a, "x", "y"), &h).await.0, 200);
    assert_eq!(chat_paths(&d, CHAT).await, vec![s(&a)]);
    assert_eq!(chat_paths(&d, PARENT).await, vec![s(&a)]);
    assert_eq!(edit_with(&d, &one(&b, "nothere", "y"), &h).await.0, 400);
    assert_eq!(chat_paths(&d, CHAT).await, vec![s(&a)]);
}

#[tokio::test]
async fn edit_files_ten_thousand_edits_and_a_hundred_concurrent_edits() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let f = root.join("many");
    let content: String = (0..10_000).map(|i| format!("line {i:05}\n")).collect();
    std::fs::write(&f, &content).unwrap();
    let edits: Vec<Value> = (0..10_000)
        .map(|i| json!({"search": format!("line {i:05}\n"), "replace": format!("LINE {i:05}\n")}))
        .collect();
    let (st, v) = edit(&d, &json!({"files": [{"path": s(&f), "edits": edits}]})).await;
    assert_eq!(st, 200, "{v}");
    let want: String = (0..10_000).map(|i| format!("LINE {i:05}\n")).collect();
    assert_eq!(std::fs::read_to_string(&f).unwrap(), want);

    // 100 concurrent single edits of one file: each must see the others' results.
    let shared = root.join("shared");
    let start: String = (0..100).map(|i| format!("slot {i:03}\n")).collect();
    std::fs::write(&shared, &start).unwrap();
    let mut tasks = Vec::new();
    for i in 0..100 {
        let client = d.client();
        let url = d.url("/api/v0/edit-files");
        let body = one(
            &shared,
            &format!("slot {i:03}\n"),
            &format!("done {i:03}\n"),
        );
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let want: String = (0..100).map(|i| format!("done {i:03}\n")).collect();
    assert_eq!(std::fs::read_to_string(&shared).unwrap(), want);
    // 50 concurrent write-files to one path: the final content is one of them, whole.
    let mut tasks = Vec::new();
    for i in 0..50u8 {
        let client = d.client();
        let url = d.url(&format!("/api/v0/write-file?path={}", enc(&s(&shared))));
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .body(vec![b'a' + (i % 26); 300_000])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let last = std::fs::read(&shared).unwrap();
    assert_eq!(last.len(), 300_000);
    assert!(last.iter().all(|b| *b == last[0]));
}

#[tokio::test]
async fn resolve_path_and_list_directory() {
    let home = tempfile::tempdir().unwrap();
    let home_path = std::fs::canonicalize(home.path()).unwrap();
    let d = Agentd::start_with(Options {
        env: vec![("HOME".into(), s(&home_path))],
        ..Options::default()
    });
    let (_t, root) = tmpdir();
    resolve_path_follows_symlinks_in_kernel_order(&d, &root).await;
    list_directory_home_root_and_query_path(&d, &home_path).await;
    list_directory_errors(&d, &home_path).await;
    variant_routes_are_plain_404s(&d).await;
}

/// resolve-path follows file and directory links in the kernel's order; a relative path is
/// a 400, a loop a 500.
async fn resolve_path_follows_symlinks_in_kernel_order(d: &Agentd, root: &Path) {
    let rp = |p: &str| format!("/api/v0/resolve-path?path={}", enc(p));

    std::fs::create_dir_all(root.join("real-plans")).unwrap();
    std::fs::write(root.join("real-plans/x.md"), "").unwrap();
    std::os::unix::fs::symlink(root.join("real-plans"), root.join("link-plans")).unwrap();
    std::os::unix::fs::symlink("real-plans/x.md", root.join("xlink")).unwrap();
    let (st, v) = d.get_json(&rp(&s(&root.join("xlink")))).await;
    assert_eq!(
        (st, &v),
        (
            200,
            &json!({"resolved_path": s(&root.join("real-plans/x.md"))})
        )
    );
    let (_, v) = d.get_json(&rp(&s(&root.join("link-plans/PLAN.md")))).await;
    assert_eq!(v["resolved_path"], s(&root.join("real-plans/PLAN.md")));
    let (_, v) = d.get_json(&rp(&s(&root.join("link-plans/x.md")))).await;
    assert_eq!(v["resolved_path"], s(&root.join("real-plans/x.md")));
    // The kernel's order (Coder's §3.6 divergence fixed): /a/b -> /c/d, /c/d/link -> ../x.
    std::fs::create_dir_all(root.join("c/d")).unwrap();
    std::fs::create_dir_all(root.join("a")).unwrap();
    std::os::unix::fs::symlink(root.join("c/d"), root.join("a/b")).unwrap();
    std::os::unix::fs::symlink("../x", root.join("c/d/link")).unwrap();
    let (_, v) = d.get_json(&rp(&s(&root.join("a/b/link")))).await;
    assert_eq!(v["resolved_path"], s(&root.join("c/x")));
    let (st, v) = d.get_json(&rp("rel/x")).await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (400, "file path must be absolute: \"rel/x\"")
    );
    std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
    std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
    let (st, v) = d.get_json(&rp(&s(&root.join("loop1")))).await;
    assert_eq!(st, 500);
    assert_eq!(
        v["message"],
        format!(
            "too many levels of symlinks resolving \"{}\"",
            root.join("loop1").display()
        )
    );
}

/// list-directory relative to home, to the root with components, and by query path.
async fn list_directory_home_root_and_query_path(d: &Agentd, home_path: &Path) {
    // list-directory: home, root + components, query path; dirs first; symlinked dir false.
    std::fs::create_dir(home_path.join("zdir")).unwrap();
    std::fs::write(home_path.join("b.txt"), "").unwrap();
    std::fs::write(home_path.join(".hidden"), "").unwrap();
    std::os::unix::fs::symlink(home_path.join("zdir"), home_path.join("adirlink")).unwrap();
    let (st, v) = d
        .post_json(
            "/api/v0/list-directory",
            &json!({"path": [], "relativity": "home"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let hp = s(home_path);
    let parts: Vec<&str> = hp.split('/').filter(|p| !p.is_empty()).collect();
    assert_eq!(
        v,
        json!({"absolute_path": parts, "absolute_path_string": hp, "contents": [
            {"name": "zdir", "absolute_path_string": format!("{hp}/zdir"), "is_dir": true},
            {"name": ".hidden", "absolute_path_string": format!("{hp}/.hidden"), "is_dir": false},
            {"name": "adirlink", "absolute_path_string": format!("{hp}/adirlink"), "is_dir": false},
            {"name": "b.txt", "absolute_path_string": format!("{hp}/b.txt"), "is_dir": false},
        ]})
    );
    let (st, v) = d
        .post_json(
            "/api/v0/list-directory",
            &json!({"path": [hp.clone(), "zdir"], "relativity": "root"}),
        )
        .await;
    assert_eq!(
        (st, v["absolute_path_string"].as_str().unwrap()),
        (200, format!("{hp}/zdir").as_str())
    );
    assert_eq!(v["contents"], json!([]));
    let (st, v) = d
        .post_json(
            &format!("/api/v0/list-directory?path={}", enc(&hp)),
            &json!({}),
        )
        .await;
    assert_eq!((st, v["contents"].as_array().unwrap().len()), (200, 4));
}

/// list-directory's 400s and 404 with Coder's wording.
async fn list_directory_errors(d: &Agentd, home_path: &Path) {
    let hp = s(home_path);
    let (st, v) = d
        .post_json("/api/v0/list-directory?path=rel", &json!({}))
        .await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (400, "path must be absolute: \"rel\"")
    );
    let gone = format!("{hp}/gone");
    let (st, v) = d
        .post_json(
            &format!("/api/v0/list-directory?path={}", enc(&gone)),
            &json!({}),
        )
        .await;
    assert_eq!(st, 404);
    assert_eq!(
        v["message"],
        format!("failed to open directory \"{gone}\": open {gone}: no such file or directory")
    );
    let (st, v) = d
        .post_json(
            &format!(
                "/api/v0/list-directory?path={}",
                enc(&format!("{hp}/b.txt"))
            ),
            &json!({}),
        )
        .await;
    assert_eq!(
        (st, v["message"].as_str().unwrap()),
        (
            400,
            format!("path \"{hp}/b.txt\" is not a directory").as_str()
        )
    );
    let (st, _) = d
        .post_json("/api/v0/list-directory", &json!({"relativity": "weird"}))
        .await;
    assert_eq!(st, 400);
}

/// Routes Coder has and agentd leaves out (VARIANT) are plain 404s.
async fn variant_routes_are_plain_404s(d: &Agentd) {
    // VARIANT routes are plain 404s.
    for (m, p) in [
        ("POST", "/api/v0/upload-chat-file"),
        ("POST", "/api/v0/zip-files"),
        ("POST", "/api/v0/bundle-files"),
        ("POST", "/api/v0/write-file/abc/cancel"),
        ("POST", "/api/v0/edit-files/abc/cancel"),
        ("DELETE", "/api/v0/delete-chat-files"),
    ] {
        let r = d
            .client()
            .request(m.parse().unwrap(), d.url(p))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{m} {p}");
    }
}

#[tokio::test]
async fn kill_9_during_a_large_write_leaves_old_or_new_never_a_mix() {
    let d = Agentd::start();
    let state_dir = d.state_dir.clone();
    let (_t, root) = tmpdir();
    let f = root.join("big.dat");
    let old = vec![b'o'; 8 << 20];
    std::fs::write(&f, &old).unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let client = d.client();
    let url = d.url(&format!("/api/v0/write-file?path={}", enc(&s(&f))));
    let req = tokio::spawn(async move { client.post(url).body(body).send().await });
    // 16 MiB of new content, then hold the request open.
    for _ in 0..16 {
        tx.send(Ok(vec![b'n'; 1 << 20])).await.unwrap();
    }
    let tmp = agentd_tests::eventually(Duration::from_secs(10), async || {
        std::fs::read_dir(&root).unwrap().flatten().find_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n.starts_with(".big.dat.tmp.") && e.metadata().ok()?.len() >= 8 << 20)
                .then(|| e.path())
        })
    })
    .await;
    let mut d = d;
    d.signal(nix::sys::signal::Signal::SIGKILL);
    d.wait_exit(Duration::from_secs(5)).unwrap();
    drop(tx);
    let _ = req.await;
    assert_eq!(
        std::fs::read(&f).unwrap(),
        old,
        "the target changed under a killed write"
    );
    assert!(
        tmp.exists(),
        "the killed write's temp file is the stale one"
    );
    // The next start sweeps the stale temp file.
    let d2 = Agentd::start_with(Options {
        state_dir: Some(state_dir),
        ..Options::default()
    });
    assert!(!tmp.exists(), "stale temp file not swept at start");
    assert_eq!(std::fs::read(&f).unwrap(), old);
    // And a complete write replaces it whole.
    let new = vec![b'n'; 16 << 20];
    assert_eq!(write(&d2, &s(&f), new.clone()).await.0, 200);
    assert_eq!(std::fs::read(&f).unwrap(), new);
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn git_watch_sees_a_write_file_change_without_a_poll() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let repo = init_repo(&root.join("r"));
    let mut ws = Ws::connect(&d, CHAT).await;
    let f = repo.join("README.md");
    // Write through the API with the chat header: the path store notifies the watch.
    let t0 = Instant::now();
    let h = [("Coder-Chat-Id", CHAT)];
    assert_eq!(
        write_with(
            &d,
            &format!("path={}", enc(&s(&f))),
            "hello\nfrom the api\n",
            &h
        )
        .await
        .0,
        200
    );
    let m = ws
        .wait_for(Duration::from_secs(10), |m| {
            diff_of(m, &repo).is_some_and(|d| d.contains("+from the api"))
        })
        .await;
    // Well within the 5 s idle poll: the write itself triggered the scan.
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "{:?} {m}",
        t0.elapsed()
    );
    // An edit through the API is pushed the same way.
    let t1 = Instant::now();
    assert_eq!(
        edit_with(&d, &one(&f, "from the api", "edited"), &h)
            .await
            .0,
        200
    );
    ws.wait_for(Duration::from_secs(10), |m| {
        diff_of(m, &repo).is_some_and(|d| d.contains("+edited"))
    })
    .await;
    assert!(t1.elapsed() < Duration::from_secs(3));
}

/// One matcher case through the daemon: file content, the edits, and either the content after
/// (200) or the matcher's message (400, prefixed `edit <resolved path>: `).
struct Case {
    name: &'static str,
    content: &'static [u8],
    edits: Value,
    want: Result<&'static [u8], String>,
}

const NOT_FOUND: &str = "old_text not found in file. Verify that old_text matches the file \
                         content exactly, including whitespace and indentation";

fn ambiguous(n: usize) -> String {
    format!(
        "old_text matches {n} occurrences (expected exactly 1). Include more surrounding \
         context to make the match unique, or set replace_all to true"
    )
}

fn ed(old: &str, new: &str) -> Value {
    json!({"old_text": old, "new_text": new})
}

fn ed_all(old: &str, new: &str) -> Value {
    json!({"old_text": old, "new_text": new, "replace_all": true})
}

fn matcher_cases() -> Vec<Case> {
    vec![
        // TestEditFiles (the matcher rows of the table).
        Case {
            name: "TrailingWhitespace",
            content: b"foo   \nbar\t\t\nbaz",
            edits: json!([ed("foo\nbar\nbaz", "replaced")]),
            want: Ok(b"replaced   "),
        },
        Case {
            name: "TabsVsSpaces",
            content: b"\tif true {\n\t\tfoo()\n\t}",
            edits: json!([ed(
                "    if true {\n        foo()\n    }",
                "\tif true {\n\t\tbar()\n\t}"
            )]),
            want: Ok(b"\tif true {\n\t\tbar()\n\t}"),
        },
        Case {
            name: "DifferentIndentDepth",
            content: b"\t\t\tdeep()\n\t\t\tnested()",
            edits: json!([ed("\tdeep()\n\tnested()", "\t\t\tdeep()\n\t\t\tchanged()")]),
            want: Ok(b"\t\t\tdeep()\n\t\t\tchanged()"),
        },
        Case {
            name: "ExactMatchPreferred",
            content: b"hello world",
            edits: json!([ed("hello world", "goodbye world")]),
            want: Ok(b"goodbye world"),
        },
        Case {
            name: "NoMatchErrors",
            content: b"original content",
            edits: json!([ed("this does not exist in the file", "whatever")]),
            want: Err(NOT_FOUND.into()),
        },
        Case {
            name: "AmbiguousExactMatch",
            content: b"foo bar foo baz foo",
            edits: json!([ed("foo", "qux")]),
            want: Err(ambiguous(3)),
        },
        Case {
            name: "ReplaceAllExact",
            content: b"foo bar foo baz foo",
            edits: json!([ed_all("foo", "qux")]),
            want: Ok(b"qux bar qux baz qux"),
        },
        Case {
            name: "ReplaceAllFuzzyTrailing",
            content: b"hello   \nworld\nhello   \nagain",
            edits: json!([ed_all("hello\n", "bye\n")]),
            want: Ok(b"bye   \nworld\nbye   \nagain"),
        },
        Case {
            name: "ReplaceAllFuzzyIndent",
            content: b"\t\talpha\n\t\tbeta\n\t\talpha\n\t\tgamma",
            edits: json!([ed_all("    alpha\n", "\t\tREPLACED\n")]),
            want: Ok(b"\t\tREPLACED\n\t\tbeta\n\t\tREPLACED\n\t\tgamma"),
        },
        Case {
            name: "MixedWhitespaceMultiline",
            content: b"func main() {\n\tresult := compute()\n\tfmt.Println(result)\n}",
            edits: json!([ed(
                "  result := compute()\n  fmt.Println(result)\n",
                "\tresult := compute()\n\tlog.Println(result)\n"
            )]),
            want: Ok(b"func main() {\n\tresult := compute()\n\tlog.Println(result)\n}"),
        },
        Case {
            name: "EditEditAmbiguous",
            content: b"foo bar",
            edits: json!([ed("foo", "bar"), ed("bar", "qux")]),
            want: Err(ambiguous(2)),
        },
        // Indentation translation of inserted lines into the file's unit.
        Case {
            name: "Expansion_ExtraLinesTrackLastPair",
            content: b"foo\n\tline\nbar\n",
            edits: json!([ed("    line\n", "    line\n    extra\n")]),
            want: Ok(b"foo\n\tline\n\textra\nbar\n"),
        },
        Case {
            name: "Red_WrapInBlock_TabFile_4spLLM",
            content: b"func main() {\n\tfmt.Println(\"hello\")\n\tfmt.Println(\"world\")\n}\n",
            edits: json!([ed(
                "    fmt.Println(\"hello\")\n    fmt.Println(\"world\")",
                "    fmt.Println(\"hello\")\n    if verbose {\n        fmt.Println(\"world\")\n    }"
            )]),
            want: Ok(
                b"func main() {\n\tfmt.Println(\"hello\")\n\tif verbose {\n\t\tfmt.Println(\"world\")\n\t}\n}\n",
            ),
        },
        // Line endings: CRLF kept, caller intent honoured or refused.
        Case {
            name: "CRLF_Content_LFSearch_Delete",
            content: b"foo\r\nline\r\nbar\r\n",
            edits: json!([ed("line\n", "")]),
            want: Ok(b"foo\r\nbar\r\n"),
        },
        Case {
            name: "FuzzyIndent_CRLF_TwoSpaceSearch_FileTabWins",
            content: b"foo\r\n\tline\r\nbar\r\n",
            edits: json!([ed("  line\n", "  LINE\n")]),
            want: Ok(b"foo\r\n\tLINE\r\nbar\r\n"),
        },
        Case {
            name: "CRLFFile_LFSearchReplace_Expansion",
            content: b"line1\r\nline2\r\nline3\r\n",
            edits: json!([ed("line1\nline2\n", "line1\nINSERTED\nline2\n")]),
            want: Ok(b"line1\r\nINSERTED\r\nline2\r\nline3\r\n"),
        },
        Case {
            name: "ReplaceAll_CRLF_LFSearch_FileEndingWins",
            content: b"line one\r\nother\r\nline one\r\n",
            edits: json!([ed_all("line one\n", "LINE\n")]),
            want: Ok(b"LINE\r\nother\r\nLINE\r\n"),
        },
        Case {
            name: "CallerIntent_SearchMatchesFile_ReplaceEndingsHonored",
            content: b"x\r\ny\r\nz\r\n",
            edits: json!([ed("x\r\ny\r\n", "X\nY\n")]),
            want: Ok(b"X\nY\nz\r\n"),
        },
        Case {
            name: "CallerIntent_SearchDoesNotMatchFileEnding_Rejects",
            content: b"x\r\ny\r\nz\r\n",
            edits: json!([ed("x\ny\n", "X\r\nY\r\n")]),
            want: Err("old_text not found in file. Verify that old_text matches the file \
                       content exactly, including whitespace, indentation, and line endings"
                .into()),
        },
        // Rejects.
        Case {
            name: "EmptySearch_ReplaceAll_Rejects",
            content: b"abc",
            edits: json!([ed_all("", "x")]),
            want: Err("old_text must not be empty; include the text you want to match".into()),
        },
        Case {
            name: "ContentMismatch_Rejects",
            content: b"Hello world\n",
            edits: json!([ed("hello world\n", "x\n")]),
            want: Err(NOT_FOUND.into()),
        },
        Case {
            name: "AmbiguousFuzzyWindows",
            content: b"\tfoo\n\tbar\n  foo\n",
            edits: json!([ed("    foo\n", "x\n")]),
            want: Err(ambiguous(2)),
        },
        // Not-found hints.
        Case {
            name: "Inversion_HintIncludesSwapAndLine",
            content: b"package main\n\nfunc adder(a int, b int) int { return a + b }\n\n// trailing comment\n",
            edits: json!([ed(
                "func adder(a, b int) int {\n\treturn a + b\n}\n",
                "func adder(a int, b int) int { return a + b }\n"
            )]),
            want: Err(format!(
                "{NOT_FOUND}. Did you swap \"old_text\" and \"new_text\"? Your new_text string \
                 appears at line 3"
            )),
        },
        Case {
            name: "Miscount_ASCIIEquals_HintWorks",
            content: b"title\nsection =======\nbody\n",
            edits: json!([ed("section =====\n", "section *****\n")]),
            want: Err(format!(
                "{NOT_FOUND}. Your old_text has 5 \"=\" (U+003D); the file has 7 at line 2"
            )),
        },
        Case {
            name: "Miscount_BoxDrawingDashes_HintNamesCodepoint",
            content: "<header>\n{/* SECTION ───── */}\n<body/>\n".as_bytes(),
            edits: json!([ed("{/* SECTION ─── */}\n", "{/* REPLACED */}\n")]),
            want: Err(format!(
                "{NOT_FOUND}. Your old_text has 3 \"─\" (U+2500); the file has 5 at line 2"
            )),
        },
        // Not UTF-8: bytes in, bytes out; untouched bytes are kept, exact and fuzzy passes.
        Case {
            name: "NonUtf8_Exact",
            content: b"caf\xe9\nline two\n\xff\xfe end\n",
            edits: json!([ed("line two", "LINE 2")]),
            want: Ok(b"caf\xe9\nLINE 2\n\xff\xfe end\n"),
        },
        Case {
            name: "NonUtf8_Fuzzy",
            content: b"caf\xe9\n\tline two  \n\xff\xfe end\n",
            edits: json!([ed("    line two\n", "    LINE 2\n    more\n")]),
            want: Ok(b"caf\xe9\n\tLINE 2  \n\tmore\n\xff\xfe end\n"),
        },
        Case {
            name: "NonUtf8_ReplaceAll",
            content: b"\x80 x \x80 x\r\n\x80",
            edits: json!([ed_all("x", "y")]),
            want: Ok(b"\x80 y \x80 y\r\n\x80"),
        },
        Case {
            name: "NonUtf8_NotFound",
            content: b"\xff\xff\n",
            edits: json!([ed("nothere", "x")]),
            want: Err(NOT_FOUND.into()),
        },
    ]
}

#[tokio::test]
async fn edit_files_matcher_cases_exact_bodies() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    for (i, case) in matcher_cases().into_iter().enumerate() {
        let f = root.join(format!("case{i}"));
        std::fs::write(&f, case.content).unwrap();
        let body = json!({"files": [{"path": s(&f), "edits": case.edits}]});
        let (st, v) = edit(&d, &body).await;
        match case.want {
            Ok(want) => {
                assert_eq!(
                    (st, &v),
                    (200, &json!({"sha256": {s(&f): sha256(want)}})),
                    "{}",
                    case.name
                );
                assert_eq!(
                    String::from_utf8_lossy(&std::fs::read(&f).unwrap()),
                    String::from_utf8_lossy(want),
                    "{}",
                    case.name
                );
            }
            Err(msg) => {
                assert_eq!(
                    (st, &v),
                    (
                        400,
                        &json!({"message": format!("edit {}: {msg}", f.display())})
                    ),
                    "{}",
                    case.name
                );
                assert_eq!(std::fs::read(&f).unwrap(), case.content, "{}", case.name);
            }
        }
    }
}

#[tokio::test]
async fn edit_files_include_diff_exact_output() {
    let d = Agentd::start();
    let (_t, root) = tmpdir();
    let (a, b, c, n, x) = (
        root.join("a"),
        root.join("b"),
        root.join("c.txt"),
        root.join("n"),
        root.join("x"),
    );
    std::fs::write(&a, "hello world\n").unwrap();
    std::fs::write(&b, "one\ntwo\nthree\n").unwrap();
    std::fs::write(&c, "a\r\nb\r\nc").unwrap();
    std::fs::write(&n, b"caf\xe9\nold\n").unwrap();
    std::fs::write(&x, "same\n").unwrap();
    let link = root.join("link");
    std::os::unix::fs::symlink(&c, &link).unwrap();
    let body = json!({"include_diff": true, "files": [
        {"path": s(&a), "edits": [ed("hello", "HELLO")]},
        {"path": s(&b), "edits": [ed("one", "ONE"), ed("three", "THREE")]},
        {"path": s(&link), "edits": [ed("c", "C\nD")]},
        {"path": s(&n), "edits": [ed("old", "new")]},
        {"path": s(&x), "edits": [ed("same", "same")]}]});
    let (st, v) = edit(&d, &body).await;
    let (la, lb, ll, ln, lx) = (s(&a), s(&b), s(&link), s(&n), s(&x));
    assert_eq!(
        (st, &v),
        (
            200,
            &json!({
                "files": [
                    {"path": la, "diff": format!("--- {la}\n+++ {la}\n@@ -1 +1 @@\n-hello world\n+HELLO world\n")},
                    {"path": lb, "diff": format!("--- {lb}\n+++ {lb}\n@@ -1,3 +1,3 @@\n-one\n+ONE\n two\n-three\n+THREE\n")},
                    {"path": ll, "diff": format!("--- {ll}\n+++ {ll}\n@@ -1,3 +1,4 @@\n a\r\n b\r\n-c\n\\ No newline at end of file\n+C\r\n+D\n\\ No newline at end of file\n")},
                    {"path": ln, "diff": format!("--- {ln}\n+++ {ln}\n@@ -1,2 +1,2 @@\n caf\u{fffd}\n-old\n+new\n")},
                    {"path": lx, "diff": ""},
                ],
                "sha256": {
                    la: sha256(b"HELLO world\n"),
                    lb: sha256(b"ONE\ntwo\nTHREE\n"),
                    ll: sha256(b"a\r\nb\r\nC\r\nD"),
                    ln: sha256(b"caf\xe9\nnew\n"),
                    lx: sha256(b"same\n"),
                },
            })
        )
    );
    assert_eq!(std::fs::read(&c).unwrap(), b"a\r\nb\r\nC\r\nD");
    assert_eq!(std::fs::read(&n).unwrap(), b"caf\xe9\nnew\n");
}

/// The daemon's user + system CPU time in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn edit_files_that_times_out_writes_nothing_and_stops_matching() {
    let d = Agentd::start_with(Options {
        args: ["--fs-timeout-ms", "1000"].map(String::from).to_vec(),
        ..Default::default()
    });
    let (_t, root) = tmpdir();
    let f = root.join("big");
    // 20 000 tab-indented lines; every edit is found only by the indentation pass, so each one
    // scans the whole file: far more than a second of matching.
    let content: String = (0..20_000).map(|i| format!("\tvalue {i:05}\n")).collect();
    std::fs::write(&f, &content).unwrap();
    let edits: Vec<Value> = (0..20_000)
        .map(|i| {
            ed(
                &format!("    value {i:05}\n"),
                &format!("    VALUE {i:05}\n"),
            )
        })
        .collect();
    let started = Instant::now();
    let (st, v) = edit(&d, &json!({"files": [{"path": s(&f), "edits": edits}]})).await;
    assert_eq!(
        (st, &v),
        (
            504,
            &json!({"message": "File-system call timed out.",
                    "detail": "a file-system call did not finish within 1000 ms (hung mount?)"})
        )
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    // The abandoned matching stops at its next edit: the daemon goes idle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_ticks(d.pid());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let spent = cpu_ticks(d.pid()) - before;
    assert!(
        spent < 20,
        "{spent} ticks of CPU in the second after the 504"
    );
    // Nothing was written, no temp file is left, and the file's lock is free.
    assert_eq!(std::fs::read_to_string(&f).unwrap(), content);
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["big".to_owned()]);
    let (st, v) = edit(&d, &one(&f, "\tvalue 00007\n", "\tseven\n")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        content.replace("\tvalue 00007\n", "\tseven\n")
    );
}
