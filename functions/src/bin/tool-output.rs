//! Lambda function for `/api/agent/tool-output/`, with response streaming.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve_streaming(lambent::http::agent::tool_output_router).await
}
