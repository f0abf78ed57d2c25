//! Error texts as Go's `net/http` and `net` print them, so a failed request
//! reads as it does from Consul's CLI and HTTP checks:
//! `Get "http://127.0.0.1:8500/v1/agent/members": dial tcp 127.0.0.1:8500:
//! connect: connection refused` rather than reqwest's `error sending
//! request`. The cause is found by walking the error's source chain.

use std::error::Error;

/// An OS error as Go's `syscall.Errno` prints it: the C library's message,
/// lower-cased first letter, no `(os error N)`.
pub fn io_text(e: &std::io::Error) -> String {
    if e.raw_os_error().is_none() {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            return "EOF".into();
        }
        return e.to_string();
    }
    let text = e.to_string();
    let text = match text.rfind(" (os error ") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut c = text.chars();
    match c.next() {
        Some(first) => first.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `host:port` of a URL, as Go's dialer names the address it tried.
fn dial_addr(url: &reqwest::Url) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port_or_known_default().unwrap_or(80);
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The first `io::Error` among the causes of `e`.
fn find_io<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = x.source();
    }
    None
}

/// The causes of `e` joined with `: `, skipping wrapper messages that say
/// nothing of their own (or only repeat the URL).
pub fn chain_text(e: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(x) = cur {
        let t = match x.downcast_ref::<std::io::Error>() {
            Some(io) => io_text(io),
            None => x.to_string(),
        };
        let filler = t.starts_with("error sending request")
            || t.starts_with("error decoding response body")
            || t.starts_with("client error (")
            || t.is_empty();
        if !filler && !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = x.source();
    }
    parts.join(": ")
}

/// What went wrong with a request, as Go's `url.Error` says it after the
/// method and URL.
pub fn cause(e: &reqwest::Error) -> String {
    let url = e.url();
    if e.is_timeout() {
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)".into();
    }
    if let Some(t) = tls_cause(&chain_text(e)) {
        return t;
    }
    if e.is_connect() {
        let chain = chain_text(e);
        if chain.contains("dns error") {
            let host = url.and_then(|u| u.host_str()).unwrap_or("");
            let why = find_io(e).map(io_text).unwrap_or(chain);
            let why = if why.contains("Name or service not known")
                || why.contains("nodename nor servname")
                || why.contains("No address associated")
            {
                "no such host".to_string()
            } else {
                why
            };
            return format!("dial tcp: lookup {host}: {why}");
        }
        let addr = url.map(dial_addr).unwrap_or_default();
        let why = find_io(e).map(io_text).unwrap_or(chain);
        return format!("dial tcp {addr}: connect: {why}");
    }
    let text = chain_text(e);
    if text.contains("connection closed before message completed") {
        return "EOF".into();
    }
    text
}

/// A failed TLS handshake as Go's `crypto/tls` and `crypto/x509` say it,
/// from rustls's texts.
fn tls_cause(chain: &str) -> Option<String> {
    if chain.contains("UnknownIssuer") {
        return Some(
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                .into(),
        );
    }
    if let Some(i) = chain.find("invalid peer certificate: ") {
        let why = &chain[i + "invalid peer certificate: ".len()..];
        return Some(format!("tls: failed to verify certificate: {why}"));
    }
    if let Some(i) = chain.find("received fatal alert: ") {
        let alert = &chain[i + "received fatal alert: ".len()..];
        return Some(format!("remote error: tls: {}", camel_words(alert)));
    }
    if chain.contains("InvalidContentType") || chain.contains("corrupt message") {
        return Some("http: server gave HTTP response to HTTPS client".into());
    }
    None
}

/// `CertificateRequired` -> `certificate required` (TLS alert names).
fn camel_words(s: &str) -> String {
    let word: String = s
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut out = String::new();
    for c in word.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// `Get "http://...": <cause>` for a failed request.
pub fn request_error(method: &reqwest::Method, url: &str, e: &reqwest::Error) -> String {
    format!("{} {url:?}: {}", method_word(method.as_str()), cause(e))
}

/// The method as Go's net/http error text spells it (`Get`, `Put`, ...).
pub fn method_word(method: &str) -> String {
    let mut w = method.to_ascii_lowercase();
    if let Some(first) = w.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_go_prints_them() {
        let e = std::io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(io_text(&e), "connection refused");
        let e = std::io::Error::from_raw_os_error(libc::ECONNRESET);
        assert_eq!(io_text(&e), "connection reset by peer");
        assert_eq!(method_word("PUT"), "Put");
        assert_eq!(camel_words("CertificateRequired"), "certificate required");
        assert_eq!(
            tls_cause("invalid peer certificate: UnknownIssuer").as_deref(),
            Some(
                "tls: failed to verify certificate: x509: certificate signed by unknown authority"
            )
        );
    }

    /// A refused connection names the dial, as Go's does.
    #[tokio::test]
    async fn refused_connection_names_the_dial() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let url = format!("http://127.0.0.1:{port}/v1/agent/members");
        let e = reqwest::Client::new().get(&url).send().await.unwrap_err();
        assert_eq!(
            request_error(&reqwest::Method::GET, &url, &e),
            format!("Get \"{url}\": dial tcp 127.0.0.1:{port}: connect: connection refused")
        );
    }
}
