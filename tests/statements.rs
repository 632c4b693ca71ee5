//! The store keeps prepared statements on its connection; what it keeps must never hold a read snapshot open
//! (another instance's writes would go unseen and the WAL could never be checkpointed).

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn kept_statements_let_another_instance_checkpoint_and_see_its_writes() {
    let app = TestApp::spawn().await;
    let twin = app.twin().await;
    // Token lookup (a one-row read), count and page: the statements a list request keeps.
    for _ in 0..3 {
        let (status, body) = app.get("/api/agents/").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["count"], 0);
    }

    // A reader mid-statement on the first connection would make the second's checkpoint busy.
    let checkpoint = twin.rows("PRAGMA wal_checkpoint(TRUNCATE)").await;
    assert_eq!(checkpoint[0]["busy"], 0, "a kept statement still holds a read snapshot: {checkpoint:?}");

    let created = twin.create("/api/agents/", json!({"name": "seen", "model": "gpt-4.1-mini"})).await;
    let (_, body) = app.get("/api/agents/").await;
    assert_eq!(body["count"], 1);
    assert_eq!(body["results"][0]["id"], created["id"]);
    let (status, body) = app.get(&format!("/api/agents/{}/", created["id"])).await;
    assert_eq!((status.as_u16(), body["name"].clone()), (200, json!("seen")));
}
