//! The dashboard in a real browser (Debian's chromium through chromedriver) against the real
//! binary and the local cluster: the page shows the nodes and the deployment; when a node's
//! engine is killed, its card turns offline and the replicas move, without a reload. Also a
//! narrow window, and accessibility checks on the page's structure. Screenshots go to
//! target/dashboard/.

mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use server::{ADMIN, READER, converged, create, local_cluster, start_ready_server, wait_for};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const REPLICAS: usize = 6;
/// Each replica prints a numbered line twice a second (the panel's log pane shows them).
const TICKER: &str = "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.5; done";

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_chromedriver() -> Option<Driver> {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        assert!(
            !local_cluster::required(),
            "chromium and chromedriver are not installed (Debian chromium chromium-driver)"
        );
        eprintln!("skipping: chromium or chromedriver missing (apt-get install chromium chromium-driver)");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Some(Driver { child, url: format!("http://127.0.0.1:{port}") })
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            // Root in CI: no sandbox; small /dev/shm in containers.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
        }),
    );
    for _ in 0..50 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        if let Ok(client) = ClientBuilder::new(connector).capabilities(caps.clone()).connect(&driver.url).await {
            return client;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start a browser");
}

async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// Waits until `script` (a JS expression) is true in the page.
async fn until(c: &Client, what: &str, timeout: Duration, script: &str) {
    let body = format!("return Boolean({script});");
    wait_for(what, timeout, async || (js(c, &body).await == Value::Bool(true)).then_some(())).await;
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots().join(name), png).unwrap();
}

/// One test at a time on the cluster: the first kills an engine, which would move the
/// replicas the other counts.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Brings a killed engine back even when an assertion fails (later tests share it).
struct Revive<'a>(&'a local_cluster::ClusterNode);

impl Drop for Revive<'_> {
    fn drop(&mut self) {
        self.0.restart();
    }
}

#[tokio::test]
async fn the_dashboard_shows_the_cluster_and_follows_a_node_failure_live() {
    let Some(nodes) = local_cluster::nodes() else { return };
    let Some(driver) = start_chromedriver() else { return };
    let _alone = ONE_AT_A_TIME.lock().await;
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let name = format!("dash{}", std::process::id());
    create(
        &client,
        &server.url,
        &json!({"image": "local/busybox:1", "replicas": REPLICAS, "name": name, "command": ["sh", "-c", TICKER]}),
    )
    .await;
    wait_for("replicas running", Duration::from_secs(60), async || {
        converged(&client, &server.url, nodes, &name, REPLICAS).await
    })
    .await;

    let c = browser(&driver).await;
    c.goto(&format!("{}/ui", server.url)).await.unwrap();
    // Signed out: the form asks for a token; a wrong one is refused with a message.
    until(&c, "the sign-in form", Duration::from_secs(10), "!document.getElementById('login').hidden").await;
    c.find(Locator::Css("#token")).await.unwrap().send_keys("not-a-token-0123456789abcdef").await.unwrap();
    c.find(Locator::Css("#login button[type=submit]")).await.unwrap().click().await.unwrap();
    until(
        &c,
        "the refusal",
        Duration::from_secs(10),
        "document.getElementById('login-error').textContent.includes('refused')",
    )
    .await;
    c.find(Locator::Css("#token")).await.unwrap().send_keys(READER).await.unwrap();
    c.find(Locator::Css("#login button[type=submit]")).await.unwrap().click().await.unwrap();

    // Signed in: the form is gone (not just marked hidden), the cluster is shown.
    until(
        &c,
        "the form gone",
        Duration::from_secs(10),
        "document.getElementById('login').getClientRects().length === 0",
    )
    .await;
    until(
        &c,
        "the dashboard shown",
        Duration::from_secs(10),
        "document.getElementById('nodes').getClientRects().length > 0",
    )
    .await;
    // The cluster: three online node cards holding the six replicas, the deployment at 6 / 6.
    until(
        &c,
        "three online nodes",
        Duration::from_secs(10),
        "document.querySelectorAll('li.card[data-status=online]').length === 3",
    )
    .await;
    let row = format!("document.querySelector('tr[data-deployment={name}]')");
    until(
        &c,
        "the deployment at 6 / 6",
        Duration::from_secs(10),
        &format!("{row} && {row}.textContent.includes('{REPLICAS} / {REPLICAS}')"),
    )
    .await;
    let on_cards = js(&c, "return document.querySelectorAll('li.card .replicas li').length;").await;
    assert_eq!(on_cards, json!(REPLICAS));
    until(
        &c,
        "events in the feed",
        Duration::from_secs(10),
        "document.querySelectorAll('#events li[data-kind=\"replica.started\"]').length >= 6",
    )
    .await;
    screenshot(&c, "1-cluster.png").await;

    // A web service with a health check and a fixed port, one replica more than there are
    // nodes: its replicas turn healthy on the cards, and its row says why one waits.
    let web = format!("dashweb{}", std::process::id());
    let page = "mkdir -p /www && echo up > /www/index.html && exec httpd -f -p 8080 -h /www";
    create(
        &client,
        &server.url,
        &json!({"image": "local/busybox:1", "replicas": 4, "name": web, "command": ["sh", "-c", page],
                "ports": [{"target": 8080, "published": 18090}],
                "healthcheck": {"test": ["CMD-SHELL", "wget -q -O /dev/null http://127.0.0.1:8080/"], "interval": "1s"}}),
    )
    .await;
    let web_row = format!("document.querySelector('tr[data-deployment={web}]')");
    until(
        &c,
        "the web service at 3 / 4 with its reason",
        Duration::from_secs(60),
        &format!(
            "{web_row} && {web_row}.textContent.includes('3 / 4') && \
             {web_row}.querySelector('.unplaced').textContent.includes('no online node has tcp/18090 free')"
        ),
    )
    .await;
    until(
        &c,
        "three healthy replicas on the cards",
        Duration::from_secs(30),
        "document.querySelectorAll('li.card .replicas li[data-health=healthy]').length === 3",
    )
    .await;
    screenshot(&c, "1b-health-and-reasons.png").await;
    let resp = client.delete(format!("{}/v1/deployments/{web}", server.url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    until(
        &c,
        "the web service gone",
        Duration::from_secs(30),
        &format!(
            "{web_row} === null && \
        document.querySelectorAll('li.card .replicas li').length === {REPLICAS}"
        ),
    )
    .await;

    // Kill the engine of a node holding replicas: without a reload, its card turns offline,
    // its replicas move to the other two, and the feed says so.
    let victim = &nodes[1];
    let reloads = js(&c, "window.__notReloaded = true; return 1;").await;
    assert_eq!(reloads, json!(1));
    victim.signal("KILL");
    let revive = Revive(victim);
    let card = format!("document.querySelector('li.card[data-node={}]')", victim.name);
    until(&c, "the card offline", Duration::from_secs(15), &format!("{card}.dataset.status === 'offline'")).await;
    until(
        &c,
        "the node.offline event",
        Duration::from_secs(5),
        "document.querySelector('#events li[data-kind=\"node.offline\"]') !== null",
    )
    .await;
    until(
        &c,
        "the replicas moved",
        Duration::from_secs(60),
        &format!(
            "{card}.querySelectorAll('.replicas li').length === 0 && \
             document.querySelectorAll('li.card[data-status=online] .replicas li').length === {REPLICAS} && \
             {row}.textContent.includes('{REPLICAS} / {REPLICAS}')"
        ),
    )
    .await;
    assert_eq!(js(&c, "return window.__notReloaded === true;").await, json!(true), "the page was reloaded");
    let badge = js(&c, &format!("return {card}.querySelector('.badge').textContent;")).await;
    assert_eq!(badge, json!("offline"), "the status is said in words, not only in colour");
    screenshot(&c, "2-node-offline.png").await;

    // A narrow window: everything still fits its width (no sideways scrolling of the page).
    c.set_window_size(400, 900).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overflow = js(&c, "return document.documentElement.scrollWidth - document.documentElement.clientWidth;").await;
    assert!(overflow.as_i64().unwrap() <= 0, "the page scrolls sideways by {overflow} px");
    screenshot(&c, "3-narrow.png").await;

    // Accessibility checks on structure: a language, one h1, labelled controls and regions,
    // the live region for events, meters with values, and table headers with scope.
    let report = js(
        &c,
        r#"
        const problems = [];
        if (!document.documentElement.lang) problems.push('no lang on <html>');
        if (document.querySelectorAll('h1').length !== 1) problems.push('not exactly one h1');
        for (const input of document.querySelectorAll('input')) {
            if (!document.querySelector(`label[for="${input.id}"]`)) problems.push(`unlabelled input ${input.id}`);
        }
        for (const button of document.querySelectorAll('button')) {
            if (!button.textContent.trim()) problems.push('a button without a name');
        }
        for (const section of document.querySelectorAll('section')) {
            const id = section.getAttribute('aria-labelledby');
            if (!id || !document.getElementById(id)) problems.push('a section without a heading');
        }
        if (document.getElementById('events').getAttribute('aria-live') !== 'polite') problems.push('events not a live region');
        for (const m of document.querySelectorAll('[role=meter]')) {
            if (!m.getAttribute('aria-label') || m.getAttribute('aria-valuenow') === null) problems.push('a meter without label or value');
        }
        for (const th of document.querySelectorAll('thead th')) {
            if (th.getAttribute('scope') !== 'col') problems.push('a column header without scope');
        }
        // Text contrast (WCAG AA, 4.5:1) of every piece of text that carries state.
        const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
        const lum = ([r, g, b]) => [r, g, b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; })
            .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
        const background = (el) => {
            for (; el; el = el.parentElement) {
                const c = rgb(getComputedStyle(el).backgroundColor);
                if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
            }
            return [255, 255, 255];
        };
        for (const el of document.querySelectorAll('.badge, .units, .address, .summary, .events li span, .events time, td, th, h2, h3')) {
            const [a, b] = [lum(rgb(getComputedStyle(el).color).slice(0, 3)), lum(background(el))];
            const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
            if (ratio < 4.5) problems.push(`contrast ${ratio.toFixed(2)} for "${el.textContent.trim().slice(0, 20)}"`);
        }
        return problems;
        "#,
    )
    .await;
    assert_eq!(report, json!([]), "accessibility problems");

    // A deployment's panel: its rollout and revisions; a reader's change is refused, said.
    c.set_window_size(1280, 1000).await.unwrap();
    let open = format!("button[data-open={name}]");
    // Clicked from the page itself: the table is redrawn at every refresh, so an element found
    // by one command may be gone by the next.
    let open_panel = format!("document.querySelector('{open}').click(); return 1;");
    assert_eq!(js(&c, &open_panel).await, json!(1));
    until(
        &c,
        "the panel",
        Duration::from_secs(10),
        "document.getElementById('detail-rollout').textContent.includes('No rollout')",
    )
    .await;
    assert_eq!(js(&c, "return document.querySelectorAll('#revisions tbody tr').length;").await, json!(1));
    c.find(Locator::Css("#detail-scale")).await.unwrap().click().await.unwrap();
    until(
        &c,
        "the reader refused",
        Duration::from_secs(10),
        "document.getElementById('detail-error').textContent.length > 0",
    )
    .await;

    // The live log pane: every replica's lines, then one replica's, paused and resumed.
    let log_lines = "document.querySelectorAll('#logs div[data-replica]')";
    until(
        &c,
        "lines of several replicas",
        Duration::from_secs(15),
        &format!("new Set([...{log_lines}].map((l) => l.dataset.replica)).size >= 3 && [...{log_lines}].every((l) => / \\| tick \\d+$/.test(l.textContent))"),
    )
    .await;
    let chosen = js(
        &c,
        "const s = document.getElementById('log-replica'); s.value = s.options[1].value;          s.dispatchEvent(new Event('change')); return s.value;",
    )
    .await;
    let chosen = chosen.as_str().unwrap().to_string();
    until(
        &c,
        "only the chosen replica's lines",
        Duration::from_secs(15),
        &format!("{log_lines}.length >= 2 && [...{log_lines}].every((l) => l.dataset.replica === '{chosen}')"),
    )
    .await;
    c.find(Locator::Css("#log-pause")).await.unwrap().click().await.unwrap();
    let held = js(&c, &format!("return {log_lines}.length;")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(js(&c, &format!("return {log_lines}.length;")).await, held, "nothing added while paused");
    until(
        &c,
        "new lines counted while paused",
        Duration::from_secs(5),
        "document.getElementById('log-state').textContent.includes('new')",
    )
    .await;
    c.find(Locator::Css("#log-pause")).await.unwrap().click().await.unwrap();
    until(&c, "the held lines shown on resume", Duration::from_secs(5), &format!("{log_lines}.length > {held}")).await;
    screenshot(&c, "4-logs.png").await;

    // A replica that crashes: the panel's replica table says why it ended.
    let crasher = format!("dashcrash{}", std::process::id());
    create(
        &client,
        &server.url,
        &json!({"image": "local/busybox:1", "replicas": 1, "name": crasher, "command": ["sh", "-c", "echo boom; exit 3"]}),
    )
    .await;
    let open_crasher = format!(
        "const b = document.querySelector('button[data-open={crasher}]'); if (b) b.click(); return b !== null;"
    );
    until(
        &c,
        "the crasher listed",
        Duration::from_secs(15),
        &format!("document.querySelector('button[data-open={crasher}]') !== null"),
    )
    .await;
    assert_eq!(js(&c, &open_crasher).await, json!(true));
    until(
        &c,
        "an ended replica with its exit code",
        Duration::from_secs(30),
        "[...document.querySelectorAll('#replica-history tr[data-state=failed]')].some((r) => r.textContent.includes('exit code 3'))",
    )
    .await;
    screenshot(&c, "5-replica-history.png").await;
    let resp =
        client.delete(format!("{}/v1/deployments/{crasher}", server.url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);

    // As an admin: a rollout under way is shown with its progress, paused, and rolled back
    // from the panel; the revisions say what the rollback restored.
    c.find(Locator::Css("#signout")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("#token")).await.unwrap().send_keys(ADMIN).await.unwrap();
    c.find(Locator::Css("#login button[type=submit]")).await.unwrap().click().await.unwrap();
    until(&c, "signed in again", Duration::from_secs(10), &format!("document.querySelector('{open}') !== null")).await;
    let (_, d) = server::get(&client, &format!("{}/v1/deployments/{name}", server.url), READER).await;
    let body = json!({"version": d["version"], "env": {"REVISION": "2"}, "update": {"monitor": "10m", "progress_deadline": "20m"}});
    let resp = client
        .patch(format!("{}/v1/deployments/{name}", server.url))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(js(&c, &open_panel).await, json!(1));
    until(&c, "the rollout in progress", Duration::from_secs(20), "document.getElementById('detail-rollout').dataset.state === 'in_progress' && !document.getElementById('detail-pause').hidden").await;
    screenshot(&c, "6-rollout.png").await;
    c.find(Locator::Css("#detail-pause")).await.unwrap().click().await.unwrap();
    until(&c, "the rollout paused", Duration::from_secs(10), "document.getElementById('detail-rollout').dataset.state === 'paused' && !document.getElementById('detail-resume').hidden").await;
    c.find(Locator::Css("#detail-rollback")).await.unwrap().click().await.unwrap();
    until(
        &c,
        "rolled back, revision 3 restoring 1",
        Duration::from_secs(60),
        "document.getElementById('detail-rollout').dataset.state === 'none' && \
         document.querySelector('#revisions tr[data-revision=\"3\"]') !== null && \
         document.querySelector('#revisions tr[data-revision=\"3\"]').textContent.includes('restores 1')",
    )
    .await;
    let (_, rollouts) = server::get(&client, &format!("{}/v1/deployments/{name}/rollouts", server.url), READER).await;
    assert_eq!(rollouts[1]["state"], "rolled_back", "{rollouts}");
    screenshot(&c, "7-rolled-back.png").await;

    // Signing out forgets the token.
    c.find(Locator::Css("#signout")).await.unwrap().click().await.unwrap();
    assert_eq!(js(&c, "return sessionStorage.length;").await, json!(0));
    c.close().await.unwrap();

    drop(revive);
    let resp = client.delete(format!("{}/v1/deployments/{name}", server.url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", Duration::from_secs(60), async || {
        server::try_containers_on_engines(nodes, &name)?.is_empty().then_some(())
    })
    .await;
}

/// Over the dashboard's size for the whole document (200 nodes): it shows the counts, a page of
/// node cards (those needing attention first) with more on demand, the deployments with their
/// counts, and a node's replicas when its card is opened; it never asks for the whole `/status`.
#[tokio::test]
async fn the_dashboard_of_a_large_cluster_pages_its_nodes_and_opens_one_on_demand() {
    const IDLE: usize = 210;
    let Some(nodes) = local_cluster::nodes() else { return };
    let Some(driver) = start_chromedriver() else { return };
    let _alone = ONE_AT_A_TIME.lock().await;
    let nodes = &nodes[..3];
    let (server, client) = start_ready_server(nodes).await;
    let name = format!("large{}", std::process::id());
    create(
        &client,
        &server.url,
        &json!({"image": "local/busybox:1", "replicas": 3, "name": name, "command": ["sleep", "600"]}),
    )
    .await;
    wait_for("replicas running", Duration::from_secs(60), async || {
        converged(&client, &server.url, nodes, &name, 3).await
    })
    .await;
    // Nodes whose engine never answers (nothing listens on the discard port): offline.
    for i in 0..IDLE {
        let body = json!({"name": format!("idle-{i:03}"), "address": "tcp://127.0.0.1:9", "capacity": 1});
        let resp = client.post(format!("{}/v1/nodes", server.url)).bearer_auth(ADMIN).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 201);
    }

    let c = browser(&driver).await;
    c.goto(&format!("{}/ui", server.url)).await.unwrap();
    until(&c, "the sign-in form", Duration::from_secs(10), "!document.getElementById('login').hidden").await;
    c.find(Locator::Css("#token")).await.unwrap().send_keys(READER).await.unwrap();
    c.find(Locator::Css("#login button[type=submit]")).await.unwrap().click().await.unwrap();
    let total = IDLE + 3;
    until(
        &c,
        "the counts",
        Duration::from_secs(10),
        &format!("document.getElementById('summary').textContent.startsWith('{total} nodes (3 online)')"),
    )
    .await;
    // A page of cards, the offline ones first; the rest on demand.
    until(&c, "a page of cards", Duration::from_secs(10), "document.querySelectorAll('li.card').length === 200").await;
    assert_eq!(js(&c, "return document.querySelectorAll('li.card[data-status=offline]').length;").await, json!(200));
    let more = js(&c, "const b = document.getElementById('more-nodes'); return [b.hidden, b.textContent];").await;
    assert_eq!(more, json!([false, format!("Show more ({} nodes not shown)", total - 200)]));
    let row = format!("document.querySelector('tr[data-deployment={name}]')");
    until(&c, "the deployment at 3 / 3", Duration::from_secs(10), &format!("{row}.textContent.includes('3 / 3')"))
        .await;
    assert_eq!(js(&c, "document.getElementById('more-nodes').click(); return 1;").await, json!(1));
    until(
        &c,
        "every card",
        Duration::from_secs(10),
        &format!("document.querySelectorAll('li.card').length === {total}"),
    )
    .await;
    assert_eq!(js(&c, "return document.getElementById('more-nodes').hidden;").await, json!(true));
    // No replica is listed until its node's card is opened; then that node's are.
    assert_eq!(js(&c, "return document.querySelectorAll('li.card .replicas li').length;").await, json!(0));
    let holder = &nodes[0].name;
    let on_holder = server::get(&client, &format!("{}/status?node={holder}", server.url), READER).await.1;
    let expected = on_holder["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["replicas"].as_array().unwrap().len())
        .sum::<usize>();
    let open = format!("document.querySelector('button[data-replicas-of={holder}]').click(); return 1;");
    assert_eq!(js(&c, &open).await, json!(1));
    let card = format!("document.querySelector('li.card[data-node={holder}]')");
    until(
        &c,
        "the opened node's replicas",
        Duration::from_secs(10),
        &format!("{card}.querySelectorAll('.replicas li').length === {expected} && {expected} > 0"),
    )
    .await;
    screenshot(&c, "6-large-cluster.png").await;
    // What the page asked for: never the whole document; and when its first render was done.
    let asked_whole = js(
        &c,
        "return performance.getEntriesByType('resource').some((e) => { const u = new URL(e.name); \
         return u.pathname === '/status' && u.search === ''; });",
    )
    .await;
    assert_eq!(asked_whole, json!(false));
    assert!(js(&c, "return Number(document.body.dataset.firstRenderMs);").await.as_f64().unwrap() > 0.0);
    let _ = c.close().await;

    let resp = client.delete(format!("{}/v1/deployments/{name}", server.url)).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    wait_for("containers removed", Duration::from_secs(60), async || {
        server::try_containers_on_engines(nodes, &name)?.is_empty().then_some(())
    })
    .await;
}
