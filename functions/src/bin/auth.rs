//! Lambda function for `/api/auth/`, `/api/tokens/`, `/api/users/` and `/api/health/`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambent_functions::serve(lambent::http::Function::Auth).await
}
