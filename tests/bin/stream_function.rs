//! The `agent-stream` Lambda function as its own process (the same `main` as
//! `functions/src/bin/agent-stream.rs`), for the tests that drive it through a stub Runtime API.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve(lambent::http::Function::AgentStream).await
}
