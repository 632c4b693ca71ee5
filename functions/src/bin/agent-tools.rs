//! Lambda function for `/api/agent-tools/`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve(lambent::http::Function::AgentTools).await
}
