//! HAProxy as the HA setup runs it: the documented config (docs/ha/haproxy.cfg) with its
//! client bind line and server lines replaced.

use std::path::PathBuf;

/// The installed binary (Debian package `haproxy`), if any.
pub fn binary() -> Option<PathBuf> {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// `template` listening on 127.0.0.1:`listen`, in front of `servers` (`host:port` each).
pub fn config(template: &str, listen: u16, servers: &[String]) -> String {
    let mut out = String::new();
    let mut servers_written = false;
    for line in template.lines() {
        let code = line.trim_start();
        if code.starts_with("bind ") {
            out.push_str(&format!("    bind 127.0.0.1:{listen}\n"));
        } else if code.starts_with("server ") {
            if !servers_written {
                for (i, server) in servers.iter().enumerate() {
                    out.push_str(&format!("    server s{} {server} check\n", i + 1));
                }
                servers_written = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bind_and_server_lines_are_replaced_and_the_rest_kept() {
        let template = "global\n  maxconn 100\nfrontend api\n  bind :8080\nbackend servers\n  server a 1.2.3.4:1 check\n  server b 1.2.3.4:2 check\n  timeout server 5s\n";
        let out = super::config(template, 9000, &["127.0.0.1:7001".into(), "127.0.0.1:7002".into()]);
        assert_eq!(
            out,
            "global\n  maxconn 100\nfrontend api\n    bind 127.0.0.1:9000\nbackend servers\n    server s1 127.0.0.1:7001 check\n    server s2 127.0.0.1:7002 check\n  timeout server 5s\n"
        );
    }
}
