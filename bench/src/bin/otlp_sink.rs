//! An OTLP/gRPC receiver for the "export on" telemetry figures (BENCHMARKS.md, "Telemetry"): prints its endpoint
//! on the first line of stdout, then takes every export for as long as it runs, printing how many spans it got
//! every few seconds (to stderr), so the figures include a receiver that answers, as a collector would. Point the
//! server at it with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` (the default protocol is `http/protobuf`).
//!
//! fake-opentelemetry-collector hands spans over through a 64-span channel and holds an export until there is
//! room, so the sink drains it continuously: draining it every 5 s (as this sink first did) let 64 spans through
//! per 5 s, held every export behind them, and the server's queue dropped the rest (576 of ~4,800 turns' spans
//! arrived).

use std::time::{Duration, Instant};

use fake_opentelemetry_collector::FakeCollectorServer;

#[tokio::main]
async fn main() {
    let mut server = FakeCollectorServer::start().await.expect("the receiver starts");
    println!("{}", server.endpoint());
    let (mut total, mut said, mut last) = (0, 0, Instant::now());
    loop {
        total += server.exported_spans(1, Duration::from_millis(100)).await.len();
        if total != said && last.elapsed() >= Duration::from_secs(5) {
            eprintln!("otlp-sink: {total} spans received");
            (said, last) = (total, Instant::now());
        }
    }
}
