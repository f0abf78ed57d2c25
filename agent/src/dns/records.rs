//! Building answer records: addresses, and node metadata as TXT.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Longest TXT character-string (RFC 1035: one length byte).
const TXT_STRING_MAX: usize = 255;

/// Longest text kept in one TXT record. A valid meta pair needs at most
/// 128 + 1 + 2 * 512 bytes (backquotes are doubled); stored data that is
/// longer (from before validation existed) is cut rather than failing the
/// whole answer.
const TXT_TEXT_MAX: usize = 2048;

/// An A or AAAA record for `ip` if `qtype` asks for that family.
pub fn ip_record(name: &Name, ttl: u32, ip: IpAddr, qtype: RecordType) -> Option<Record> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => {
            Some(Record::from_rdata(name.clone(), ttl, RData::A(A(v4))))
        }
        (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => {
            Some(Record::from_rdata(name.clone(), ttl, RData::AAAA(AAAA(v6))))
        }
        _ => None,
    }
}

/// A meta pair as RFC 1464 text, the way Consul writes it: `` ` `` and `=`
/// in the key are escaped with `` ` ``, and so are its leading and trailing
/// spaces; `` ` `` in the value is doubled. Keys starting `rfc1035-` give
/// their value unchanged.
pub fn meta_text(key: &str, value: &str) -> String {
    if key.to_ascii_lowercase().starts_with("rfc1035-") {
        return value.to_string();
    }
    let k = key.replace('`', "``").replace('=', "`=");
    // Leading spaces first, then trailing ones of that result, as Consul does.
    let lead = k.len() - k.trim_start_matches(' ').len();
    let k = format!("{}{}", "` ".repeat(lead), &k[lead..]);
    let trail = k.len() - k.trim_end_matches(' ').len();
    let k = format!("{}{}", &k[..k.len() - trail], "` ".repeat(trail));
    format!("{k}={}", value.replace('`', "``"))
}

/// Split `text` into character-strings of at most 255 bytes, at character
/// boundaries (a client joining them gets `text` back).
pub fn txt_strings(text: &str) -> Vec<String> {
    let mut text = text;
    if text.len() > TXT_TEXT_MAX {
        let mut cut = TXT_TEXT_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text = &text[..cut];
    }
    let mut out = Vec::new();
    while !text.is_empty() {
        let mut cut = text.len().min(TXT_STRING_MAX);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(text[..cut].to_string());
        text = &text[cut..];
    }
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

/// One TXT record for a node meta pair.
pub fn meta_record(name: &Name, ttl: u32, key: &str, value: &str) -> Record {
    let txt = TXT::new(txt_strings(&meta_text(key, value)));
    Record::from_rdata(name.clone(), ttl, RData::TXT(txt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1464_text() {
        assert_eq!(meta_text("rack", "r1"), "rack=r1");
        assert_eq!(meta_text("a=b", "x`y"), "a`=b=x``y");
        assert_eq!(meta_text(" k ", "v"), "` k` =v");
        assert_eq!(meta_text("  ", "v"), "` `` =v");
        assert_eq!(meta_text("rfc1035-spf", "v=spf1 -all"), "v=spf1 -all");
    }

    #[test]
    fn long_text_is_split_at_255_bytes() {
        let s = txt_strings(&format!("k={}", "v".repeat(400)));
        assert_eq!(s.iter().map(String::len).collect::<Vec<_>>(), [255, 147]);
        assert_eq!(s.concat(), format!("k={}", "v".repeat(400)));
        // never inside a character
        let s = txt_strings(&"é".repeat(200));
        assert!(s.iter().all(|x| x.len() <= 255));
        assert_eq!(s.concat(), "é".repeat(200));
        assert_eq!(txt_strings(""), [""]);
        // hostile stored data is cut, not failed
        assert_eq!(
            txt_strings(&"x".repeat(100_000)).concat().len(),
            TXT_TEXT_MAX
        );
    }
}
