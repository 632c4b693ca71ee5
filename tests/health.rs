//! `/api/health/`: what it checks (the database answers, its schema is current, a model provider is
//! configured), 503 naming what failed, and never a secret. Its database cost is in `round_trips.rs`.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, config_in};
use crate::remote::remote_app;
use lambent_testkit::Sqld;
use lambent_testkit::openai::FakeOpenAi;

#[tokio::test]
async fn health_reports_each_check_and_answers_ok_when_all_pass() {
    let fake = FakeOpenAi::start().await;
    let app = TestApp::spawn_with(&fake.env()).await.as_user(None);

    let (status, body) = app.get("/api/health/").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"status": "ok", "checks": {
            "database": {"status": "ok"},
            "schema": {"status": "ok"},
            "model_provider": {"status": "ok", "api_key": true, "base_url": fake.env()[1].1,
                "default_model": "gpt-4.1"},
        }})
    );
    assert!(!body.to_string().contains("sk-test-fake-key"), "{body}");
}

#[tokio::test]
async fn health_answers_503_naming_the_missing_migration_and_the_missing_api_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_in(&dir, &[("OPENAI_BASE_URL", "https://user:pw@llm.example/v1?key=k".to_owned())]);
    let store = lambent::Store::open(&config).await.unwrap();
    let (last, earlier) = lambent::store::MIGRATIONS.split_last().unwrap();
    store.migrate_with(earlier).await.unwrap();
    let app = TestApp::serve_anonymous(lambent::AppState::new(config, store), dir).await;

    let (status, mut body) = app.get("/api/health/").await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // A 5xx quotes its request's id, as every 5xx does.
    let request_id = body.as_object_mut().unwrap().remove("request_id");
    assert!(request_id.as_ref().is_some_and(serde_json::Value::is_string), "{request_id:?}");
    assert_eq!(
        body,
        json!({"status": "unavailable", "checks": {
            "database": {"status": "ok"},
            "schema": {"status": "unavailable", "detail": format!(
                "The database lacks migrations of this version: {}. Run `lambent migrate`.", last.name)},
            "model_provider": {"status": "unavailable", "api_key": false, "base_url": "https://llm.example/v1",
                "default_model": "gpt-4.1", "detail": "No API key: set OPENAI_API_KEY (or OPENAI_API_KEY_PARAMETER on Lambda)."},
        }})
    );
}

#[tokio::test]
async fn health_answers_503_when_the_database_does_not_answer() {
    let sqld = Sqld::start().await;
    let fake = FakeOpenAi::start().await;
    let app = remote_app(&sqld.url, &sqld.token(), &fake).await.as_user(None);
    assert_eq!(app.get("/api/health/").await.0, StatusCode::OK);

    sqld.stop().await;
    let (status, body) = app.get("/api/health/").await;

    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["checks"],
        json!({
            "database": {"status": "unavailable", "detail": "The database did not answer."},
            "schema": {"status": "unavailable", "detail": "Not checked: no database."},
            "model_provider": {"status": "ok", "api_key": true, "base_url": fake.env()[1].1,
                "default_model": "gpt-4.1"},
        })
    );
}
