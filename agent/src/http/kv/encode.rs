//! KV entries as Consul's JSON, written straight into the body buffer.
//!
//! The GET hot path: in issue 21's callgrind profile, serde's per-field
//! string escaping and the base64 `String` of the value were ~10% of a GET.
//! The bytes are exactly what serde_json writes for a list of
//! [`KvJson`](super::KvJson) with values (the unit tests compare the two);
//! `?pretty` still goes through serde.

use base64::Engine;

use crate::state::KvEntry;

/// `[{...},{...}]` for `entries`, each with its value.
pub fn entries<'a>(list: impl IntoIterator<Item = (&'a str, &'a KvEntry)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.push(b'[');
    for (i, (key, e)) in list.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        entry(&mut out, key, e);
    }
    out.push(b']');
    out
}

fn entry(out: &mut Vec<u8>, key: &str, e: &KvEntry) {
    out.reserve(112 + key.len() + e.value.len().div_ceil(3) * 4);
    out.extend_from_slice(b"{\"LockIndex\":");
    number(out, e.lock_index);
    out.extend_from_slice(b",\"Key\":");
    string(out, key);
    out.extend_from_slice(b",\"Flags\":");
    number(out, e.flags);
    out.extend_from_slice(b",\"Value\":");
    if e.value.is_empty() {
        // Consul sends null for an empty value.
        out.extend_from_slice(b"null");
    } else {
        out.push(b'"');
        // Base64 never needs escaping.
        let at = out.len();
        out.resize(at + e.value.len().div_ceil(3) * 4, 0);
        let n = base64::engine::general_purpose::STANDARD
            .encode_slice(&e.value, &mut out[at..])
            .unwrap_or(0);
        out.truncate(at + n);
        out.push(b'"');
    }
    if let Some(s) = &e.session {
        out.extend_from_slice(b",\"Session\":");
        string(out, s);
    }
    out.extend_from_slice(b",\"CreateIndex\":");
    number(out, e.create_index);
    out.extend_from_slice(b",\"ModifyIndex\":");
    number(out, e.modify_index);
    out.push(b'}');
}

fn number(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// A JSON string: copied as is when nothing in it needs escaping (the
/// usual key), else serde_json's own escaping.
fn string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail, and a &str always serializes.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::super::KvJson;
    use super::*;

    fn kv(value: &[u8], session: Option<&str>, n: u64) -> KvEntry {
        KvEntry {
            value: value.to_vec().into(),
            flags: n.wrapping_mul(7),
            create_index: n,
            modify_index: n.saturating_add(1),
            lock_index: n / 2,
            session: session.map(str::to_string),
        }
    }

    #[test]
    fn the_bytes_are_serde_jsons() {
        let keys = [
            "",
            "web/config",
            "quote\"d",
            "back\\slash",
            "tab\tnl\ncr\r\u{8}\u{c}",
            "ctl\u{1}\u{1f}\u{7f}",
            "ключ/値/😀",
            "a/../b",
        ];
        let values: [&[u8]; 5] = [b"", b"v", b"vv", b"vvv", &[0, 255, 10, 34, 92, 1, 2]];
        let sessions = [
            None,
            Some("adf4238a-882b-9ddc-4a9d-5b6758e4159e"),
            Some("q\"\n"),
        ];
        let mut all = Vec::new();
        let mut n = 0u64;
        for k in keys {
            for v in values {
                for s in sessions {
                    n += 1;
                    all.push((k, kv(v, s, if n == 7 { u64::MAX } else { n })));
                }
            }
        }
        // One at a time (a single GET) and all together (recurse).
        for (k, e) in &all {
            let ours = entries([(*k, e)]);
            let serde = serde_json::to_vec(&[KvJson::new(k, e, true)]).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde)
            );
        }
        let ours = entries(all.iter().map(|(k, e)| (*k, e)));
        let list: Vec<KvJson> = all.iter().map(|(k, e)| KvJson::new(k, e, true)).collect();
        assert_eq!(ours, serde_json::to_vec(&list).unwrap());
        assert_eq!(entries(std::iter::empty()), b"[]");
    }
}
