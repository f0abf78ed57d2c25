//! TLS in front of a real agent for client tests: `openssl` makes a CA, a
//! server certificate (for `localhost` and `agent.tribune.test`, not for
//! 127.0.0.1) and a client certificate; Python's ssl terminates TLS
//! (optionally requiring a client certificate) and relays to the agent's
//! HTTP port. The agent itself speaks plain http here.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct TlsFront {
    child: Child,
    pub port: u16,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running openssl");
    assert!(st.success(), "openssl {args:?}");
}

/// A certificate `name` (`name.pem`, `name.key`) signed by `ca`, with `ext`.
fn signed(dir: &Path, name: &str, cn: &str, ext: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let pem = format!("{name}.pem");
    let extf = format!("{name}.ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    std::fs::write(dir.join(&extf), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extf,
        ],
    );
}

/// Writes into `dir`: `ca.pem`, `srv.pem`/`srv.key`, `client.pem`/`client.key`,
/// and `other-ca.pem` (a CA that signed nothing).
pub fn make_certs(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tribune test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "other-ca.key",
            "-out",
            "other-ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=another CA",
        ],
    );
    signed(
        dir,
        "srv",
        "agent.tribune.test",
        "subjectAltName=DNS:agent.tribune.test,DNS:localhost\n",
    );
    signed(
        dir,
        "client",
        "tribune test client",
        "extendedKeyUsage=clientAuth\n",
    );
}

/// Serve TLS on 127.0.0.1 (a free port) in front of `upstream_port`,
/// with the certificates [`make_certs`] wrote to `dir`.
pub fn front(dir: &Path, upstream_port: u16, require_client_cert: bool) -> TlsFront {
    let script = r#"
import socket, ssl, sys, threading
up = int(sys.argv[1])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain("srv.pem", "srv.key")
if sys.argv[2] == "1":
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations("ca.pem")
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(64)
print(ls.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except Exception: pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except Exception: pass
def serve(c):
    try: t = ctx.wrap_socket(c, server_side=True)
    except Exception: c.close(); return
    u = socket.create_connection(("127.0.0.1", up))
    threading.Thread(target=pipe, args=(t, u), daemon=True).start()
    pipe(u, t)
while True:
    c, _ = ls.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;
    let mut child = Command::new("python3")
        .args([
            "-c",
            script,
            &upstream_port.to_string(),
            if require_client_cert { "1" } else { "0" },
        ])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("TLS front prints its port");
    TlsFront { child, port }
}
