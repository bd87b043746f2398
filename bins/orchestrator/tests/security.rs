//! Secrets: the server refuses weak tokens and token files others can read, and no token ever
//! reaches its logs, whatever the log level, the route, or whether the token was good.

mod server;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use serde_json::{Value, json};

use server::{ADMIN, READER, start_server_logging};

fn serve(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn weak_tokens_and_exposed_token_files_stop_the_server_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let weak = "password123";
    let file = dir.path().join("token");
    std::fs::write(&file, "7c1e9a04d3b25f68e0a9c7b41d2f5e83\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--admin-token", weak], "too short"),
        (&["--admin-token", "abababababababababababababababababab"], "too weak"),
        (&["--admin-token", ADMIN, "--reader-token", weak], "reader token is too short"),
        (&["--admin-token-file", file.to_str().unwrap()], "world-readable"),
    ];
    for (args, reason) in cases {
        let out = serve(dir.path(), args);
        assert!(!out.status.success(), "{args:?} started");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        assert!(!stderr.contains(weak), "the token was echoed: {stderr}");
    }
}

#[tokio::test]
async fn no_token_reaches_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    // Most verbose: every dependency's debug and trace records too.
    let server = start_server_logging(&[], dir.path(), &[], Some((&log, "trace")));
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", server.url);
    let bad = "not-the-token-5f2d9c0e8b7a6d5c4b3a2918";

    // Every kind of request: good admin and reader tokens, a bad one, a mutation, a refused
    // mutation, a token made through the API and then used.
    let resp = client.get(url("/status")).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client.get(url("/status")).bearer_auth(bad).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = client
        .post(url("/v1/deployments"))
        .bearer_auth(READER)
        .json(&json!({"image": "a", "replicas": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let resp = client.post(url("/v1/tokens")).bearer_auth(ADMIN).json(&json!({"role": "reader"})).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let made: Value = resp.json().await.unwrap();
    let made = made["token"].as_str().unwrap().to_string();
    let resp = client.get(url("/v1/events")).bearer_auth(&made).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = client
        .post(url("/v1/deployments"))
        .bearer_auth(ADMIN)
        .json(&json!({"image": "local/busybox:1", "replicas": 0, "name": "quiet"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    drop(server);

    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.lines().count() > 20, "the log should be verbose:\n{written}");
    assert!(written.contains("/v1/tokens"), "requests are logged");
    for (what, secret) in [("admin", ADMIN), ("reader", READER), ("bad", bad), ("made", made.as_str())] {
        assert!(!written.contains(secret), "the {what} token is in the log");
    }
    assert!(!written.to_lowercase().contains("bearer "), "an Authorization header is in the log");
}
