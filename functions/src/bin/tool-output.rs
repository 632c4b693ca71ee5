//! Lambda function for `/api/agent/tool-output/`, with response streaming.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve(lambent::http::Function::ToolOutput).await
}
