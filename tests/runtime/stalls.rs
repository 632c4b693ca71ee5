//! No Nagle stall in the streamed path. Hyper writes a response head and each SSE frame as separate small
//! segments; without `TCP_NODELAY` on the server's socket, the frame after the head waits for the client's
//! ACK of the head, and a client on a *keep-alive* connection delays that ACK by ~40 ms. A fresh connection
//! starts in quick-ACK mode and hides it, so these turns all run on one connection, as a browser's or an
//! SDK's would. The client is a plain blocking socket on a thread of its own, so the times it notes are when
//! the bytes arrived, whatever the server's runtime is busy with.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Rig;
use lambent_testkit::openai::{FakeOpenAi, frames, text_events};

/// Loopback and a fake upstream answering at once: the first event is a few ms behind its head at most.
pub const FIRST_EVENT_BUDGET: Duration = Duration::from_millis(10);

/// One HTTP/1.1 connection, kept alive across requests, with the time each byte arrived.
struct Connection {
    stream: TcpStream,
    /// Bytes read but not yet consumed by a response.
    buffer: Vec<u8>,
}

/// One streamed answer as it arrived.
struct Answer {
    head: String,
    /// The head's last byte arrived.
    head_at: Instant,
    /// The first `event:` line of the body arrived.
    first_event_at: Instant,
    /// The body, de-chunked.
    body: String,
}

impl Connection {
    fn open(addr: std::net::SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("a read timeout");
        Self { stream, buffer: Vec::new() }
    }

    /// Sends a request in one write and reads its chunked answer to the end.
    fn post(&mut self, path: &str, token: &str, body: &Value) -> Answer {
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: lambent.test\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).expect("send the request");

        let (mut head_end, mut head_at, mut first_event_at) = (None, None, None);
        loop {
            if head_end.is_none() {
                head_end = find(&self.buffer, b"\r\n\r\n").map(|at| at + 4);
                if head_end.is_some() {
                    head_at = Some(Instant::now());
                }
            }
            if let Some(end) = head_end {
                if first_event_at.is_none() && find(&self.buffer[end..], b"event:").is_some() {
                    first_event_at = Some(Instant::now());
                }
                if let Some((body, used)) = dechunk(&self.buffer[end..]) {
                    let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                    self.buffer.drain(..end + used);
                    let body = String::from_utf8_lossy(&body).into_owned();
                    let first_event_at = first_event_at.unwrap_or_else(|| panic!("no event in {head}{body}"));
                    return Answer { head, head_at: head_at.expect("a head"), first_event_at, body };
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = self.stream.read(&mut chunk).expect("the answer goes on within 10 s");
            assert!(read > 0, "the server closed the keep-alive connection; so far: {:?}", self.buffer);
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A whole chunked body at the start of `raw`: the body and the bytes it took, or None while incomplete.
fn dechunk(raw: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (mut body, mut at) = (Vec::new(), 0);
    loop {
        let line_end = at + find(&raw[at..], b"\r\n")?;
        let size = std::str::from_utf8(&raw[at..line_end]).ok()?.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).expect("a chunk size");
        at = line_end + 2;
        if size == 0 {
            // No trailers: the blank line ends the body.
            return (raw.get(at..at + 2)? == b"\r\n").then_some((body, at + 2));
        }
        body.extend_from_slice(raw.get(at..at + size)?);
        at += size;
        if raw.get(at..at + 2)? != b"\r\n" {
            panic!("a chunk not followed by CRLF");
        }
        at += 2;
    }
}

/// Six streamed turns in a row, one session, on one fresh keep-alive connection: each turn's head → first event.
fn keep_alive_turns(addr: std::net::SocketAddr, token: &str, fake: &FakeOpenAi, attempt: usize) -> Vec<Duration> {
    let mut connection = Connection::open(addr);
    let (mut session, mut delays) = (None::<i64>, Vec::new());
    for turn in 0..6 {
        fake.push_stream(frames(text_events(&format!("resp_keepalive_{attempt}_{turn}"), &["Hello", " again"])));
        let mut body = json!({"message": format!("turn {turn}")});
        if let Some(session) = session {
            body["session_id"] = json!(session);
        }
        let answer = connection.post("/api/agent/stream/", token, &body);
        assert!(answer.head.starts_with("HTTP/1.1 200"), "{}", answer.head);
        assert!(
            answer.body.contains("event: done") && answer.body.contains("\"status\":\"completed\""),
            "{}",
            answer.body
        );
        let head = answer.head.to_ascii_lowercase();
        session = head.lines().find_map(|l| l.strip_prefix("lambent-session-id: ")).and_then(|s| s.trim().parse().ok());
        assert!(session.is_some(), "{}", answer.head);
        delays.push(answer.first_event_at - answer.head_at);
    }
    delays
}

/// A stall is systematic: with Nagle on, every turn after the first on a connection waits ~40 ms, each time.
/// A busy machine can delay one turn past the budget now and then; so the six turns may be tried on a new
/// connection up to ten times, and pass once all six of one connection are within budget.
pub const ATTEMPTS: usize = 10;

// Multi-threaded, as `lambent serve` runs (`#[tokio::main]`): the turn's own tasks (the frame recorder's
// writes to the SQLite file) do not hold up the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_turns_on_one_keep_alive_connection_are_not_held_by_nagle() {
    let rig = Rig::new().await;
    // The process's first turn also opens its connection to the upstream: a one-off cost, paid elsewhere.
    rig.fake.push_stream(frames(text_events("resp_warm_up", &["Hi"])));
    assert_eq!(rig.app.stream("/api/agent/stream/", json!({"message": "warm up"})).await.status, 200);
    let mut seen = Vec::new();
    for attempt in 0..ATTEMPTS {
        let (token, addr, fake) = (rig.app.token.clone().expect("a token"), rig.app.addr, rig.fake.clone());
        let delays = tokio::task::spawn_blocking(move || keep_alive_turns(addr, &token, &fake, attempt))
            .await
            .expect("the client thread");
        if delays.iter().all(|d| *d <= FIRST_EVENT_BUDGET) {
            return;
        }
        seen.push(shown(&delays));
    }
    let seen = seen.join(", then ");
    panic!("head → first event, turn by turn on one keep-alive connection: {seen} (budget {FIRST_EVENT_BUDGET:?})");
}

/// Durations as milliseconds, for a failure message: `[1.2, 40.1] ms`.
pub fn shown(delays: &[Duration]) -> String {
    let ms: Vec<String> = delays.iter().map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0)).collect();
    format!("[{}] ms", ms.join(", "))
}
