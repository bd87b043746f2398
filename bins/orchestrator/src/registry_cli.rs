//! `orchestrator registry add|ls|rm`: the registry logins engines pull private images with.
//! The password is read from stdin (`--password-stdin`, as `docker login` takes it), so it is
//! in no shell history and no process list.

use std::io::Read;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::json;

use crate::client::{ClientArgs, call, print_table, show, text};

pub async fn add(c: &ClientArgs, server: &str, username: &str) -> Result<()> {
    let mut password = String::new();
    std::io::stdin().read_to_string(&mut password).context("cannot read the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!(
            "no password on stdin (pipe it: `cat pw | orchestrator registry add {server} -u {username} --password-stdin`)"
        );
    }
    let body = json!({"server": server, "username": username, "password": password});
    let kept = call(c, Method::POST, "/v1/registries", Some(body)).await?;
    show(c, &kept, |r| println!("login for {} kept (user {})", text(&r["server"]), text(&r["username"])));
    Ok(())
}

pub async fn list(c: &ClientArgs) -> Result<()> {
    let list = call(c, Method::GET, "/v1/registries", None).await?;
    show(c, &list, |l| {
        let rows = l.as_array().into_iter().flatten().map(|r| vec![text(&r["server"]), text(&r["username"])]).collect();
        print_table(&["SERVER", "USERNAME"], rows);
    });
    Ok(())
}

pub async fn remove(c: &ClientArgs, server: &str) -> Result<()> {
    call(c, Method::DELETE, &format!("/v1/registries/{server}"), None).await?;
    println!("login for {server} removed");
    Ok(())
}
