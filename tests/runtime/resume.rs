//! Recorded frames: replay after a disconnect (`Last-Event-ID` / `?after=`), live follow, and cancel.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::Rig;
use crate::helpers::{Frame, TestApp};
use lambent_testkit::openai::{frames, text_events};

fn same_frames(a: &[Frame], b: &[Frame]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.event == y.event && x.id == y.id && x.data == y.data)
}

async fn events(app: &TestApp, session: &Value, headers: &[(&str, &str)], query: &str) -> crate::helpers::Streamed {
    app.stream_with(Method::GET, &format!("/api/sessions/{session}/events/{query}"), None, headers).await
}

#[tokio::test]
async fn a_client_that_missed_frames_gets_exactly_the_rest_from_last_event_id_or_after() {
    let rig = Rig::new().await;
    rig.fake.push_stream(frames(text_events("resp_1", &["One", " two", " three"])));
    let live = rig.app.stream("/api/agent/stream/", json!({"message": "count"})).await;
    let session = live.done()["session_id"].clone();
    assert!(live.frames.len() > 6, "{:?}", live.names());

    let seen = live.frames[3].id.clone().unwrap();
    let by_header = events(&rig.app, &session, &[("Last-Event-ID", &seen)], "").await;
    assert_eq!(by_header.status, StatusCode::OK);
    assert!(by_header.content_type.starts_with("text/event-stream"));
    assert!(same_frames(&by_header.frames, &live.frames[4..]), "{:?}", by_header.names());
    let by_query = events(&rig.app, &session, &[], &format!("?after={seen}")).await;
    assert!(same_frames(&by_query.frames, &live.frames[4..]));
    // From every frame: a batch of frames is recorded as one row, and a cursor inside it starts mid-row.
    for (i, frame) in live.frames.iter().enumerate() {
        let after = frame.id.clone().unwrap();
        let rest = events(&rig.app, &session, &[], &format!("?after={after}")).await;
        assert!(same_frames(&rest.frames, &live.frames[i + 1..]), "after {after}: {:?}", rest.names());
    }

    // Without a cursor: the latest turn, whole; after its last frame: nothing, and the stream ends.
    let whole = events(&rig.app, &session, &[], "").await;
    assert!(same_frames(&whole.frames, &live.frames));
    let last = live.frames.last().unwrap().id.clone().unwrap();
    assert!(events(&rig.app, &session, &[("Last-Event-ID", &last)], "").await.frames.is_empty());

    // A later turn follows on from the earlier one's last frame.
    rig.fake.push_stream(frames(text_events("resp_2", &["Four."])));
    let next = rig.app.stream("/api/agent/stream/", json!({"message": "more", "session_id": session})).await;
    let missed = events(&rig.app, &session, &[("Last-Event-ID", &last)], "").await;
    assert!(same_frames(&missed.frames, &next.frames));
    assert_ne!(next.frames[0].id.as_deref().unwrap().split(':').next(), last.split(':').next(), "a new turn id");
}

#[tokio::test]
async fn the_event_stream_follows_a_running_turn_live_to_its_done() {
    let rig = Rig::new().await;
    let (session, gate, running) = rig.held_turn(None).await;
    let app = rig.app.clone();
    let following = tokio::spawn({
        let session = session.clone();
        async move { events(&app, &session, &[], "").await }
    });
    // The follower is connected while the upstream has not finished; only then does the turn go on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!following.is_finished(), "the follower waits for the running turn");
    gate.notify_one();
    let live = running.await.unwrap();
    let followed = following.await.unwrap();
    assert_eq!(live.done()["status"], "completed");
    assert!(same_frames(&followed.frames, &live.frames), "{:?} vs {:?}", followed.names(), live.names());
}

#[tokio::test]
async fn event_ids_that_are_malformed_or_not_the_sessions_are_refused() {
    let rig = Rig::new().await;
    rig.fake.push_stream(frames(text_events("resp_1", &["Hi"])));
    let session = rig.app.stream("/api/agent/stream/", json!({"message": "hi"})).await.done()["session_id"].clone();
    for cursor in ["nonsense", "turn_x:abc", "turn_unknown:3"] {
        let reply = events(&rig.app, &session, &[], &format!("?after={cursor}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{cursor}");
        assert!(reply.body()["after"][0].is_string(), "{}", reply.raw);
    }
    let stranger = rig.app.account("mallory", false).await;
    let theirs = events(&rig.app.as_user(Some(&stranger.token)), &session, &[], "").await;
    assert_eq!((theirs.status, theirs.body()), (StatusCode::NOT_FOUND, json!({"detail": "Not found."})));
    let none = events(&rig.app, &json!(999), &[], "").await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cancel_stops_a_running_turn_keeps_its_partial_text_and_the_next_message_works() {
    let rig = Rig::new().await;
    rig.fake.push_stream(frames(text_events("resp_first", &["Hello."])));
    let session = rig.app.stream("/api/agent/stream/", json!({"message": "hi"})).await.done()["session_id"].clone();
    let (_, gate, running) = rig.held_turn(Some(&session)).await;
    let turn_id =
        rig.app.rows(&format!("SELECT turn_id FROM agent_sessions WHERE id = {session}")).await[0]["turn_id"].clone();
    assert!(turn_id.is_string(), "the second turn holds the session");

    let (status, accepted) = rig.app.post(&format!("/api/sessions/{session}/cancel/"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(accepted, json!({"session_id": session, "turn_id": turn_id, "status": "cancelling"}));
    let reply = running.await.unwrap();
    assert_eq!(reply.events("error"), [json!({"code": "cancelled", "message": lambent::turn::CANCELLED})]);
    assert_eq!(reply.done()["status"], "incomplete");
    let stored = rig.messages(&session).await;
    assert_eq!(stored.last().unwrap()["content"], "Still");
    assert_eq!(stored.last().unwrap()["status"], "incomplete");
    assert_eq!(rig.session(&session).await["previous_response_id"], "resp_first", "the chain stays put");
    drop(gate);

    let (status, idle) = rig.app.post(&format!("/api/sessions/{session}/cancel/"), json!({})).await;
    assert_eq!((status, idle), (StatusCode::CONFLICT, json!({"detail": "No turn is running on this session."})));
    rig.fake.push_stream(frames(text_events("resp_after", &["Back."])));
    let next = rig.app.stream("/api/agent/stream/", json!({"message": "again", "session_id": session})).await;
    assert_eq!(next.done()["status"], "completed");
    assert_eq!(rig.fake.request(2)["previous_response_id"], "resp_first");
}

#[tokio::test]
async fn a_cancel_reaches_a_turn_running_in_another_process() {
    let rig = Rig::new().await;
    let (session, _gate, running) = rig.held_turn(None).await;
    let other = rig.app.twin().await;
    let (status, _) = other.post(&format!("/api/sessions/{session}/cancel/"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // The other process only set the flag; the turn finds it within its poll and stops.
    let reply = tokio::time::timeout(Duration::from_secs(10), running).await.expect("the turn stopped").unwrap();
    assert_eq!(reply.events("error")[0]["code"], "cancelled");
    assert_eq!(reply.done()["status"], "incomplete");
}

#[tokio::test]
async fn nobody_cancels_a_session_that_is_not_theirs() {
    let rig = Rig::new().await;
    let (session, gate, running) = rig.held_turn(None).await;
    let stranger = rig.app.account("mallory", false).await;
    let (status, body) =
        rig.app.as_user(Some(&stranger.token)).post(&format!("/api/sessions/{session}/cancel/"), json!({})).await;
    assert_eq!((status, body), (StatusCode::NOT_FOUND, json!({"detail": "Not found."})));
    gate.notify_one();
    assert_eq!(running.await.unwrap().done()["status"], "completed");
}

#[tokio::test]
async fn a_long_turn_is_recorded_whole_and_in_order() {
    let rig = Rig::new().await;
    // ~80 frames: several full multi-row inserts and single-row ones for the rest, across record batches.
    let deltas: Vec<String> = (0..37).map(|i| format!(" w{i}")).collect();
    let deltas: Vec<&str> = deltas.iter().map(String::as_str).collect();
    rig.fake.push_stream(frames(text_events("resp_long", &deltas)));
    let live = rig.app.stream("/api/agent/stream/", json!({"message": "talk"})).await;
    assert!(live.frames.len() > 70, "{}", live.frames.len());
    assert_eq!(live.text(), deltas.concat());

    let session = live.done()["session_id"].clone();
    let replay = events(&rig.app, &session, &[], "").await;
    assert!(same_frames(&replay.frames, &live.frames), "{:?}", replay.names());
    let seqs: Vec<u64> =
        live.frames.iter().map(|f| f.id.as_deref().unwrap().rsplit(':').next().unwrap().parse().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}
