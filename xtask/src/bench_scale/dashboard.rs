//! The dashboard's first render at the benchmark's size, in headless Chromium (Debian's
//! chromium, driven through chromedriver as the browser test does): how long from the start of
//! the page's navigation until its cluster view is drawn, as the page itself marks it
//! (`data-first-render-ms` on its body, from `performance.now()`), and what it fetched.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

use crate::sh;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// `loads` loads of `{url}/ui` signed in with `token`: each one's first render (ms) and the
/// bytes its requests transferred, then the median.
pub async fn first_render(url: &str, token: &str, loads: usize) -> Result<Value> {
    if !std::path::Path::new(CHROMEDRIVER).exists() {
        bail!("chromedriver is not installed (Debian chromium chromium-driver)");
    }
    let port = crate::net::free_port()?;
    let _driver = sh::KillOnDrop(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start chromedriver")?,
    );
    let c = connect(&format!("http://127.0.0.1:{port}")).await?;
    let measured = measure(&c, url, token, loads).await;
    let _ = c.close().await;
    measured
}

async fn connect(driver: &str) -> Result<Client> {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
        }),
    );
    let started = Instant::now();
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(driver).await {
            Ok(client) => return Ok(client),
            Err(e) if started.elapsed() > Duration::from_secs(10) => bail!("chromedriver did not start a browser: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn measure(c: &Client, url: &str, token: &str, loads: usize) -> Result<Value> {
    // The token where the page keeps it (this tab's sessionStorage), then fresh loads.
    c.goto(&format!("{url}/ui")).await?;
    c.execute("sessionStorage.setItem('orchestrator-token', arguments[0]); return 1;", vec![json!(token)]).await?;
    let mut renders = Vec::new();
    let mut bytes = 0.0;
    for _ in 0..loads {
        c.goto(&format!("{url}/ui")).await?;
        let started = Instant::now();
        let rendered = loop {
            let mark =
                c.execute("return document.body && document.body.dataset.firstRenderMs || null;", vec![]).await?;
            if let Some(ms) = mark.as_str().and_then(|v| v.parse::<f64>().ok()) {
                break ms;
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("the dashboard did not render within 2 minutes");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        bytes = c
            .execute(
                "return performance.getEntriesByType('resource').reduce((sum, e) => sum + (e.transferSize || 0), 0);",
                vec![],
            )
            .await?
            .as_f64()
            .unwrap_or(0.0);
        renders.push(rendered);
    }
    let mut sorted = renders.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    Ok(json!({"first_render_ms": renders, "first_render_ms_median": median, "bytes_fetched": bytes}))
}
