//! Accounts and tokens: who may call, and what the database keeps of their secrets.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, http_client};

/// Every endpoint that needs credentials, with a method that reaches it.
const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/api/agents/"),
    ("POST", "/api/agents/"),
    ("GET", "/api/agents/1/"),
    ("PUT", "/api/agents/1/"),
    ("PATCH", "/api/agents/1/"),
    ("DELETE", "/api/agents/1/"),
    ("GET", "/api/tools/"),
    ("POST", "/api/tools/"),
    ("PATCH", "/api/tools/1/"),
    ("GET", "/api/agent-tools/"),
    ("POST", "/api/agent-tools/"),
    ("DELETE", "/api/agent-tools/1/"),
    ("GET", "/api/templates/"),
    ("POST", "/api/templates/"),
    ("GET", "/api/templates/1/"),
    ("GET", "/api/sessions/"),
    ("POST", "/api/sessions/"),
    ("GET", "/api/sessions/1/"),
    ("DELETE", "/api/sessions/1/"),
    ("GET", "/api/sessions/1/messages/"),
    ("GET", "/api/sessions/1/tool-calls/"),
    ("POST", "/api/agent/stream/"),
    ("POST", "/api/agent/tool-output/"),
    ("POST", "/api/agent/chat/"),
    ("POST", "/api/auth/logout/"),
    ("GET", "/api/auth/me/"),
    ("GET", "/api/tokens/"),
    ("POST", "/api/tokens/"),
    ("DELETE", "/api/tokens/1/"),
    ("GET", "/api/users/"),
    ("POST", "/api/users/"),
    ("GET", "/api/users/1/"),
];

#[tokio::test]
async fn every_protected_endpoint_refuses_missing_and_bad_credentials() {
    let app = TestApp::spawn().await;
    let anonymous = app.as_user(None);
    let forged = app.as_user(Some("lam_0000000000000000000000000000000000000000000000000000000000000000"));
    for (method, path) in PROTECTED {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        assert_eq!(
            anonymous.call(method.clone(), path, Some(json!({}))).await,
            (StatusCode::UNAUTHORIZED, json!({"detail": "Authentication credentials were not provided."})),
            "{method} {path}"
        );
        assert_eq!(
            forged.call(method.clone(), path, Some(json!({}))).await,
            (StatusCode::UNAUTHORIZED, json!({"detail": "Invalid token."})),
            "{method} {path}"
        );
    }
    let response = http_client().get(app.url("/api/agents/")).send().await.unwrap();
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    // The open doors.
    // (Not ready without a model provider, and says so; see health.rs.)
    let (status, health) = anonymous.get("/api/health/").await;
    assert_eq!((status, health["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("unavailable")));
    assert_eq!(anonymous.get("/api/openapi.json").await.0, StatusCode::OK);
    assert_eq!(anonymous.post("/api/auth/login/", json!({})).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(app.count("agent_profiles").await, 0);
}

#[tokio::test]
async fn drf_token_scheme_and_bearer_both_work() {
    let app = TestApp::spawn().await;
    let token = app.token.clone().unwrap();
    for header in [format!("Bearer {token}"), format!("Token {token}"), format!("bearer {token}")] {
        let response =
            http_client().get(app.url("/api/auth/me/")).header("authorization", header).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await.unwrap()["username"], "alice");
    }
}

#[tokio::test]
async fn login_gives_a_short_lived_token_and_logout_revokes_it() {
    let app = TestApp::spawn().await;
    let anonymous = app.as_user(None);
    let (status, login) =
        anonymous.post("/api/auth/login/", json!({"username": "alice", "password": "alice-password"})).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let token = login["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("lam_"));
    let expires = login["expires_at"].as_str().unwrap();
    let created = login["created_at"].as_str().unwrap();
    assert!(expires > created, "{created} < {expires}");
    assert_eq!(login["kind"], "login");

    let session = app.as_user(Some(&token));
    let (status, me) = session.get("/api/auth/me/").await;
    assert_eq!(
        (status, me["username"].as_str(), me["is_staff"].as_bool()),
        (StatusCode::OK, Some("alice"), Some(false))
    );
    assert!(me.get("password_hash").is_none());
    assert_eq!(session.post("/api/auth/logout/", json!({})).await.0, StatusCode::NO_CONTENT);
    assert_eq!(session.get("/api/auth/me/").await, (StatusCode::UNAUTHORIZED, json!({"detail": "Invalid token."})));
    assert_eq!(app.get("/api/auth/me/").await.0, StatusCode::OK, "other tokens of the user still work");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer() {
    let app = TestApp::spawn().await;
    let anonymous = app.as_user(None);
    let wrong = anonymous.post("/api/auth/login/", json!({"username": "alice", "password": "guess"})).await;
    let unknown = anonymous.post("/api/auth/login/", json!({"username": "mallory", "password": "guess"})).await;
    let expected =
        (StatusCode::BAD_REQUEST, json!({"non_field_errors": ["Unable to log in with provided credentials."]}));
    assert_eq!(wrong, expected);
    assert_eq!(unknown, expected);
    assert_eq!(
        anonymous.post("/api/auth/login/", json!({"username": "alice"})).await,
        (StatusCode::BAD_REQUEST, json!({"password": ["This field is required."]}))
    );
    // No token was issued for any of them.
    assert_eq!(app.count("api_tokens").await, 1);
}

#[tokio::test]
async fn api_tokens_show_their_secret_once_and_can_be_revoked() {
    let app = TestApp::spawn().await;
    let (status, created) = app.post("/api/tokens/", json!({"name": "CI", "expires_in_days": 30})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));
    assert!(created["expires_at"].is_string());

    let (_, listed) = app.get("/api/tokens/").await;
    let ci = listed["results"].as_array().unwrap().iter().find(|t| t["name"] == "CI").unwrap().clone();
    assert!(ci.get("token").is_none(), "lists never show secrets: {ci}");
    assert_eq!(ci["prefix"], created["prefix"]);

    let ci_client = app.as_user(Some(&secret));
    assert_eq!(ci_client.get("/api/auth/me/").await.0, StatusCode::OK);
    let used = app.rows(&format!("SELECT last_used_at FROM api_tokens WHERE id = {}", ci["id"])).await;
    assert!(used[0]["last_used_at"].is_string(), "use is recorded");

    assert_eq!(app.delete(&format!("/api/tokens/{}/", ci["id"])).await.0, StatusCode::NO_CONTENT);
    assert_eq!(ci_client.get("/api/auth/me/").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/api/tokens/").await.1["count"], 1);
    assert_eq!(
        app.post("/api/tokens/", json!({"name": "", "expires_in_days": 0})).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"name": ["This field may not be blank."], "expires_in_days": ["Ensure this value is a whole number from 1 to 3650."]})
        )
    );
    // Someone else's token id is not found, and stays valid.
    let bob = app.account("bob", false).await;
    let bobs = app.rows(&format!("SELECT id FROM api_tokens WHERE user_id = {}", bob.id)).await[0]["id"].clone();
    assert_eq!(app.delete(&format!("/api/tokens/{bobs}/")).await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.as_user(Some(&bob.token)).get("/api/auth/me/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn expired_revoked_and_deactivated_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let store = app.store();
    let bob = app.account("bob", false).await;
    let expired = lambent::auth::new_token();
    store.create_token(bob.id, "old", "api", Some("2020-01-01T00:00:00.000000Z"), &expired).await.unwrap();
    assert_eq!(
        app.as_user(Some(&expired.secret)).get("/api/auth/me/").await,
        (StatusCode::UNAUTHORIZED, json!({"detail": "Invalid token."}))
    );

    let staff = app.account("root", true).await;
    let root = app.as_user(Some(&staff.token));
    let (status, user) =
        root.call(Method::PATCH, &format!("/api/users/{}/", bob.id), Some(json!({"is_active": false}))).await;
    assert_eq!((status, user["is_active"].as_bool()), (StatusCode::OK, Some(false)));
    assert_eq!(app.as_user(Some(&bob.token)).get("/api/auth/me/").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.as_user(None).post("/api/auth/login/", json!({"username": "bob", "password": "bob-password"})).await.0,
        StatusCode::BAD_REQUEST,
        "an inactive user cannot log in"
    );
}

#[tokio::test]
async fn the_database_never_holds_a_plaintext_password_or_token() {
    let app = TestApp::spawn().await;
    let (_, login) =
        app.as_user(None).post("/api/auth/login/", json!({"username": "alice", "password": "alice-password"})).await;
    let (_, api) = app.post("/api/tokens/", json!({"name": "x"})).await;
    let secrets = [
        app.token.clone().unwrap(),
        login["token"].as_str().unwrap().to_owned(),
        api["token"].as_str().unwrap().to_owned(),
    ];
    let mut dump = String::new();
    for table in ["users", "api_tokens"] {
        dump.push_str(&serde_json::to_string(&app.rows(&format!("SELECT * FROM {table}")).await).unwrap());
    }
    for secret in &secrets {
        assert!(!dump.contains(secret.as_str()), "a token is stored in clear");
    }
    assert!(!dump.contains("alice-password"));
    assert!(dump.contains("$argon2id$"), "passwords are argon2id hashes");
}

#[tokio::test]
async fn only_staff_manage_users() {
    let app = TestApp::spawn().await;
    let forbidden = (StatusCode::FORBIDDEN, json!({"detail": "You do not have permission to perform this action."}));
    assert_eq!(app.get("/api/users/").await, forbidden);
    assert_eq!(app.post("/api/users/", json!({"username": "eve", "password": "long-enough"})).await, forbidden);

    let staff = app.account("root", true).await;
    let root = app.as_user(Some(&staff.token));
    let (status, eve) = root.post("/api/users/", json!({"username": "eve", "password": "long-enough"})).await;
    assert_eq!(
        (status, eve["username"].as_str(), eve["is_staff"].as_bool()),
        (StatusCode::CREATED, Some("eve"), Some(false))
    );
    assert_eq!(
        root.post("/api/users/", json!({"username": "eve", "password": "short"})).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"password": ["This password is too short. It must contain at least 8 characters."]})
        )
    );
    assert_eq!(
        root.post("/api/users/", json!({"username": "eve", "password": "long-enough"})).await,
        (StatusCode::BAD_REQUEST, json!({"username": ["A user with that username already exists."]}))
    );
    let (_, login) =
        app.as_user(None).post("/api/auth/login/", json!({"username": "eve", "password": "long-enough"})).await;
    assert!(login["token"].is_string(), "{login}");
    assert_eq!(root.get("/api/users/").await.1["count"], 3);
    assert_eq!(root.delete(&format!("/api/users/{}/", staff.id)).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(root.delete(&format!("/api/users/{}/", eve["id"])).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.count("users").await, 2);
}

#[tokio::test]
async fn the_first_run_admin_is_created_once_and_can_log_in() {
    let (state, _dir) = crate::helpers::fresh_state().await;
    let (admin, password) = lambent_local::ensure_first_admin(&state.store).await.unwrap().expect("created");
    assert_eq!((admin.username.as_str(), admin.is_staff), ("admin", true));
    assert!(password.len() >= 16);
    assert!(lambent_local::ensure_first_admin(&state.store).await.unwrap().is_none(), "only on an empty database");
    assert_eq!(state.store.count_users().await.unwrap(), 1);
    let token = lambent::accounts::login(&state, "admin", &password, "127.0.0.1").await.unwrap().info;
    assert_eq!(token.kind, "login");
}

#[tokio::test]
async fn createsuperuser_applies_the_username_and_password_rules() {
    let (state, _dir) = crate::helpers::fresh_state().await;
    let user = lambent_local::create_superuser(&state.store, "ops", "a-long-password").await.unwrap();
    assert!(user.is_staff);
    let short = lambent_local::create_superuser(&state.store, "ops2", "short").await.unwrap_err();
    assert!(short.to_string().contains("invalid input"), "{short}");
    assert!(lambent_local::create_superuser(&state.store, "bad name!", "a-long-password").await.is_err());
    assert!(lambent_local::create_superuser(&state.store, "ops", "a-long-password").await.is_err(), "unique");
    assert!(lambent::accounts::login(&state, "ops", "a-long-password", "127.0.0.1").await.is_ok());
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let open = TestApp::spawn_with(&[("LAMBENT_CORS_ORIGINS", "https://app.example".to_owned())]).await;
    let preflight = |app: &TestApp, origin: &'static str| {
        http_client()
            .request(Method::OPTIONS, app.url("/api/agents/"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let allowed = preflight(&open, "https://app.example").await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://app.example");
    let other = preflight(&open, "https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let closed = TestApp::spawn().await;
    let none = preflight(&closed, "https://app.example").await.unwrap();
    assert!(none.headers().get("access-control-allow-origin").is_none(), "no CORS by default");
}
