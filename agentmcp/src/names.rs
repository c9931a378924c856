//! Tool names: `<server>__<tool>` when that is provider-safe (`^[a-zA-Z0-9_-]{1,64}$`),
//! otherwise a deterministic sanitised name of at most 64 characters with a short hash
//! suffix, collision-free across the catalogue. Also the Coder-style split on the first `__`.
//!
//! A public module (the fuzz target checks its rules): `names::split`, `names::assign` and
//! `names::MAX_LEN` only read well qualified.

use std::collections::{BTreeMap, HashSet};

/// The separator between server and tool names.
pub(crate) const SEP: &str = "__";
/// Provider limit on tool-name length.
pub const MAX_LEN: usize = 64;

/// Whether `s` matches `^[a-zA-Z0-9_-]{1,64}$`.
pub fn is_provider_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Splits `server__tool` on the first separator; both parts must be non-empty.
pub fn split(name: &str) -> Option<(&str, &str)> {
    let i = name.find(SEP)?;
    let (s, t) = (&name[..i], &name[i + SEP.len()..]);
    (!s.is_empty() && !t.is_empty()).then_some((s, t))
}

fn fnv1a(s: &str, salt: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes().chain(salt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn sanitised(raw: &str, salt: u32) -> String {
    let clean: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let suffix = format!("_{:08x}", fnv1a(raw, salt) as u32);
    let keep = MAX_LEN - suffix.len();
    let prefix: String = clean.chars().take(keep).collect();
    format!("{prefix}{suffix}")
}

/// Assigns exposed names to `(server, tool)` pairs. Deterministic for a given set: raw
/// names that are already safe keep them; the others (in sorted order) get sanitised names
/// that avoid every name taken so far. Returns exposed name → (server, tool).
pub fn assign(pairs: &[(String, String)]) -> BTreeMap<String, (String, String)> {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    sorted.dedup();
    let mut out = BTreeMap::new();
    let mut taken: HashSet<String> = HashSet::new();
    let mut pending = Vec::new();
    for p in &sorted {
        let raw = format!("{}{SEP}{}", p.0, p.1);
        // A raw name another pair already holds (possible only with a server name that
        // `validate_name` rejects) gets a sanitised one: one name per pair, always.
        if is_provider_safe(&raw) && !taken.contains(&raw) {
            taken.insert(raw.clone());
            out.insert(raw, (p.0.clone(), p.1.clone()));
        } else {
            pending.push((raw, *p));
        }
    }
    for (raw, p) in pending {
        let mut salt = 0;
        let name = loop {
            let n = sanitised(&raw, salt);
            if !taken.contains(&n) {
                break n;
            }
            salt += 1;
        };
        taken.insert(name.clone());
        out.insert(name, (p.0.clone(), p.1.clone()));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn split_cases() {
        assert_eq!(split("a__b"), Some(("a", "b")));
        assert_eq!(split("a__b__c"), Some(("a", "b__c")));
        assert_eq!(split("ab"), None);
        assert_eq!(split("__b"), None);
        assert_eq!(split("a__"), None);
        assert_eq!(split("__"), None);
    }

    #[test]
    fn safe_names_and_collisions() {
        let long = "t".repeat(80);
        let pairs = vec![
            ("s".to_string(), "ok".to_string()),
            ("s".to_string(), "a.b".to_string()),
            ("s".to_string(), "a/b".to_string()),
            ("s".to_string(), "a_b".to_string()),
            ("s".to_string(), long.clone()),
        ];
        let m = assign(&pairs);
        assert_eq!(m.len(), 5);
        assert!(m.keys().all(|k| is_provider_safe(k)), "{m:?}");
        assert_eq!(m["s__ok"], ("s".into(), "ok".into()));
        assert_eq!(m["s__a_b"], ("s".into(), "a_b".into()));
        // Deterministic regardless of input order.
        let mut rev = pairs.clone();
        rev.reverse();
        assert_eq!(assign(&rev), m);
        let long_name = m.iter().find(|(_, v)| v.1 == long).unwrap().0;
        assert_eq!(long_name.len(), 64);
    }

    // Found while writing the tool_names fuzz target: two pairs with the same raw name.
    #[test]
    fn same_raw_name_still_one_name_per_pair() {
        let pairs = vec![
            ("a".to_string(), "b__c".to_string()),
            ("a__b".to_string(), "c".to_string()),
        ];
        let m = assign(&pairs);
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m["a__b__c"], ("a".into(), "b__c".into()));
        let other = m.iter().find(|(k, _)| *k != "a__b__c").unwrap();
        assert_eq!(other.1, &("a__b".to_string(), "c".to_string()));
        assert!(
            is_provider_safe(other.0) && other.0.starts_with("a__b__c_"),
            "{other:?}"
        );
    }
}
