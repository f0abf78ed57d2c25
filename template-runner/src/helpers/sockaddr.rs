//! consul-template's `sockaddr`: go-sockaddr's template language over this
//! host's interface addresses, e.g. `sockaddr "GetPrivateIP"` or
//! `sockaddr "GetAllInterfaces | include \"name\" \"^eth\" | attr \"address\""`.
//!
//! The language and the addresses are `gocompat::sockaddr`, the same the
//! agent expands `-bind`/`-client`/`-advertise` with: `GetAllInterfaces
//! GetDefaultInterfaces GetPrivateInterfaces GetPublicInterfaces
//! GetPrivateIP(s) GetPublicIP(s) GetInterfaceIP(s)` and `include exclude
//! sort limit offset unique attr join`.

use gocompat::sockaddr::{host_env, template, SockaddrError};

/// Evaluate a go-sockaddr expression (its arguments joined by spaces)
/// against this host's interfaces, read afresh (they change).
pub fn eval(expr: &str) -> Result<String, SockaddrError> {
    let env = host_env()?;
    Ok(template::render(&format!("{{{{ {expr} }}}}"), &env)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_expressions() {
        // go-sockaddr's GetInterfaceIP keeps forwardable addresses only, so
        // loopback has none (the old copy here answered 127.0.0.1);
        // GetInterfaceIPs lists them all.
        assert_eq!(eval("GetInterfaceIP \"lo\"").unwrap(), "");
        assert!(eval("GetInterfaceIPs \"^lo$\"")
            .unwrap()
            .split(' ')
            .any(|a| a == "127.0.0.1"));
        assert_eq!(
            eval("GetAllInterfaces | include \"name\" \"^lo$\" | include \"type\" \"IPv4\" | attr \"address\"").unwrap(),
            "127.0.0.1"
        );
        assert_eq!(
            eval("GetAllInterfaces | include \"flags\" \"loopback\" | include \"type\" \"IPv4\" | join \"name\" \",\"").unwrap(),
            "lo"
        );
        assert!(eval("Bogus").is_err());
    }
}
