//! The OpenAPI document covers every route the router serves, and nothing it does not.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use outpost_portal::api::{route_table, ApiOptions};

use crate::harness::{Auth, Harness, Options};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn documented() -> BTreeSet<(String, String)> {
    let doc: serde_json::Value =
        serde_json::from_str(outpost_portal::api::openapi::DOCUMENT).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                assert!(
                    op["responses"].is_object(),
                    "{method} {path} has no responses"
                );
                out.insert((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let routed: BTreeSet<(String, String)> = route_table(ApiOptions { dev_clock: true })
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p.to_owned()))
        .collect();
    let documented = documented();
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes missing from openapi.json: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(
        extra.is_empty(),
        "openapi.json documents routes that do not exist: {extra:?}"
    );
    assert!(routed.len() >= 18);
}

#[tokio::test]
async fn every_route_in_the_table_is_really_routed() {
    let h = Harness::with(Options {
        dev_clock: true,
        ..Options::default()
    })
    .await;
    for (method, path) in route_table(ApiOptions { dev_clock: true }) {
        let concrete = path.replace("{id}", "ag-nobody").replace("{cid}", "1");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = h
            .call(
                method.clone(),
                &format!("/api/v1{concrete}"),
                None,
                Auth::None,
            )
            .await;
        assert_ne!(
            resp.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert_ne!(resp.error(), "no_route", "{method} {path}");
    }
}

#[tokio::test]
async fn the_document_is_served_without_a_token() {
    let h = Harness::new().await;
    let resp = h
        .call(Method::GET, "/api/v1/openapi.json", None, Auth::None)
        .await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body["info"]["title"], "Outpost portal API");
    assert!(resp.body["paths"]["/agents/{id}/commands"]["post"].is_object());
}
