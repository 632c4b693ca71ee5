//! An OTLP/gRPC receiver for the "export on" telemetry figures (BENCHMARKS.md, "Telemetry"): prints its endpoint
//! on the first line of stdout, then takes every export for as long as it runs, printing how many spans it got
//! every few seconds (to stderr), so the figures include a receiver that answers, as a collector would.

use std::time::Duration;

use fake_opentelemetry_collector::FakeCollectorServer;

#[tokio::main]
async fn main() {
    let mut server = FakeCollectorServer::start().await.expect("the receiver starts");
    println!("{}", server.endpoint());
    let mut total = 0;
    loop {
        let spans = server.exported_spans(usize::MAX, Duration::from_secs(5)).await;
        total += spans.len();
        eprintln!("otlp-sink: {total} spans received");
    }
}
