//! Lambda function for `/api/agent/chat/`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve(lambent::http::Function::AgentChat).await
}
