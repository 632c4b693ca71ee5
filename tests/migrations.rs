use lambent::domain::{ResponseStatus, Role, ToolCallStatus};
use lambent::store::{MIGRATIONS, Migration};
use lambent::{Error, Store};

async fn empty_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_url(&format!("file:{}", dir.path().join("m.db").display()), None).await.unwrap();
    (store, dir)
}

async fn tables(store: &Store) -> Vec<String> {
    let rows = store
        .query_json("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .await
        .unwrap();
    rows.iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_fresh_database_gets_every_table_and_a_record_of_each_migration() {
    let (store, _dir) = empty_store().await;
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied, MIGRATIONS.iter().map(|m| m.name).collect::<Vec<_>>());
    assert_eq!(
        tables(&store).await,
        [
            "agent_mcp_servers",
            "agent_messages",
            "agent_profile_tools",
            "agent_profiles",
            "agent_prompt_templates",
            "agent_sessions",
            "agent_tool_calls",
            "agent_tools",
            "agent_turn_events",
            "agent_turns",
            "api_tokens",
            "idempotency_keys",
            "lambent_migrations",
            "login_addresses",
            "login_attempts",
            "mcp_servers",
            "request_windows",
            "usage_hourly",
            "users"
        ]
    );
    let recorded = store.query_json("SELECT name, checksum FROM lambent_migrations ORDER BY name").await.unwrap();
    let expected: Vec<_> =
        MIGRATIONS.iter().map(|m| serde_json::json!({"name": m.name, "checksum": m.checksum()})).collect();
    assert_eq!(recorded, expected);
    store.check_schema().await.unwrap();
}

#[tokio::test]
async fn running_migrations_again_applies_nothing() {
    let (store, _dir) = empty_store().await;
    store.migrate().await.unwrap();
    assert!(store.migrate().await.unwrap().is_empty());
    let recorded = store.query_json("SELECT COUNT(*) AS n FROM lambent_migrations").await.unwrap();
    assert_eq!(recorded[0]["n"], MIGRATIONS.len());
}

#[tokio::test]
async fn an_edited_migration_is_refused_by_name() {
    let (store, _dir) = empty_store().await;
    let original = [Migration { name: "0001_a.sql", sql: "CREATE TABLE a (x INTEGER);" }];
    let edited = [Migration { name: "0001_a.sql", sql: "CREATE TABLE a (x INTEGER, y TEXT);" }];
    assert_eq!(store.migrate_with(&original).await.unwrap(), ["0001_a.sql"]);
    let err = store.migrate_with(&edited).await.unwrap_err();
    assert!(matches!(err, Error::Migration { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("0001_a.sql") && message.contains("changed"), "{message}");
}

#[tokio::test]
async fn a_failing_migration_leaves_no_trace_and_stops_the_run() {
    let (store, _dir) = empty_store().await;
    let migrations = [
        Migration { name: "0001_ok.sql", sql: "CREATE TABLE ok (x INTEGER);" },
        Migration { name: "0002_bad.sql", sql: "CREATE TABLE half (x INTEGER); INSERT INTO missing VALUES (1);" },
        Migration { name: "0003_never.sql", sql: "CREATE TABLE never (x INTEGER);" },
    ];
    let err = store.migrate_with(&migrations).await.unwrap_err();
    assert!(err.to_string().contains("0002_bad.sql"), "{err}");
    assert_eq!(tables(&store).await, ["lambent_migrations", "ok"], "0002 rolled back whole; 0003 never ran");
    let recorded = store.query_json("SELECT name FROM lambent_migrations").await.unwrap();
    assert_eq!(recorded, vec![serde_json::json!({"name": "0001_ok.sql"})]);
}

#[tokio::test]
async fn an_unmigrated_database_is_reported_with_the_command_to_run() {
    let (store, _dir) = empty_store().await;
    let err = store.check_schema().await.unwrap_err();
    assert!(err.to_string().contains("lambent migrate"), "{err}");
    assert_eq!(err.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn the_runner_knows_every_file_in_the_migrations_folder_in_order() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    let known: Vec<&str> = MIGRATIONS.iter().map(|m| m.name).collect();
    assert_eq!(files, known);
    for (i, name) in known.iter().enumerate() {
        assert!(name.starts_with(&format!("{:04}_", i + 1)), "{name} is numbered in sequence");
    }
}

/// The names a column's `CHECK (<column> IN (...))` allows, from the table's schema as SQLite keeps it.
fn allowed<'a>(schema: &'a str, column: &str) -> Vec<&'a str> {
    let list = schema.split(&format!("{column} IN (")).nth(1).and_then(|rest| rest.split(')').next());
    list.unwrap_or_else(|| panic!("no CHECK on {column}")).split(',').map(|v| v.trim().trim_matches('\'')).collect()
}

async fn table_sql(store: &Store, table: &str) -> String {
    let rows = store.query_json(&format!("SELECT sql FROM sqlite_master WHERE name = '{table}'")).await.unwrap();
    rows[0]["sql"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_schema_stores_exactly_the_names_of_the_state_enums() {
    let (store, _dir) = empty_store().await;
    store.migrate().await.unwrap();
    let (messages, calls) = (table_sql(&store, "agent_messages").await, table_sql(&store, "agent_tool_calls").await);
    let roles: Vec<_> = Role::ALL.iter().map(|r| r.as_str()).collect();
    // `requires_approval` is a turn's `done` status only: its message is stored `requires_tool_output`.
    let responses: Vec<_> =
        ResponseStatus::ALL.iter().filter(|s| **s != ResponseStatus::RequiresApproval).map(|s| s.as_str()).collect();
    let tool_calls: Vec<_> = ToolCallStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(allowed(&messages, "role"), roles);
    assert_eq!(allowed(&messages, "status"), responses);
    assert_eq!(allowed(&calls, "status"), tool_calls);
}

#[tokio::test]
async fn foreign_keys_are_enforced() {
    let (store, _dir) = empty_store().await;
    store.migrate().await.unwrap();
    let err = store.add_message(lambent::domain::SessionId(404), Role::User, "orphan").await.unwrap_err();
    assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
}

#[tokio::test]
async fn a_function_on_a_database_behind_the_code_says_to_run_lambent_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::helpers::config_in(&dir, &[]);
    let store = Store::open(&config).await.unwrap();
    // Only the first migration: the code needs more.
    store.migrate_with(&MIGRATIONS[..1]).await.unwrap();
    let state = lambent::AppState::open(config).await.unwrap();
    let app = lambent_functions::service(lambent::http::Function::Agents.router(state.clone()), &state);
    let request = || {
        lambda_http::http::Request::builder()
            .uri("/api/agents/")
            .header("authorization", "Bearer lam_whatever")
            .body(lambda_http::Body::Empty)
            .unwrap()
    };
    let response = tower::ServiceExt::oneshot(app.clone(), request()).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    let detail: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(detail["detail"].as_str().unwrap().contains("lambent migrate"), "{detail}");

    // Once someone migrates, the same warm function recovers without a restart.
    store.migrate().await.unwrap();
    let response = tower::ServiceExt::oneshot(app, request()).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED, "past the schema check, on to authentication");
}

#[tokio::test]
async fn a_provider_response_id_of_any_length_survives_the_migration_that_uncaps_it() {
    let (store, _dir) = empty_store().await;
    let before = MIGRATIONS.iter().position(|m| m.name == "0009_upstream_ids.sql").unwrap();
    store.migrate_with(&MIGRATIONS[..before]).await.unwrap();
    let now = "2026-12-07T00:00:00.000000Z";
    for sql in [
        format!("INSERT INTO users (id, username, created_at, updated_at) VALUES (1, 'u', '{now}', '{now}')"),
        format!(
            "INSERT INTO agent_profiles (id, name, owner_id, created_at, updated_at) VALUES (1, 'a', 1, '{now}', '{now}')"
        ),
        format!(
            "INSERT INTO agent_sessions (id, agent_id, owner_id, previous_response_id, created_at, updated_at) \
             VALUES (1, 1, 1, 'resp_kept', '{now}', '{now}')"
        ),
        format!("INSERT INTO agent_messages (session_id, role, content, created_at) VALUES (1, 'user', 'hi', '{now}')"),
    ] {
        store.query_json(&sql).await.unwrap();
    }
    let long = format!("resp_{}", "x".repeat(455));
    let capped = store.query_json(&format!("UPDATE agent_sessions SET previous_response_id = '{long}'")).await;
    assert!(capped.unwrap_err().to_string().contains("CHECK"), "before 0009 a 460-character id broke the write");

    assert_eq!(store.migrate_with(&MIGRATIONS[..=before]).await.unwrap(), ["0009_upstream_ids.sql"]);

    let kept = store.query_json("SELECT previous_response_id AS id FROM agent_sessions").await.unwrap();
    assert_eq!(kept, [serde_json::json!({"id": "resp_kept"})], "the stored id is carried over");
    let messages = store.query_json("SELECT content FROM agent_messages").await.unwrap();
    assert_eq!(messages, [serde_json::json!({"content": "hi"})], "rebuilding the column cascaded into nothing");
    store.query_json(&format!("UPDATE agent_sessions SET previous_response_id = '{long}'")).await.unwrap();
    let stored = store.query_json("SELECT previous_response_id AS id FROM agent_sessions").await.unwrap();
    assert_eq!(stored[0]["id"].as_str().unwrap().len(), 460);
}
