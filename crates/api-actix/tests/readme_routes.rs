//! The README's route table names every path of the OpenAPI document with its methods, so the
//! front door cannot fall behind the API (a tidy rule that needs the document, hence here).

use std::collections::BTreeSet;

use api_actix::ApiDoc;
use utoipa::OpenApi;

/// The first cell of each row of the README's route table: `| `GET /x` · `POST .../y` | ... |`.
fn route_cells(readme: &str) -> Vec<String> {
    let table = readme.split("### HTTP API").nth(1).expect("the README has an HTTP API section");
    table
        .lines()
        .skip_while(|l| !l.starts_with("| Route"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.split(" | ").next().map(|c| c.trim_start_matches('|').trim().to_string()))
        .collect()
}

/// Each `METHODS path` the cells name, paths written in full (`...` stands for the cell's first
/// path up to its first `{...}`, e.g. `/v1/deployments/{name}`), query strings left out.
fn named_routes(cells: &[String]) -> BTreeSet<(String, String)> {
    let mut named = BTreeSet::new();
    for cell in cells {
        let mut base = String::new();
        for part in cell.split('`').skip(1).step_by(2) {
            let part = part.split('?').next().unwrap_or(part).trim();
            let (methods, path) = match part.rfind(' ') {
                Some(at) => (&part[..at], &part[at + 1..]),
                None => continue,
            };
            let path = match path.strip_prefix("...") {
                Some(rest) => format!("{base}{rest}"),
                None => path.to_string(),
            };
            if let (true, Some(at)) = (base.is_empty(), path.find('}')) {
                base = path[..=at].to_string();
            }
            for method in methods.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                named.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
    }
    named
}

#[test]
fn every_route_of_the_api_is_in_the_readme_route_table() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let named = named_routes(&route_cells(&readme));
    let document = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let mut missing = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            if !named.contains(&(method.clone(), path.clone())) {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(missing.is_empty(), "routes the README's table does not name: {missing:?}\n(it names {named:?})");
}

#[test]
fn the_table_reader_expands_methods_and_elided_paths() {
    let cells = vec!["`GET, POST /v1/x?limit=N` · `GET, DELETE /v1/x/{name}` · `POST .../y/{id}/drain`".to_string()];
    let named: Vec<String> = named_routes(&cells).into_iter().map(|(m, p)| format!("{m} {p}")).collect();
    assert_eq!(
        named,
        ["DELETE /v1/x/{name}", "GET /v1/x", "GET /v1/x/{name}", "POST /v1/x", "POST /v1/x/{name}/y/{id}/drain"]
    );
}
