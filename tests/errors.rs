//! The error classes every endpoint shares, in DRF's shapes. None of them may be a 500.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, http_client};

const COLLECTIONS: [&str; 5] =
    ["/api/agents/", "/api/tools/", "/api/agent-tools/", "/api/templates/", "/api/sessions/"];

#[tokio::test]
async fn malformed_json_is_a_parse_error() {
    let app = TestApp::spawn().await;
    for path in COLLECTIONS {
        let (status, body) = app.send_raw(Method::POST, path, "application/json", "{\"name\": ").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.starts_with("JSON parse error - "), "{path}: {detail}");
    }
}

#[tokio::test]
async fn a_body_that_is_not_json_is_an_unsupported_media_type() {
    let app = TestApp::spawn().await;
    for path in COLLECTIONS {
        assert_eq!(
            app.send_raw(Method::POST, path, "text/plain", "name=x").await,
            (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({"detail": "Unsupported media type \"text/plain\" in request."})
            ),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_a_non_field_error() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.post("/api/agents/", json!(["name"])).await,
        (StatusCode::BAD_REQUEST, json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}))
    );
}

#[tokio::test]
async fn unknown_ids_and_paths_are_not_found() {
    let app = TestApp::spawn().await;
    let not_found = (StatusCode::NOT_FOUND, json!({"detail": "Not found."}));
    for collection in COLLECTIONS {
        for id in ["12345", "abc", "-1", "99999999999999999999999"] {
            let path = format!("{collection}{id}/");
            assert_eq!(app.get(&path).await, not_found, "GET {path}");
            assert_eq!(app.delete(&path).await, not_found, "DELETE {path}");
        }
    }
    for path in ["/api/agents/1/", "/api/tools/1/", "/api/agent-tools/1/", "/api/templates/1/"] {
        assert_eq!(app.patch(path, json!({})).await, not_found, "PATCH {path}");
        assert_eq!(app.put(path, json!({})).await.0, StatusCode::BAD_REQUEST, "PUT {path}: validation comes first");
    }
    assert_eq!(app.get("/api/nothing-here/").await, not_found);
    assert_eq!(app.get("/api/agents").await, not_found, "the seed's paths end with a slash");
}

#[tokio::test]
async fn a_wrong_method_is_405_with_drf_detail() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.call(Method::PATCH, "/api/agents/", Some(json!({}))).await,
        (StatusCode::METHOD_NOT_ALLOWED, json!({"detail": "Method \"PATCH\" not allowed."}))
    );
    assert_eq!(
        app.call(Method::DELETE, "/api/tools/", None).await,
        (StatusCode::METHOD_NOT_ALLOWED, json!({"detail": "Method \"DELETE\" not allowed."}))
    );
    assert_eq!(
        app.call(Method::POST, "/api/sessions/1/messages/", Some(json!({}))).await,
        (StatusCode::METHOD_NOT_ALLOWED, json!({"detail": "Method \"POST\" not allowed."}))
    );
}

#[tokio::test]
async fn a_bodiless_post_lists_the_required_fields() {
    let app = TestApp::spawn().await;
    let token = app.token.clone().unwrap();
    let response = http_client().post(app.url("/api/templates/")).bearer_auth(token).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<serde_json::Value>().await.unwrap(),
        json!({"name": ["This field is required."], "template": ["This field is required."]})
    );
}

#[tokio::test]
async fn a_filter_that_is_not_an_id_names_the_parameter() {
    let app = TestApp::spawn().await;
    for path in ["/api/agent-tools/?agent=x", "/api/templates/?agent=x", "/api/sessions/?agent=1.5"] {
        assert_eq!(
            app.get(path).await,
            (StatusCode::BAD_REQUEST, json!({"agent": ["Enter a whole number."]})),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_oversized_body_is_413_not_500() {
    let app = TestApp::spawn().await;
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(3 * 1024 * 1024));
    let (status, body) = app.send_raw(Method::POST, "/api/agents/", "application/json", &huge).await;
    assert_eq!((status, body), (StatusCode::PAYLOAD_TOO_LARGE, json!({"detail": "Request body is too large."})));
}

#[tokio::test]
async fn json_nested_deeper_than_the_cap_is_refused_before_it_is_parsed() {
    let app = TestApp::spawn().await;
    let deep = |levels: usize| {
        format!("{{\"name\": \"n\", \"system_prompt\": {}1{}}}", "[".repeat(levels), "]".repeat(levels))
    };
    // 65 levels: the object plus 64 arrays. serde_json alone would accept it (its limit is 128).
    let (status, body) = app.send_raw(Method::POST, "/api/agents/", "application/json", &deep(64)).await;
    assert_eq!(
        (status, body),
        (StatusCode::BAD_REQUEST, json!({"detail": "JSON parse error - nesting deeper than 64 levels"}))
    );
    // Brackets inside strings are text, not nesting.
    let quoted = format!("{{\"name\": \"{}\"}}", "[".repeat(60));
    let (status, body) = app.send_raw(Method::POST, "/api/agents/", "application/json", &quoted).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Within the cap the ordinary field validation answers.
    let (status, body) = app.send_raw(Method::POST, "/api/agents/", "application/json", &deep(10)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body, json!({"system_prompt": ["Not a valid string."]}));
}
