//! Tool-name assignment (`agentmcp::names::assign`): every exposed name matches
//! `^[a-zA-Z0-9_-]{1,64}$`, distinct (server, tool) pairs get distinct names (one name per
//! pair, none lost), the result does not depend on input order, and a raw
//! `<server>__<tool>` that is already safe is kept when no other pair claims it first.

#![no_main]

use std::collections::BTreeSet;

use agentmcp::names::{MAX_LEN, assign, is_provider_safe, split};
use agentmcp::validate_name;
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    pairs: Vec<(String, String)>,
    /// Also offer the names as already-safe variants (exercise collisions with hashes).
    echo: bool,
}

/// The provider rule, written out independently of `is_provider_safe`.
fn safe(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.chars().all(|c| matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-'))
}

fuzz_target!(|input: Input| {
    let mut pairs = input.pairs.clone();
    let m = assign(&pairs);
    if input.echo {
        // Feed the exposed names back as tool names of a server: they must not collide.
        for name in m.keys() {
            pairs.push(("s".to_owned(), name[..name.len().min(61)].to_owned()));
        }
    }
    let m = assign(&pairs);
    let distinct: BTreeSet<&(String, String)> = pairs.iter().collect();
    assert_eq!(m.len(), distinct.len(), "a pair lost its name");
    let values: BTreeSet<&(String, String)> = m.values().collect();
    assert_eq!(values, distinct, "not one name per pair");
    for (name, (server, tool)) in &m {
        assert!(safe(name) && is_provider_safe(name) && name.len() <= MAX_LEN, "{name:?}");
        let raw = format!("{server}__{tool}");
        if safe(&raw) && validate_name(server).is_ok() {
            // With a valid server name the raw name is unique, so it is kept and splits back.
            assert_eq!(name, &raw);
            if !tool.is_empty() {
                assert_eq!(split(name), Some((server.as_str(), tool.as_str())));
            }
        }
    }
    // Order does not matter.
    let mut rev = pairs.clone();
    rev.reverse();
    assert_eq!(assign(&rev), m);
});
