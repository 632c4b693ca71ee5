//! moto's server: SSM (and the rest of AWS) on 127.0.0.1. Its binary comes from PyPI (`moto[server]`);
//! `scripts/test-tools.sh` installs it and names it in `LAMBENT_TEST_MOTO_SERVER`.

use std::path::Path;

use serde_json::{Value, json};
use tokio::process::Child;

use crate::Result;
use crate::process::{spawn_listening, tool};

/// The region its clients say they are in: moto keeps parameters per region.
pub const REGION: &str = "eu-west-1";

/// moto's server, killed when dropped. It checks no signature: any credentials do.
pub struct Moto {
    /// `http://127.0.0.1:<port>`, what `AWS_ENDPOINT_URL` is set to.
    pub endpoint: String,
    client: reqwest::Client,
    _child: Child,
}

impl Moto {
    /// The tests' moto: the binary `LAMBENT_TEST_MOTO_SERVER` names, output discarded; panics if it cannot start.
    pub async fn start() -> Self {
        Self::start_with(&tool("LAMBENT_TEST_MOTO_SERVER"), None).await.unwrap_or_else(|e| panic!("moto: {e}"))
    }

    /// `binary`, its output appended to `log` (discarded without one).
    pub async fn start_with(binary: &Path, log: Option<&Path>) -> Result<Self> {
        let port = crate::free_port()?;
        let args = ["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()];
        let child = spawn_listening(binary, &args, port, log).await?;
        Ok(Self { endpoint: format!("http://127.0.0.1:{port}"), client: crate::http_client(), _child: child })
    }

    /// Stores a SecureString parameter, as `aws ssm put-parameter --overwrite` would.
    pub async fn put_secure_string(&self, name: &str, value: &str) -> Result<()> {
        let body = json!({"Name": name, "Value": value, "Type": "SecureString", "Overwrite": true});
        self.call("PutParameter", &body).await.map(drop)
    }

    /// Reads a parameter with decryption, as a function does at initialisation: its value.
    pub async fn get_parameter(&self, name: &str) -> Result<String> {
        let answer = self.call("GetParameter", &json!({"Name": name, "WithDecryption": true})).await?;
        let value = answer["Parameter"]["Value"].as_str().ok_or_else(|| format!("moto: no value in {answer}"))?;
        Ok(value.to_owned())
    }

    /// One SSM call in its JSON protocol (moto reads the region from the credential scope).
    async fn call(&self, action: &str, body: &Value) -> Result<Value> {
        let scope = format!("Credential=testing/20260101/{REGION}/ssm/aws4_request");
        let response = self
            .client
            .post(&self.endpoint)
            .header("x-amz-target", format!("AmazonSSM.{action}"))
            .header("content-type", "application/x-amz-json-1.1")
            .header("authorization", format!("AWS4-HMAC-SHA256 {scope}, SignedHeaders=host, Signature=0"))
            .body(body.to_string())
            .send()
            .await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            return Err(format!("moto: {action} {body}: {status} {text}").into());
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}
