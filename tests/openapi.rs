use std::collections::{BTreeSet, HashSet};

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::TestApp;

/// Every operation the seed and the foundation issue promise.
const OPERATIONS: &[(&str, &str)] = &[
    ("/api/agents/", "get"),
    ("/api/agents/", "post"),
    ("/api/agents/{id}/", "get"),
    ("/api/agents/{id}/", "put"),
    ("/api/agents/{id}/", "patch"),
    ("/api/agents/{id}/", "delete"),
    ("/api/tools/", "get"),
    ("/api/tools/", "post"),
    ("/api/tools/{id}/", "get"),
    ("/api/tools/{id}/", "put"),
    ("/api/tools/{id}/", "patch"),
    ("/api/tools/{id}/", "delete"),
    ("/api/agent-tools/", "get"),
    ("/api/agent-tools/", "post"),
    ("/api/agent-tools/{id}/", "get"),
    ("/api/agent-tools/{id}/", "put"),
    ("/api/agent-tools/{id}/", "patch"),
    ("/api/agent-tools/{id}/", "delete"),
    ("/api/mcp-servers/", "get"),
    ("/api/mcp-servers/", "post"),
    ("/api/mcp-servers/{id}/", "get"),
    ("/api/mcp-servers/{id}/", "put"),
    ("/api/mcp-servers/{id}/", "patch"),
    ("/api/mcp-servers/{id}/", "delete"),
    ("/api/agent-mcp-servers/", "get"),
    ("/api/agent-mcp-servers/", "post"),
    ("/api/agent-mcp-servers/{id}/", "get"),
    ("/api/agent-mcp-servers/{id}/", "put"),
    ("/api/agent-mcp-servers/{id}/", "patch"),
    ("/api/agent-mcp-servers/{id}/", "delete"),
    ("/api/templates/", "get"),
    ("/api/templates/", "post"),
    ("/api/templates/{id}/", "get"),
    ("/api/templates/{id}/", "put"),
    ("/api/templates/{id}/", "patch"),
    ("/api/templates/{id}/", "delete"),
    ("/api/sessions/", "get"),
    ("/api/sessions/", "post"),
    ("/api/sessions/{id}/", "get"),
    ("/api/sessions/{id}/", "delete"),
    ("/api/sessions/{id}/messages/", "get"),
    ("/api/sessions/{id}/tool-calls/", "get"),
    ("/api/sessions/{id}/events/", "get"),
    ("/api/sessions/{id}/fork/", "post"),
    ("/api/sessions/{id}/cancel/", "post"),
    ("/api/agent/stream/", "post"),
    ("/api/agent/tool-output/", "post"),
    ("/api/agent/approvals/", "post"),
    ("/api/agent/chat/", "post"),
    ("/api/auth/login/", "post"),
    ("/api/auth/logout/", "post"),
    ("/api/auth/me/", "get"),
    ("/api/tokens/", "get"),
    ("/api/tokens/", "post"),
    ("/api/tokens/{id}/", "delete"),
    ("/api/usage/", "get"),
    ("/api/users/", "get"),
    ("/api/users/", "post"),
    ("/api/users/{id}/", "get"),
    ("/api/users/{id}/", "patch"),
    ("/api/users/{id}/", "delete"),
    ("/api/health/", "get"),
    ("/api/providers/", "get"),
];

#[tokio::test]
async fn the_openapi_document_describes_every_operation_once() {
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");

    let mut documented = BTreeSet::new();
    let mut operation_ids = HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            documented.insert((path.clone(), method.clone()));
            let id = operation["operationId"].as_str().unwrap();
            assert!(operation_ids.insert(id.to_owned()), "operationId {id} is unique");
            assert!(!operation["responses"].as_object().unwrap().is_empty(), "{method} {path} documents responses");
        }
    }
    let expected: BTreeSet<_> = OPERATIONS.iter().map(|(p, m)| (p.to_string(), m.to_string())).collect();
    assert_eq!(documented, expected);
}

#[tokio::test]
async fn documented_schemas_match_what_the_api_returns() {
    let app = TestApp::spawn().await;
    let (_, doc) = app.get("/api/openapi.json").await;
    let agent_schema = &doc["components"]["schemas"]["Agent"];
    let mut documented: Vec<&str> =
        agent_schema["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    documented.sort_unstable();
    let agent = app.create("/api/agents/", serde_json::json!({"name": "a"})).await;
    let mut returned: Vec<&str> = agent.as_object().unwrap().keys().map(String::as_str).collect();
    returned.sort_unstable();
    assert_eq!(documented, returned);
    let page = &doc["components"]["schemas"]["PaginatedAgentList"]["properties"];
    for key in ["count", "next", "previous", "results"] {
        assert!(page.get(key).is_some_and(Value::is_object), "PaginatedAgentList has {key}");
    }
    assert!(doc["components"]["schemas"]["ValidationErrors"]["example"].is_object());
}

#[tokio::test]
async fn paginated_lists_reference_their_item_schema() {
    // One type per object for generated clients: a page's `results` are references to the item's schema, and
    // every page schema is named `Paginated<Item>List`, as drf-spectacular names them.
    let app = TestApp::spawn().await;
    let (_, doc) = app.get("/api/openapi.json").await;
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut lists = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let paginated = operation["parameters"].as_array().into_iter().flatten().any(|p| p["name"] == "page");
            if !paginated {
                continue;
            }
            lists += 1;
            let page = schema_ref(operation, "200").unwrap_or_else(|| panic!("{method} {path} answers a named page"));
            let name = page.strip_prefix("#/components/schemas/").unwrap();
            let item = name.strip_prefix("Paginated").and_then(|n| n.strip_suffix("List"));
            let item = item.unwrap_or_else(|| panic!("{method} {path}: {name} is named Paginated<Item>List"));
            assert_eq!(
                schemas[name]["properties"]["results"]["items"]["$ref"],
                format!("#/components/schemas/{item}"),
                "{name}'s results reference {item}"
            );
            assert!(schemas.contains_key(item), "{item} is a component");
        }
    }
    assert_eq!(lists, 11, "every paginated list is checked");
    assert!(!schemas.keys().any(|name| name.starts_with("Page")), "no page schema keeps utoipa's generic name");
}

/// The answers of one status an operation documents: its schema reference (`None` when inline or missing).
fn schema_ref<'a>(operation: &'a Value, status: &str) -> Option<&'a str> {
    operation["responses"][status]["content"]["application/json"]["schema"]["$ref"].as_str()
}

#[tokio::test]
async fn every_operation_documents_the_errors_it_shares_with_its_kind() {
    // Found by scripts/fuzz: 401 was documented on a few operations only, 413 on none, and a body that is not
    // JSON answered a 400 `{"detail"}` where only `{"field": [...]}` was documented.
    let app = TestApp::spawn().await;
    let (_, doc) = app.get("/api/openapi.json").await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let documents = |status: &str| operation["responses"].get(status).is_some();
            let public = operation["security"] == serde_json::json!([{}]);
            assert_eq!(documents("401"), !public, "{method} {path}: 401 exactly where a token is needed");
            if operation.get("requestBody").is_some() {
                assert!(documents("413") && documents("415"), "{method} {path}: 413 and 415");
                assert_eq!(schema_ref(operation, "400"), Some("#/components/schemas/BadRequest"), "{method} {path}");
            }
            let paginated = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == "page" && p["in"] == "query");
            assert!(!paginated || documents("404"), "{method} {path}: 404 Invalid page.");
        }
    }
    for path in ["/api/agent/stream/", "/api/agent/chat/", "/api/agent/tool-output/"] {
        assert!(doc["paths"][path]["post"]["responses"].get("409").is_some(), "{path}: a turn already running");
    }
    let text = doc.to_string();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = &reference[..reference.find('"').unwrap()];
        assert!(schemas.contains_key(name), "{name} is defined");
    }
}

#[tokio::test]
async fn the_streaming_endpoints_document_each_server_sent_event() {
    // Found by scripts/fuzz: the event stream was documented as one string, so no event matched it.
    let app = TestApp::spawn().await;
    let (_, doc) = app.get("/api/openapi.json").await;
    for (path, method) in [
        ("/api/agent/stream/", "post"),
        ("/api/agent/tool-output/", "post"),
        ("/api/agent/approvals/", "post"),
        ("/api/sessions/{id}/events/", "get"),
    ] {
        let stream = &doc["paths"][path][method]["responses"]["200"]["content"]["text/event-stream"];
        assert_eq!(stream["schema"]["$ref"], "#/components/schemas/SseEvent", "{path}");
    }
    let schemas = &doc["components"]["schemas"];
    let event = &schemas["SseEvent"];
    assert_eq!(event["discriminator"]["propertyName"], "event");
    let mapping = event["discriminator"]["mapping"].as_object().unwrap();
    let mut names: Vec<_> = mapping.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["done", "error", "notice", "openai_event", "text_delta", "tool_call", "tool_result"]);
    let data_schemas: Vec<_> = mapping
        .iter()
        .map(|(name, reference)| {
            let frame = &schemas[reference.as_str().unwrap().trim_start_matches("#/components/schemas/")];
            assert_eq!(frame["properties"]["event"]["const"], name.as_str());
            let mut required: Vec<_> = frame["required"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
            required.sort_unstable();
            assert_eq!(required, ["data", "event", "id"], "{name}");
            let data = &frame["properties"]["data"];
            assert_eq!(data["contentMediaType"], "application/json", "{name}");
            let schema = data["contentSchema"]["$ref"].as_str().unwrap().trim_start_matches("#/components/schemas/");
            (name.as_str(), schema, schemas[schema]["required"].clone())
        })
        .collect();
    let expected = [
        ("done", "TurnDone", serde_json::json!(["session_id", "status", "pending_tool_calls"])),
        ("error", "TurnError", serde_json::json!(["code", "message"])),
        ("notice", "Notice", serde_json::json!(["message"])),
        ("openai_event", "OpenaiEvent", serde_json::json!(["type"])),
        ("text_delta", "TextDelta", serde_json::json!(["delta"])),
        ("tool_call", "ToolCall", serde_json::json!(["call_id", "name", "type"])),
        ("tool_result", "ToolResult", serde_json::json!(["call_id", "output"])),
    ];
    assert_eq!(data_schemas, expected.iter().map(|(n, s, r)| (*n, *s, r.clone())).collect::<Vec<_>>());
}

#[tokio::test]
async fn write_schemas_mark_nullable_exactly_the_fields_that_accept_null() {
    // Found by scripts/fuzz: optional fields were documented as nullable, and most of them answer
    // "This field may not be null.".
    let app = TestApp::spawn().await;
    let staff = app.account("staff", true).await;
    let (_, doc) = app.get("/api/openapi.json").await;
    let cases = [
        ("/api/agents/", "AgentWrite", serde_json::json!({"name": "n"})),
        ("/api/tools/", "ToolWrite", serde_json::json!({"name": "t"})),
        ("/api/templates/", "TemplateWrite", serde_json::json!({"name": "n", "template": "x"})),
        ("/api/tokens/", "ApiTokenWrite", serde_json::json!({"name": "n"})),
        ("/api/users/", "UserWrite", serde_json::json!({"username": "u", "password": "long-enough"})),
    ];
    let caller = app.as_user(Some(&staff.token));
    for (i, (path, schema, base)) in cases.into_iter().enumerate() {
        for (j, (field, property)) in
            doc["components"]["schemas"][schema]["properties"].as_object().unwrap().iter().enumerate()
        {
            let types = property["type"].as_array().cloned().unwrap_or_default();
            let variants = property["oneOf"].as_array().cloned().unwrap_or_default();
            let null = serde_json::json!("null");
            let nullable = types.contains(&null) || variants.iter().any(|variant| variant["type"] == null);
            let mut body = base.clone();
            for unique in ["name", "username"] {
                if body.get(unique).is_some() {
                    body[unique] = format!("{unique}_{i}_{j}").into();
                }
            }
            body[field] = Value::Null;
            let (status, answer) = caller.post(path, body).await;
            if nullable {
                assert_eq!(status, StatusCode::CREATED, "{schema}.{field} is nullable: {answer}");
            } else {
                assert_eq!(
                    (status, &answer[field]),
                    (StatusCode::BAD_REQUEST, &serde_json::json!(["This field may not be null."])),
                    "{schema}.{field} is not nullable"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_openapi_document_changes_only_on_purpose() {
    // The whole document, held in tests/snapshots/: any change to a path, a schema or a description shows up as
    // a diff to review. Accept an intended change with
    // `INSTA_UPDATE=always cargo test -p lambent-tests --test lambent openapi` (or `cargo insta review`); under
    // CI (`CI` set) a difference only fails, nothing is written.
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    insta::assert_json_snapshot!("openapi", doc);
}

#[tokio::test]
async fn the_document_validates_against_the_official_openapi_3_1_schema() {
    // Checked by openapi-spec-validator (pinned in scripts/test-requirements.txt), which holds the official
    // OpenAPI 3.1 JSON Schema, rather than by hand: what it accepts, mainstream client generators accept.
    let app = TestApp::spawn().await;
    let (status, doc) = app.get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let script = "import sys\nfrom openapi_spec_validator import OpenAPIV31SpecValidator\n\
        from openapi_spec_validator.readers import read_from_filename\n\
        spec, _ = read_from_filename(sys.argv[1])\n\
        errors = list(OpenAPIV31SpecValidator(spec).iter_errors())\n\
        for error in errors: print(f\"{'/'.join(map(str, error.absolute_path))}: {error.message}\")\n\
        print(f'{len(errors)} errors')\n\
        sys.exit(1 if errors else 0)\n";
    let output = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .await
        .unwrap_or_else(|e| panic!("python3 is needed, with the packages in scripts/test-requirements.txt: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "openapi-spec-validator is missing: `python3 -m pip install -r scripts/test-requirements.txt`\n{stderr}"
    );
    assert!(output.status.success(), "/api/openapi.json is not valid OpenAPI 3.1:\n{stdout}{stderr}");
}

#[tokio::test]
async fn operation_ids_are_the_stable_method_names_generated_clients_use() {
    // Generated clients name their methods after these (`agents_list`, `agentsList`): renaming one breaks every
    // consumer's code, so the full list is pinned here, apart from the snapshot.
    let app = TestApp::spawn().await;
    let (_, doc) = app.get("/api/openapi.json").await;
    let mut ids: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|operation| operation["operationId"].as_str().map(str::to_owned))
        .collect();
    ids.sort_unstable();
    let crud = |group: &str| {
        ["create", "destroy", "list", "patch", "replace", "retrieve"].map(|action| format!("{group}_{action}"))
    };
    let mut expected: Vec<String> = ["agents", "tools", "agent_tools", "templates", "mcp_servers", "agent_mcp_servers"]
        .iter()
        .flat_map(|g| crud(g))
        .collect();
    expected.extend(
        [
            "agent_chat",
            "agent_stream",
            "agent_tool_output",
            "agent_approvals",
            "auth_login",
            "auth_logout",
            "auth_me",
            "health_check",
            "providers_list",
            "sessions_cancel",
            "sessions_create",
            "sessions_destroy",
            "sessions_events",
            "sessions_fork",
            "sessions_list",
            "sessions_messages",
            "sessions_retrieve",
            "sessions_tool_calls",
            "tokens_create",
            "tokens_list",
            "tokens_revoke",
            "usage_report",
            "users_create",
            "users_destroy",
            "users_list",
            "users_patch",
            "users_retrieve",
        ]
        .map(str::to_owned),
    );
    expected.sort_unstable();
    assert_eq!(ids, expected);
}
