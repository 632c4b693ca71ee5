//! Lambent's one integration-test binary: the real routers over real libsql files on 127.0.0.1.
//!
//! # Layout
//! - `helpers/`: `TestApp::spawn()` and friends. The servers the tests start (the fake OpenAI, sqld, moto, the
//!   counting proxy, the stub Lambda Runtime API) come from `lambent-testkit` (`../testkit/`), shared with the bench.
//! - one module per area: the CRUD groups, MCP servers (`mcp`: against the reference server), pagination, error shapes, migrations, the Lambda path, OpenAPI,
//!   a database that pushes back (`backpressure`: sqld's 429s injected by a proxy),
//!   generated clients (Python and TypeScript, from the live document), telemetry (spans at a real OTLP
//!   receiver, log lines, EMF lines), housekeeping (`prune`: the store's, the CLI's, the scheduled function's),
//!   durability (a killed server, 200 concurrent turns), TLS (real handshakes through both HTTPS clients), the
//!   site (the `lambent` binary from an empty directory: every page and what it loads, the request log; the build).
//! - `bin/server.rs`: the local server as a child process, for the test that kills it.
//! - `../local/src/main.rs`, built here as `lambent-under-test`: the `lambent` binary, for the site tests.
//! - `bin/stream_function.rs`: the `agent-stream` Lambda function as a child process, for the stub Runtime API.
//! - `../functions/src/bin/prune.rs`, built here as `lambent-test-prune-function`: the scheduled `prune` function.

mod helpers;

mod agent_tools;
mod agents;
mod architecture;
mod auth;
mod backpressure;
mod clients;
mod durability;
mod errors;
mod forks;
mod health;
mod hostile;
mod isolation;
mod lambda;
mod limits;
mod litellm;
mod local_server;
mod login_throttle;
mod mcp;
mod migrations;
mod openapi;
mod pagination;
mod providers;
mod prune;
mod remote;
mod round_trips;
mod runtime;
mod secrets;
mod sessions;
mod site;
mod stateless;
mod statements;
mod telemetry;
mod template;
mod templates;
mod tls;
mod tools;
mod usage;
