use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

async fn seed_agents(app: &TestApp, n: usize) {
    for i in 0..n {
        app.store()
            .create_agent(None, lambent::domain::AgentFields { name: format!("agent {i}"), ..Default::default() })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn lists_come_in_drf_pages_with_absolute_links() {
    let app = TestApp::spawn().await;
    seed_agents(&app, 5).await;
    let base = app.url("/api/agents/");

    let (status, first) = app.get("/api/agents/?page_size=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["count"], 5);
    assert_eq!(first["next"], format!("{base}?page_size=2&page=2"));
    assert_eq!(first["previous"], serde_json::Value::Null);
    let names: Vec<_> = first["results"].as_array().unwrap().iter().map(|a| a["name"].clone()).collect();
    assert_eq!(names, [json!("agent 0"), json!("agent 1")]);

    let (_, second) = app.get("/api/agents/?page_size=2&page=2").await;
    assert_eq!(second["next"], format!("{base}?page_size=2&page=3"));
    assert_eq!(second["previous"], format!("{base}?page_size=2"), "the first page's link drops ?page, as DRF does");
    assert_eq!(second["results"][0]["name"], "agent 2");

    let (_, last) = app.get("/api/agents/?page=3&page_size=2").await;
    assert_eq!(last["next"], serde_json::Value::Null);
    assert_eq!(last["previous"], format!("{base}?page_size=2&page=2"));
    assert_eq!(last["results"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn page_size_defaults_to_fifty_and_is_capped_at_one_hundred() {
    let app = TestApp::spawn().await;
    seed_agents(&app, 105).await;
    let (_, default) = app.get("/api/agents/").await;
    assert_eq!((default["count"].clone(), default["results"].as_array().unwrap().len()), (json!(105), 50));
    let (_, capped) = app.get("/api/agents/?page_size=500").await;
    assert_eq!(capped["results"].as_array().unwrap().len(), 100);
    assert_eq!(capped["results"][99]["name"], "agent 99", "stable order: by id");
    let (_, nonsense) = app.get("/api/agents/?page_size=abc").await;
    assert_eq!(nonsense["results"].as_array().unwrap().len(), 50);
}

#[tokio::test]
async fn pages_outside_the_list_are_invalid() {
    let app = TestApp::spawn().await;
    seed_agents(&app, 3).await;
    for query in ["page=0", "page=abc", "page=2", "page=-1"] {
        assert_eq!(
            app.get(&format!("/api/agents/?{query}")).await,
            (StatusCode::NOT_FOUND, json!({"detail": "Invalid page."})),
            "{query}"
        );
    }
}

#[tokio::test]
async fn an_empty_list_is_one_empty_page() {
    let app = TestApp::spawn().await;
    for path in ["/api/agents/", "/api/tools/", "/api/agent-tools/", "/api/templates/", "/api/sessions/"] {
        assert_eq!(
            app.get(path).await,
            (StatusCode::OK, json!({"count": 0, "next": null, "previous": null, "results": []})),
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_page_number_too_large_for_any_offset_is_invalid_not_a_server_error() {
    // Found by scripts/fuzz: the offset overflowed (a dropped connection) or exceeded SQLite's integers (500).
    let app = TestApp::spawn().await;
    let lists = ["/api/agents/", "/api/tools/", "/api/sessions/", "/api/tokens/"];
    for (path, page) in lists.iter().flat_map(|p| ["288230376151711744", "9223372036854775808"].map(|n| (p, n))) {
        assert_eq!(
            app.get(&format!("{path}?page={page}&page_size=100")).await,
            (StatusCode::NOT_FOUND, json!({"detail": "Invalid page."})),
            "{path}?page={page}"
        );
    }
}
