//! Every route through actix's test service, with the in-memory store and a mocked control
//! plane: status codes, bodies, the auth matrix, and validation errors naming the field.

use std::io::Read;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::http::{Method, StatusCode};
use actix_web::{App, test};
use api_actix::{ApiState, Role, Tokens};
use orchestrator_core::memory::MemoryStore;
use orchestrator_core::{
    Deployment, DeploymentSpec, DeploymentStore, Error, Leadership, Limits, LoopHealth, MockControlPlane, NewNode,
    NodeName, NodeStatus, NodeStore, Placement, ReplicaFilter, ReplicaStore,
};
use serde_json::{Value, json};

const ADMIN: &str = "admin-token-0123456789abcdef0123456789abcdef";
const READER: &str = "reader-token-0123456789abcdef0123456789abcdef";

fn deployment_from(spec: &DeploymentSpec, version: u64) -> Deployment {
    Deployment {
        name: spec.name.clone(),
        image: spec.image.clone(),
        command: spec.command.clone(),
        replicas: spec.replicas,
        units: spec.units,
        version,
        created_at: SystemTime::now(),
        updated_at: SystemTime::now(),
    }
}

fn control() -> MockControlPlane {
    let mut control = MockControlPlane::new();
    control.expect_create_deployment().returning(|spec| {
        if spec.name.as_str() == "web" {
            return Err(Error::already_exists(orchestrator_core::error::Kind::Deployment, "web"));
        }
        Ok(deployment_from(&spec, 1))
    });
    control.expect_scale_deployment().returning(|name, replicas, version| {
        if version != 1 {
            return Err(Error::Conflict(format!("deployment {name} is at version 1, not {version}")));
        }
        let spec = DeploymentSpec::new(
            Some(name.as_str()),
            "local/busybox:1",
            vec![],
            replicas.into(),
            None,
            &Limits::default(),
        )
        .unwrap();
        Ok(deployment_from(&spec, 2))
    });
    control.expect_delete_deployment().returning(|_| Ok(()));
    control.expect_rebalance_deployment().returning(|_| Ok(1));
    control.expect_add_node().returning(|n| {
        Ok(orchestrator_core::Node {
            name: n.name,
            address: n.address,
            capacity: n.capacity,
            available: n.capacity,
            status: NodeStatus::Offline,
            last_heartbeat: None,
        })
    });
    control.expect_drain_node().returning(|_| Ok(0));
    control
        .expect_remove_node()
        .returning(|n| if n.as_str() == "busy" { Err(Error::Conflict("still has replicas".into())) } else { Ok(()) });
    control.expect_loop_stats().returning(|| orchestrator_core::LoopStats {
        rebalances: 3,
        heartbeat_ticks: 42,
        ..Default::default()
    });
    control.expect_loop_health().returning(|| LoopHealth { heartbeat: true, rebalancer: true, reconciler: true });
    control.expect_leadership().returning(|| Leadership::Leader { id: "server-a".into(), term: 3 });
    control
}

async fn seeded_store() -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    store.add_node(NewNode::new("node1", "tcp://10.123.0.11:2375", 10).unwrap()).await.unwrap();
    store.set_node_status(&NodeName::new("node1").unwrap(), NodeStatus::Online, Some(SystemTime::now())).await.unwrap();
    let spec = DeploymentSpec::new(Some("web"), "local/busybox:1", vec![], 2, None, &Limits::default()).unwrap();
    let web = store.create_deployment(spec).await.unwrap();
    let placed = store
        .place_replicas(&[
            Placement { deployment: web.name.clone(), node: NodeName::new("node1").unwrap(), units: 1 },
            Placement { deployment: web.name.clone(), node: NodeName::new("node1").unwrap(), units: 1 },
        ])
        .await
        .unwrap();
    store.mark_running(placed[0].id, "c0ffee").await.unwrap();
    store
}

macro_rules! app {
    ($store:expr) => {
        test::init_service(App::new().configure(|cfg| {
            let mut state = ApiState::new($store.clone(), $store.clone(), Arc::new(control()));
            state.body_limit = 1024;
            state.metrics = Some(api_actix::Metrics::new().unwrap());
            api_actix::configure(cfg, state, Tokens::new().with(ADMIN, Role::Admin).with(READER, Role::Reader));
        }))
        .await
    };
}

fn request(method: Method, uri: &str, token: Option<&str>, body: Option<Value>) -> test::TestRequest {
    let mut req = test::TestRequest::default().method(method).uri(uri);
    if let Some(token) = token {
        req = req.insert_header(("Authorization", format!("Bearer {token}")));
    }
    if let Some(body) = body {
        req = req.set_json(body);
    }
    req
}

#[actix_web::test]
async fn seed_routes_create_and_status() {
    let store = seeded_store().await;
    let app = app!(store);
    let body = json!({"image": "local/busybox:1", "replicas": 3, "command": ["sleep", "60"]});
    let resp = test::call_service(&app, request(Method::POST, "/create", Some(ADMIN), Some(body)).to_request()).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = test::read_body_json(resp).await;
    assert_eq!((created["name"].as_str(), created["required"].as_u64()), (Some("busybox"), Some(3)));
    assert_eq!(created["command"], json!(["sleep", "60"]));

    let resp = test::call_service(&app, request(Method::GET, "/status", Some(READER), None).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let status: Value = test::read_body_json(resp).await;
    assert_eq!(status["leader"], "server-a");
    assert_eq!(status["nodes"][0]["name"], "node1");
    assert_eq!(status["nodes"][0]["available"], 8);
    assert_eq!(status["nodes"][0]["status"], "online");
    let web = &status["deployments"][0];
    assert_eq!((web["required"].as_u64(), web["actual"].as_u64()), (Some(2), Some(1)));
    assert_eq!(web["replicas"][0]["node_address"], "tcp://10.123.0.11:2375");
    assert_eq!(web["replicas"][0]["container_id"], "c0ffee");
    assert_eq!(web["replicas"][1]["state"], "pending");
}

#[actix_web::test]
async fn status_is_cached_but_follows_every_store_write() {
    let store = seeded_store().await;
    let app = app!(store);
    let get_status = || async {
        let resp = test::call_service(&app, request(Method::GET, "/status", Some(READER), None).to_request()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        test::read_body(resp).await
    };
    let before: Value = serde_json::from_slice(&get_status().await).unwrap();
    assert_eq!(before["deployments"][0]["actual"], 1);

    // A write the API did not make (the scheduler marking a replica running) shows at once.
    let pending = store.list_replicas(ReplicaFilter::default().active()).await.unwrap();
    let pending = pending.iter().find(|r| r.container_id.is_none()).unwrap();
    store.mark_running(pending.id, "beef").await.unwrap();
    let after: Value = serde_json::from_slice(&get_status().await).unwrap();
    assert_eq!(after["deployments"][0]["actual"], 2);
    assert_eq!(after["deployments"][0]["replicas"][1]["container_id"], "beef");
}

#[actix_web::test]
async fn status_is_gzipped_for_clients_that_accept_it() {
    let store = seeded_store().await;
    let app = app!(store);
    let get = |encoding: &'static str| {
        let req = request(Method::GET, "/status", Some(READER), None).insert_header(("Accept-Encoding", encoding));
        test::call_service(&app, req.to_request())
    };
    let plain = get("identity").await;
    assert!(plain.headers().get("content-encoding").is_none());
    let plain: Value = serde_json::from_slice(&test::read_body(plain).await).unwrap();

    for accepted in ["gzip", "br, gzip;q=0.5", "*"] {
        let resp = get(accepted).await;
        assert_eq!(resp.headers().get("content-encoding").unwrap(), "gzip", "{accepted}");
        assert_eq!(resp.headers().get("vary").unwrap(), "accept-encoding");
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(&test::read_body(resp).await[..]).read_to_end(&mut json).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&json).unwrap(), plain, "{accepted}");
    }
    let refused = get("gzip;q=0, identity").await;
    assert!(refused.headers().get("content-encoding").is_none());
}

#[actix_web::test]
async fn openapi_documents_every_route_and_each_needs_a_token() {
    let store = seeded_store().await;
    let app = app!(store);
    let resp = test::call_service(&app, request(Method::GET, "/openapi.json", None, None).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: Value = test::read_body_json(resp).await;
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    documented.sort();
    let expected = [
        ("DELETE", "/v1/deployments/{name}"),
        ("DELETE", "/v1/nodes/{name}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/status"),
        ("GET", "/v1/audit"),
        ("GET", "/v1/deployments"),
        ("GET", "/v1/deployments/{name}"),
        ("GET", "/v1/events"),
        ("GET", "/v1/events/stream"),
        ("GET", "/v1/nodes"),
        ("GET", "/v1/nodes/{name}"),
        ("PATCH", "/v1/deployments/{name}"),
        ("POST", "/create"),
        ("POST", "/v1/deployments"),
        ("POST", "/v1/deployments/{name}/rebalance"),
        ("POST", "/v1/nodes"),
        ("POST", "/v1/nodes/{name}/drain"),
        ("POST", "/v1/tokens"),
    ];
    assert_eq!(documented, expected.map(|(m, p)| (m.to_string(), p.to_string())));

    // Every documented route except the probes refuses a request without a token.
    for (method, path) in documented.iter().filter(|(_, p)| !p.ends_with("z")) {
        let uri = path.replace("{name}", "web");
        let req = request(Method::from_bytes(method.as_bytes()).unwrap(), &uri, None, None);
        let resp = test::call_service(&app, req.to_request()).await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }

    let resp = test::call_service(&app, request(Method::GET, "/docs/", None, None).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let page = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    assert!(page.contains("swagger-ui"), "{page}");
}

/// Every route of the OpenAPI document, with no token, a bad token, a reader token and an admin
/// token: who may do what is decided by the role alone, and every mutation attempt (allowed or
/// refused) is in the audit log under the caller's token id.
#[actix_web::test]
async fn the_auth_matrix_holds_for_every_documented_route_and_mutations_are_audited() {
    let store = seeded_store().await;
    let app = app!(store);
    let resp = test::call_service(&app, request(Method::GET, "/openapi.json", None, None).to_request()).await;
    let doc: Value = test::read_body_json(resp).await;
    let mut routes: Vec<(Method, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            routes.push((Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(), path.clone()));
        }
    }
    assert!(routes.len() >= 19, "{routes:?}");
    let mut mutations = 0;
    for (method, path) in &routes {
        if path.ends_with("healthz") || path.ends_with("readyz") {
            continue;
        }
        let uri = path.replace("{name}", if path.contains("nodes") { "node1" } else { "web" });
        let call = |token: Option<&'static str>| {
            let req = request(method.clone(), &uri, token, None);
            test::call_service(&app, req.to_request())
        };
        assert_eq!(call(None).await.status(), StatusCode::UNAUTHORIZED, "no token: {method} {path}");
        assert_eq!(
            call(Some("not-a-real-token-0123456789abcdef0123")).await.status(),
            StatusCode::UNAUTHORIZED,
            "bad token: {method} {path}"
        );
        let as_reader = call(Some(READER)).await.status();
        let as_admin = call(Some(ADMIN)).await.status();
        if *method == Method::GET && path == "/v1/audit" {
            // Who changed what is for admins only.
            assert_eq!(as_reader, StatusCode::FORBIDDEN, "reader: {method} {path}");
            assert!(as_admin.is_success(), "admin: {method} {path}: {as_admin}");
        } else if *method == Method::GET {
            assert!(as_reader.is_success(), "reader: {method} {path}: {as_reader}");
            assert!(as_admin.is_success(), "admin: {method} {path}: {as_admin}");
        } else {
            mutations += 1;
            assert_eq!(as_reader, StatusCode::FORBIDDEN, "reader: {method} {path}");
            assert!(
                as_admin != StatusCode::UNAUTHORIZED && as_admin != StatusCode::FORBIDDEN,
                "admin: {method} {path}: {as_admin}"
            );
        }
    }
    // Two audited attempts per mutating route (the reader's refused one and the admin's), plus
    // the bad-token and no-token attempts, which are refused before a caller is known.
    let resp = test::call_service(&app, request(Method::GET, "/v1/audit?limit=1000", Some(ADMIN), None).to_request()).await;
    let audit: Value = test::read_body_json(resp).await;
    let entries = audit.as_array().unwrap();
    let by = |id: &str, status: u16| entries.iter().filter(|e| e["token_id"] == id && e["status"] == status).count();
    assert_eq!(by("bootstrap-reader", 403), mutations, "{audit}");
    let by_admin = entries.iter().filter(|e| e["token_id"] == "bootstrap-admin").count();
    assert_eq!(by_admin, mutations, "{audit}");
}

#[actix_web::test]
async fn events_are_listed_after_an_id_and_validated() {
    let store = seeded_store().await;
    let app = app!(store);
    let get = |uri: &str| test::call_service(&app, request(Method::GET, uri, Some(READER), None).to_request());

    let resp = get("/v1/events").await;
    assert_eq!(resp.status(), StatusCode::OK);
    let all: Value = test::read_body_json(resp).await;
    let kinds: Vec<&str> = all.as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["node.added", "node.online", "deployment.created", "replica.placed", "replica.placed", "replica.started"]
    );
    assert_eq!(all[3]["node"], "node1");
    assert_eq!(all[3]["deployment"], "web");
    assert!(all[0].get("deployment").is_none(), "absent fields are left out: {}", all[0]);

    let resp = get("/v1/events?since=3&limit=2").await;
    let page: Value = test::read_body_json(resp).await;
    let ids: Vec<u64> = page.as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [4, 5]);

    let resp = get("/v1/events?tail=2").await;
    let newest: Value = test::read_body_json(resp).await;
    let ids: Vec<u64> = newest.as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [5, 6]);

    for (uri, field) in [
        ("/v1/events?tail=0", "tail"),
        ("/v1/events?tail=5&since=1", "tail"),
        ("/v1/events?since=-1", "since"),
        ("/v1/events?since=abc", "since"),
        ("/v1/events?limit=0", "limit"),
        ("/v1/events?limit=1001", "limit"),
    ] {
        let resp = get(uri).await;
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{uri}");
        let err: Value = test::read_body_json(resp).await;
        assert_eq!(err["error"]["field"], field, "{uri}");
    }
}

/// The next chunk of a streaming body, or `None` if none comes within `wait`.
async fn next_chunk<B: actix_web::body::MessageBody + Unpin>(
    body: &mut B,
    wait: std::time::Duration,
) -> Option<String> {
    let chunk = tokio::time::timeout(wait, std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_next(cx)))
        .await
        .ok()??;
    Some(String::from_utf8(chunk.ok()?.to_vec()).unwrap())
}

#[actix_web::test]
async fn the_event_stream_resumes_after_last_event_id_and_sends_new_events_live() {
    let store = seeded_store().await;
    let app = app!(store);
    let req = request(Method::GET, "/v1/events/stream", Some(READER), None).insert_header(("Last-Event-ID", "4"));
    let resp = test::call_service(&app, req.to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get("content-type").unwrap(), "text/event-stream");
    let mut body = resp.into_body();
    let wait = std::time::Duration::from_secs(3);
    assert_eq!(next_chunk(&mut body, wait).await.unwrap(), "retry: 1000\n\n");
    let fifth = next_chunk(&mut body, wait).await.unwrap();
    assert!(fifth.starts_with("id: 5\nevent: replica.placed\ndata: {"), "{fifth}");
    assert!(fifth.ends_with("}\n\n"), "{fifth}");
    let sixth = next_chunk(&mut body, wait).await.unwrap();
    assert!(sixth.starts_with("id: 6\nevent: replica.started\n"), "{sixth}");
    assert_eq!(next_chunk(&mut body, std::time::Duration::from_millis(500)).await, None, "nothing new yet");

    // A change now is streamed as it happens.
    store.scale_deployment(&orchestrator_core::DeploymentName::new("web").unwrap(), 3, 1).await.unwrap();
    let live = next_chunk(&mut body, wait).await.unwrap();
    assert!(live.starts_with("id: 7\nevent: deployment.scaled\n"), "{live}");
    assert!(live.contains(r#""message":"web: 2 -> 3 replicas""#), "{live}");

    let bad = request(Method::GET, "/v1/events/stream", Some(READER), None).insert_header(("Last-Event-ID", "x"));
    let resp = test::call_service(&app, bad.to_request()).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let err: Value = test::read_body_json(resp).await;
    assert_eq!(err["error"]["field"], "Last-Event-ID");
}

#[actix_web::test]
async fn the_dashboard_is_served_without_a_token_and_holds_no_data() {
    let store = seeded_store().await;
    let app = app!(store);
    let resp = test::call_service(&app, request(Method::GET, "/ui", None, None).to_request()).await;
    assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(resp.headers().get("location").unwrap(), "/ui/");
    for (path, kind, marker) in [
        ("/ui/", "text/html", "<main>"),
        ("/ui/app.js", "text/javascript", "/v1/events/stream"),
        ("/ui/style.css", "text/css", ".card"),
    ] {
        let resp = test::call_service(&app, request(Method::GET, path, None, None).to_request()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(resp.headers().get("content-type").unwrap().to_str().unwrap().starts_with(kind), "{path}");
        let csp = resp.headers().get("content-security-policy").unwrap().to_str().unwrap().to_string();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
        let body = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
        assert!(body.contains(marker), "{path}");
        // Nothing of the cluster in the static files.
        assert!(!body.contains("node1") && !body.contains("c0ffee"), "{path}");
    }
    // The page's data still needs a token.
    let resp = test::call_service(&app, request(Method::GET, "/status", None, None).to_request()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[actix_web::test]
async fn create_by_name_is_idempotent() {
    let store = seeded_store().await;
    let app = app!(store);
    let call =
        |uri: &str, body| test::call_service(&app, request(Method::POST, uri, Some(ADMIN), Some(body)).to_request());

    // "web" exists with 2 replicas of local/busybox:1: the same create again is answered with it.
    for uri in ["/v1/deployments", "/create"] {
        let resp = call(uri, json!({"name": "web", "image": "local/busybox:1", "replicas": 2})).await;
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        let body: Value = test::read_body_json(resp).await;
        assert_eq!((body["name"].as_str(), body["required"].as_u64()), (Some("web"), Some(2)));
    }
    // Another spec under the taken name is a conflict, whatever differs.
    for other in [
        json!({"name": "web", "image": "local/busybox:1", "replicas": 3}),
        json!({"name": "web", "image": "local/busybox:2", "replicas": 2}),
        json!({"name": "web", "image": "local/busybox:1", "replicas": 2, "units": 2}),
        json!({"name": "web", "image": "local/busybox:1", "replicas": 2, "command": ["sleep", "1"]}),
    ] {
        let resp = call("/v1/deployments", other.clone()).await;
        assert_eq!(resp.status(), StatusCode::CONFLICT, "{other}");
        let err: Value = test::read_body_json(resp).await;
        assert_eq!(err["error"]["code"], "conflict");
    }
    let resp = call("/v1/deployments", json!({"name": "api", "image": "local/busybox:1", "replicas": 1})).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[actix_web::test]
async fn resource_routes() {
    let store = seeded_store().await;
    let app = app!(store);
    let call = |m, uri: &str, body| test::call_service(&app, request(m, uri, Some(ADMIN), body).to_request());

    let resp = call(Method::GET, "/v1/deployments", None).await;
    let list: Value = test::read_body_json(resp).await;
    assert_eq!(list[0]["name"], "web");
    let resp = call(Method::GET, "/v1/deployments/web", None).await;
    let one: Value = test::read_body_json(resp).await;
    assert_eq!(one["replicas"].as_array().unwrap().len(), 2);
    assert_eq!(call(Method::GET, "/v1/deployments/nope", None).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(call(Method::GET, "/v1/deployments/Bad_Name", None).await.status(), StatusCode::NOT_FOUND);

    let resp = call(Method::PATCH, "/v1/deployments/web", Some(json!({"replicas": 5, "version": 1}))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = call(Method::PATCH, "/v1/deployments/web", Some(json!({"replicas": 5, "version": 7}))).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let err: Value = test::read_body_json(resp).await;
    assert_eq!(err["error"]["code"], "conflict");
    let resp = call(Method::POST, "/v1/deployments/web/rebalance", None).await;
    let moved: Value = test::read_body_json(resp).await;
    assert_eq!(moved["moved"], 1);
    assert_eq!(call(Method::DELETE, "/v1/deployments/web", None).await.status(), StatusCode::NO_CONTENT);

    let resp = call(
        Method::POST,
        "/v1/nodes",
        Some(json!({"name": "node2", "address": "unix:///run/n2.sock", "capacity": 4})),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = call(Method::GET, "/v1/nodes", None).await;
    let nodes: Value = test::read_body_json(resp).await;
    assert_eq!(nodes[0]["name"], "node1");
    assert_eq!(call(Method::GET, "/v1/nodes/node1", None).await.status(), StatusCode::OK);
    assert_eq!(call(Method::GET, "/v1/nodes/ghost", None).await.status(), StatusCode::NOT_FOUND);
    let resp = call(Method::POST, "/v1/nodes/node1/drain", None).await;
    let drained: Value = test::read_body_json(resp).await;
    assert_eq!(drained["remaining"], 0);
    assert_eq!(call(Method::DELETE, "/v1/nodes/node1", None).await.status(), StatusCode::NO_CONTENT);
    assert_eq!(call(Method::DELETE, "/v1/nodes/busy", None).await.status(), StatusCode::CONFLICT);
    assert_eq!(call(Method::GET, "/v1/nothing", None).await.status(), StatusCode::NOT_FOUND);
}

#[actix_web::test]
async fn auth_matrix_on_every_route() {
    let store = seeded_store().await;
    let app = app!(store);
    let routes: &[(Method, &str, Option<Value>)] = &[
        (Method::POST, "/create", Some(json!({"image": "a", "replicas": 1}))),
        (Method::GET, "/status", None),
        (Method::GET, "/v1/deployments", None),
        (Method::POST, "/v1/deployments", Some(json!({"image": "b", "replicas": 1}))),
        (Method::GET, "/v1/deployments/web", None),
        (Method::PATCH, "/v1/deployments/web", Some(json!({"replicas": 1, "version": 1}))),
        (Method::POST, "/v1/deployments/web/rebalance", None),
        (Method::DELETE, "/v1/deployments/web", None),
        (Method::GET, "/v1/nodes", None),
        (Method::POST, "/v1/nodes", Some(json!({"name": "n9", "address": "tcp://127.0.0.1:1", "capacity": 1}))),
        (Method::GET, "/v1/nodes/node1", None),
        (Method::POST, "/v1/nodes/node1/drain", None),
        (Method::DELETE, "/v1/nodes/node1", None),
        (Method::POST, "/v1/tokens", Some(json!({"role": "reader"}))),
        (Method::GET, "/v1/audit", None),
        (Method::GET, "/metrics", None),
    ];
    for (method, uri, body) in routes {
        let refused_to_readers = *method != Method::GET || *uri == "/v1/audit";
        for (token, expected) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("wrong"), StatusCode::UNAUTHORIZED),
            (Some(READER), if refused_to_readers { StatusCode::FORBIDDEN } else { StatusCode::OK }),
        ] {
            let resp = test::call_service(&app, request(method.clone(), uri, token, body.clone()).to_request()).await;
            assert_eq!(resp.status(), expected, "{method} {uri} with {token:?}");
            if expected == StatusCode::UNAUTHORIZED {
                assert!(resp.headers().contains_key("www-authenticate"), "{method} {uri}");
                let err: Value = test::read_body_json(resp).await;
                assert_eq!(err["error"]["code"], "unauthorized");
            }
        }
        let resp = test::call_service(&app, request(method.clone(), uri, Some(ADMIN), body.clone()).to_request()).await;
        assert!(resp.status().is_success(), "{method} {uri} as admin: {}", resp.status());
    }
    for probe in ["/healthz", "/readyz"] {
        let resp = test::call_service(&app, request(Method::GET, probe, None, None).to_request()).await;
        assert_eq!(resp.status(), StatusCode::OK, "{probe} needs no token");
    }
}

#[actix_web::test]
async fn bad_input_is_a_4xx_naming_the_field_and_writes_nothing() {
    let store = seeded_store().await;
    let app = app!(store);
    let cases = [
        (json!({"image": "a", "replicas": -1}), StatusCode::UNPROCESSABLE_ENTITY, Some("replicas")),
        (json!({"image": "a", "replicas": 10001}), StatusCode::UNPROCESSABLE_ENTITY, Some("replicas")),
        (json!({"image": "Bad Image", "replicas": 1}), StatusCode::UNPROCESSABLE_ENTITY, Some("image")),
        (json!({"image": "a", "replicas": 1, "name": "No_Good"}), StatusCode::UNPROCESSABLE_ENTITY, Some("name")),
        (json!({"image": "a", "replicas": 1, "units": 0}), StatusCode::UNPROCESSABLE_ENTITY, Some("units")),
        (json!({"image": "a", "replicas": "three"}), StatusCode::BAD_REQUEST, Some("replicas")),
        (json!({"image": "a", "replicas": 1, "colour": "red"}), StatusCode::BAD_REQUEST, Some("colour")),
        (json!({"replicas": 1}), StatusCode::BAD_REQUEST, None),
    ];
    for (body, status, field) in cases {
        let resp =
            test::call_service(&app, request(Method::POST, "/create", Some(ADMIN), Some(body.clone())).to_request())
                .await;
        assert_eq!(resp.status(), status, "{body}");
        let err: Value = test::read_body_json(resp).await;
        assert_eq!(err["error"]["field"].as_str(), field, "{body}: {err}");
        assert!(err["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let node = json!({"name": "n2", "address": "ftp://x:1", "capacity": 1});
    let resp = test::call_service(&app, request(Method::POST, "/v1/nodes", Some(ADMIN), Some(node)).to_request()).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let err: Value = test::read_body_json(resp).await;
    assert_eq!(err["error"]["field"], "address");

    let malformed = test::TestRequest::post()
        .uri("/create")
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .insert_header(("Content-Type", "application/json"))
        .set_payload("{\"image\": ");
    let resp = test::call_service(&app, malformed.to_request()).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let err: Value = test::read_body_json(resp).await;
    assert_eq!(err["error"]["code"], "malformed_json");

    let too_big = json!({"image": "a", "replicas": 1, "command": ["x".repeat(2_000)]});
    let resp =
        test::call_service(&app, request(Method::POST, "/create", Some(ADMIN), Some(too_big)).to_request()).await;
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let text = test::TestRequest::post()
        .uri("/create")
        .insert_header(("Authorization", format!("Bearer {ADMIN}")))
        .insert_header(("Content-Type", "text/plain"))
        .set_payload("image=a");
    let resp = test::call_service(&app, text.to_request()).await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Nothing of the above reached the store.
    assert_eq!(store.list_deployments().await.unwrap().len(), 1);
    assert_eq!(store.list_nodes().await.unwrap().len(), 1);
}

#[actix_web::test]
async fn tokens_made_through_the_api_work_and_every_mutation_is_audited() {
    let store = seeded_store().await;
    let app = app!(store);
    let resp = test::call_service(
        &app,
        request(Method::POST, "/v1/tokens", Some(ADMIN), Some(json!({"role": "reader"}))).to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let made: Value = test::read_body_json(resp).await;
    let (id, token) = (made["id"].as_str().unwrap().to_string(), made["token"].as_str().unwrap().to_string());
    assert_eq!(token.len(), 64, "32 random bytes, hex");
    assert!(id.starts_with("tok-") && !token.contains(&id[4..]), "the id is no part of the token");

    let resp = test::call_service(&app, request(Method::GET, "/status", Some(&token), None).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp =
        test::call_service(&app, request(Method::DELETE, "/v1/deployments/web", Some(&token), None).to_request()).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = test::call_service(
        &app,
        request(Method::POST, "/v1/tokens", Some(ADMIN), Some(json!({"role": "root"}))).to_request(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let resp = test::call_service(&app, request(Method::DELETE, "/v1/nodes/node1", None, None).to_request()).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp =
        test::call_service(&app, request(Method::GET, "/v1/audit?limit=10", Some(ADMIN), None).to_request()).await;
    let log: Value = test::read_body_json(resp).await;
    let seen: Vec<(String, String, u64)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["token_id"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("anonymous".to_string(), "DELETE /v1/nodes/node1".to_string(), 401),
            ("bootstrap-admin".into(), "POST /v1/tokens".into(), 422),
            (id.clone(), "DELETE /v1/deployments/web".into(), 403),
            ("bootstrap-admin".into(), "POST /v1/tokens".into(), 201),
        ],
        "reads are not audited; every mutation attempt is, newest first"
    );
    assert!(!log.to_string().contains(&token), "the token never appears in the audit log");
}

#[actix_web::test]
async fn metrics_report_cluster_gauges_and_loop_counters() {
    let store = seeded_store().await;
    let app = app!(store);
    let resp = test::call_service(&app, request(Method::GET, "/metrics", Some(READER), None).to_request()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(test::read_body(resp).await.to_vec()).unwrap();
    for line in [
        "orchestrator_nodes{status=\"online\"} 1",
        "orchestrator_nodes{status=\"offline\"} 0",
        "orchestrator_replicas_required 2",
        "orchestrator_replicas_running 1",
        "orchestrator_deployments_degraded 1",
        "orchestrator_rebalances_total 3",
        "orchestrator_heartbeat_ticks_total 42",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in:\n{text}");
    }
}
