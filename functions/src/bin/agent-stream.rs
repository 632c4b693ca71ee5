//! Lambda function for `/api/agent/stream/` and `/api/sessions/{id}/events/`, with response streaming.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve(lambent::http::Function::AgentStream).await
}
