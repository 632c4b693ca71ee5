//! Lambda function for housekeeping, invoked by a daily EventBridge schedule (no HTTP route).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::prune().await
}
