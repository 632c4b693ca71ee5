//! Login throttling: failed logins per username and attempts per client address, counted in the database
//! (so every instance sees them), answered 429 with `Retry-After` and DRF's message before any password is
//! hashed; a user's own address is not locked out by failures from elsewhere.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ShiftedClock, TestApp, fresh_state_on, http_client};

/// A login from `forwarded_for` (believed only when the server trusts its peer as a proxy): status,
/// `Retry-After`, body.
async fn login(app: &TestApp, username: &str, password: &str, forwarded_for: &str) -> (StatusCode, Option<u64>, Value) {
    let response = http_client()
        .post(app.url("/api/auth/login/"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse().unwrap());
    (response.status(), retry_after, response.json().await.unwrap())
}

fn limits(failures: u32, attempts: u32) -> Vec<(&'static str, String)> {
    vec![
        ("LAMBENT_LOGIN_FAILURES_PER_USERNAME", failures.to_string()),
        ("LAMBENT_LOGIN_ATTEMPTS_PER_ADDRESS", attempts.to_string()),
        ("LAMBENT_TRUSTED_PROXIES", "127.0.0.1".to_owned()),
    ]
}

#[tokio::test]
async fn failed_logins_for_a_username_are_throttled_with_retry_after_and_drfs_message() {
    let app = TestApp::spawn_with(&limits(3, 100)).await;
    app.account("bob", false).await;
    for _ in 0..3 {
        assert_eq!(login(&app, "bob", "guess", "203.0.113.9").await.0, StatusCode::BAD_REQUEST);
    }

    let (status, retry_after, body) = login(&app, "bob", "bob-password", "203.0.113.9").await;

    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry_after = retry_after.expect("a Retry-After header");
    assert!((899..=900).contains(&retry_after), "{retry_after}");
    assert_eq!(body, json!({"detail": format!("Request was throttled. Expected available in {retry_after} seconds.")}));
    // A refused attempt is not counted: hammering does not push the end of the lockout further away.
    assert_eq!(app.count("login_attempts").await, 3);
}

#[tokio::test]
async fn an_address_is_throttled_across_usernames_and_another_address_is_not() {
    let app = TestApp::spawn_with(&limits(100, 3)).await;
    app.account("bob", false).await;
    assert_eq!(login(&app, "bob", "bob-password", "203.0.113.9").await.0, StatusCode::OK);
    assert_eq!(login(&app, "carol", "guess", "203.0.113.9").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(login(&app, "dave", "guess", "203.0.113.9").await.0, StatusCode::BAD_REQUEST);

    let (status, retry_after, _) = login(&app, "erin", "guess", "203.0.113.9").await;
    let elsewhere = login(&app, "erin", "guess", "198.51.100.4").await.0;

    assert_eq!((status, retry_after.is_some()), (StatusCode::TOO_MANY_REQUESTS, true));
    assert_eq!(elsewhere, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_throttle_holds_on_another_instance_of_the_same_database() {
    let app = TestApp::spawn_with(&limits(2, 100)).await;
    app.account("bob", false).await;
    for _ in 0..2 {
        assert_eq!(login(&app, "bob", "guess", "203.0.113.9").await.0, StatusCode::BAD_REQUEST);
    }
    let twin = app.twin().await;
    assert_eq!(login(&twin, "bob", "bob-password", "203.0.113.9").await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn a_throttled_username_may_log_in_again_once_the_window_has_passed() {
    let clock = Arc::new(ShiftedClock::default());
    let (state, dir) = fresh_state_on(&limits(2, 100), clock.clone()).await;
    let app = TestApp::serve(state, dir).await;
    app.account("bob", false).await;
    for _ in 0..2 {
        assert_eq!(login(&app, "bob", "guess", "203.0.113.9").await.0, StatusCode::BAD_REQUEST);
    }
    assert_eq!(login(&app, "bob", "bob-password", "203.0.113.9").await.0, StatusCode::TOO_MANY_REQUESTS);

    clock.advance(Duration::from_secs(900));
    let (status, _, body) = login(&app, "bob", "bob-password", "203.0.113.9").await;

    assert_eq!(status, StatusCode::OK, "{body}");
    // Attempts past the window are deleted by the logins that come after them.
    assert_eq!(app.rows("SELECT succeeded FROM login_attempts").await, [json!({"succeeded": 1})]);
}

/// An attacker failing for bob's username from elsewhere, for as long as they like, does not lock bob out
/// where he logged in before (the address is remembered for 30 days); a new address is held back.
#[tokio::test]
async fn failures_from_elsewhere_do_not_lock_a_user_out_of_an_address_they_logged_in_from() {
    let app = TestApp::spawn_with(&limits(3, 100)).await;
    app.account("bob", false).await;
    assert_eq!(login(&app, "bob", "bob-password", "198.51.100.1").await.0, StatusCode::OK);
    for _ in 0..5 {
        login(&app, "bob", "guess", "203.0.113.9").await;
    }

    let attacker = login(&app, "bob", "bob-password", "203.0.113.9").await.0;
    let bob = login(&app, "bob", "bob-password", "198.51.100.1").await;
    let new_place = login(&app, "bob", "bob-password", "198.51.100.50").await.0;

    assert_eq!(attacker, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(bob.0, StatusCode::OK, "{}", bob.2);
    assert_eq!(new_place, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_unless_the_peer_is_a_configured_proxy() {
    let app = TestApp::spawn_with(&[("LAMBENT_LOGIN_ATTEMPTS_PER_ADDRESS", "2".to_owned())]).await;
    assert_eq!(login(&app, "carol", "guess", "198.51.100.1").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(login(&app, "carol", "guess", "198.51.100.2").await.0, StatusCode::BAD_REQUEST);

    assert_eq!(login(&app, "carol", "guess", "198.51.100.3").await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        app.rows("SELECT DISTINCT address FROM login_attempts").await,
        [json!({"address": "127.0.0.1"})],
        "the socket peer, not the header"
    );
}
