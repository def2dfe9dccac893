//! The machine-readable description of the API (OpenAPI 3.1), served at
//! `GET /api/v1/openapi.json` to any authenticated caller.
//!
//! It is generated from the code: every `/api/v1` route is registered in [`super::api_routes`]
//! through `utoipa_axum::routes!` from its handler's `#[utoipa::path]` annotation, so the method
//! and path the router serves and the ones the document describes come from one place, and the
//! request and response schemas are derived from the Rust types the handlers read and write.
//! [`document`] adds what is common to every operation: the title and version, the security
//! schemes (bearer token, the console's session cookie, signed `grant=` URLs on media routes),
//! the error envelope, and the 401 (and 413, 503) answers every operation can give.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref, RefOr, ResponseBuilder, Tag};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use super::auth::Caller;
use super::error::ErrorBody;

/// Where the API is mounted; the document's paths start with it.
pub const PREFIX: &str = "/api/v1";

/// The description of the document.
const DESCRIPTION: &str = "HTTP API of evidenced, the evidence archive for law-enforcement audio and video recordings. \
    All of it is JSON under `/api/v1`, and every route answers 401 without credentials: a bearer token \
    (`Authorization: Bearer evd_…`, from `evidenced token create`, or an OIDC JWT when `[oidc]` is configured) or the \
    console's session cookie from `POST /api/v1/session`. The media routes also take the short-lived signed URLs \
    (`?grant=…`) that `POST /api/v1/recordings/{id}/access` answers. A recording outside the caller's scope answers 404, \
    a role that may not act 403; errors are `{\"error\": {\"code\", \"message\"}}`. Classified recordings need a reason \
    (`X-Access-Reason`, percent-encoded UTF-8). See the README (section \"API\") for roles, scopes and the custody \
    log; `/healthz`, `/readyz` and `/metrics` are outside `/api/v1` and need no token.";

/// The tags, in the order a reader meets them, with their descriptions.
const TAGS: &[(&str, &str)] = &[
    ("recordings", "Search, read and correct recordings"),
    ("media", "The original, proxy and poster of a recording, and clips"),
    ("access", "Console sessions, audited access grants and explicit grants of state secrets"),
    ("cases", "Cases and their recordings"),
    ("retention", "Categories, legal holds, the destruction queue, certificates and annual reports"),
    ("custody", "Custody events, the audit trail, live events, checkpoints and signing keys"),
    ("admin", "Principals and nodes"),
    ("meta", "This description"),
];

/// The API description with the common parts added (built from [`super::api_routes`]).
pub fn document() -> OpenApi {
    let (_, api) = super::api_routes().split_for_parts();
    let info = InfoBuilder::new()
        .title("evidenced")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(utoipa::openapi::LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build()))
        .build();
    let mut doc = OpenApiBuilder::new().info(info).build().nest(PREFIX, api);

    let components = doc.components.get_or_insert_with(Default::default);
    let mut schemas = vec![(ErrorBody::name().into_owned(), ErrorBody::schema())];
    ErrorBody::schemas(&mut schemas);
    for (name, schema) in schemas {
        components.schemas.entry(name).or_insert(schema);
    }
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("A principal's token (`evd_…`), or a JWT from the identity provider when `[oidc]` is configured"))
                .build(),
        ),
    );
    components.add_security_scheme(
        "session",
        SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
            super::auth::SESSION_COOKIE,
            "The console's session (HttpOnly, SameSite=Strict), set by `POST /api/v1/session`; state-changing requests \
             must come from the same origin",
        ))),
    );
    components.add_security_scheme(
        "grant",
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            "grant",
            "A signed, short-lived access link from `POST /api/v1/recordings/{id}/access` (media routes only)",
        ))),
    );
    for (name, _, description) in COMMON_RESPONSES {
        let body = ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build();
        let response = ResponseBuilder::new().description(*description).content("application/json", body).build();
        components.responses.insert(name.to_string(), response.into());
    }
    doc.security =
        Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new()), SecurityRequirement::new("session", Vec::<String>::new())]);
    doc.tags = Some(
        TAGS.iter()
            .map(|(name, description)| utoipa::openapi::tag::TagBuilder::new().name(*name).description(Some(*description)).build())
            .collect::<Vec<Tag>>(),
    );

    for item in doc.paths.paths.values_mut() {
        for op in operations_mut(item) {
            let with_body = op.request_body.is_some();
            for (name, status, _) in COMMON_RESPONSES {
                if *status == "413" && !with_body {
                    continue;
                }
                op.responses
                    .responses
                    .entry(status.to_string())
                    .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
            }
        }
    }
    doc
}

/// Answers every operation can give, by name under `components/responses`, status and meaning
/// (413 only where there is a request body).
const COMMON_RESPONSES: &[(&str, &str, &str)] = &[
    ("Unauthorized", "401", "No valid credentials (`unauthorized`)"),
    ("TooLarge", "413", "The request body is over 1 MiB (`payload_too_large`)"),
    ("Unavailable", "503", "The catalog or the store is unavailable (`unavailable`); retry later"),
];

/// The operations of a path item.
fn operations_mut(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.options, &mut item.head, &mut item.patch, &mut item.trace]
        .into_iter()
        .filter_map(Option::as_mut)
}

/// The document as JSON, built once.
pub fn json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_pretty_json().expect("the API description serializes"))
}

/// `GET /api/v1/openapi.json`: this API's description (any valid token or session).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "get_openapi",
    summary = "This API description",
    description = "The OpenAPI 3.1 description of `/api/v1`, generated from the code.",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)),
)]
pub async fn serve(_caller: Caller) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        json(),
    )
        .into_response()
}

// --- shared parameters -----------------------------------------------------------------------

/// The reason header for classified recordings.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct ReasonHeader {
    /// Why a classified recording is opened: percent-encoded UTF-8, at most 1000 characters;
    /// required for recordings classified other than `normal` (else 403 `reason_required`).
    #[param(rename = "X-Access-Reason")]
    reason: Option<String>,
}

/// The byte-range and conditional request headers of the media routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct RangeHeaders {
    /// One byte range (`bytes=START-END`, `bytes=START-` or the suffix `bytes=-N`); several
    /// ranges or an unparseable header get the whole object.
    #[param(rename = "Range")]
    range: Option<String>,
    /// Send the range only while the ETag is still this one.
    #[param(rename = "If-Range")]
    if_range: Option<String>,
    /// 304 when the ETag is among these.
    #[param(rename = "If-None-Match")]
    if_none_match: Option<String>,
}

// --- response shapes the handlers build as JSON ------------------------------------------------

/// A custody log entry (`hash = SHA-256(prev_hash ‖ SHA-256(canonical JSON of the rest))`).
#[derive(ToSchema)]
#[schema(as = CustodyEvent)]
#[allow(dead_code)]
pub struct CustodyEventSchema {
    /// Position in the chain, from 1, without gaps.
    seq: i64,
    /// When it happened, RFC 3339 UTC with microseconds.
    at: String,
    /// What happened (`archived`, `accessed`, `downloaded`, `classified`, ...).
    kind: String,
    /// Who did it: a principal name, or `node:<id>` for the daemon.
    actor: String,
    /// The recording it concerns, if any.
    recording_id: Option<String>,
    /// Kind-specific facts.
    details: serde_json::Value,
    /// Hash of the previous entry (hex).
    prev_hash: String,
    /// Hash of this entry (hex).
    hash: String,
}

/// A recording's custody events, oldest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CustodyEvents {
    /// The events.
    items: Vec<CustodyEventSchema>,
}

/// A page of audit events, newest first.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct AuditPage {
    /// The events.
    items: Vec<CustodyEventSchema>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

/// A page of cases, by id.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CasePage {
    /// The cases.
    items: Vec<crate::catalog::Case>,
    /// Pass as `cursor` for the next page; null on the last one.
    next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use serde_json::Value;

    use super::*;

    fn doc() -> Value {
        serde_json::from_str(json()).expect("the document is JSON")
    }

    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

    /// (method, path) of every operation.
    fn operations(d: &Value) -> Vec<(String, String, Value)> {
        let mut out = vec![];
        for (path, item) in d["paths"].as_object().expect("paths") {
            for m in METHODS {
                if let Some(op) = item.get(m) {
                    out.push((m.to_string(), path.clone(), op.clone()));
                }
            }
        }
        out
    }

    #[test]
    fn is_openapi_3_with_info_and_security() {
        let d = doc();
        assert!(d["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", d["openapi"]);
        assert_eq!(d["info"]["title"], "evidenced");
        assert_eq!(d["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(d["info"]["description"].as_str().unwrap().contains("README"));
        let schemes = &d["components"]["securitySchemes"];
        assert_eq!(schemes["bearer"]["scheme"], "bearer");
        assert_eq!((schemes["session"]["in"].as_str(), schemes["session"]["name"].as_str()), (Some("cookie"), Some("evidenced_session")));
        assert_eq!((schemes["grant"]["in"].as_str(), schemes["grant"]["name"].as_str()), (Some("query"), Some("grant")));
    }

    #[test]
    fn every_operation_is_described_guarded_and_unique() {
        let d = doc();
        let ops = operations(&d);
        assert!(ops.len() >= 45, "{} operations", ops.len());
        let mut ids = BTreeSet::new();
        let tags: BTreeSet<&str> = TAGS.iter().map(|(t, _)| *t).collect();
        for (m, path, op) in &ops {
            let what = format!("{m} {path}");
            assert!(path.starts_with("/api/v1/"), "{what}");
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{what}: no operationId"));
            assert!(ids.insert(id.to_string()), "{what}: operationId {id} twice");
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{what}: no summary");
            let op_tags = op["tags"].as_array().unwrap_or_else(|| panic!("{what}: no tag"));
            assert!(op_tags.iter().all(|t| tags.contains(t.as_str().unwrap())), "{what}: tags {op_tags:?}");
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{what}: no responses"));
            assert!(responses.keys().any(|s| s.starts_with('2')), "{what}: no 2xx response");
            assert!(responses.contains_key("401"), "{what}: no 401");
            for (status, r) in responses {
                assert!(r.get("$ref").is_some() || r["description"].as_str().is_some_and(|s| !s.is_empty()), "{what} {status}");
            }
            // Every {param} of the path is declared as a path parameter, and nothing else is.
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let in_path: BTreeSet<&str> =
                path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
            assert_eq!(declared, in_path, "{what}: path parameters");
            // The body methods have request bodies where the handler reads one; no GET/DELETE-only fields.
            if op.get("requestBody").is_some() {
                assert!(responses.contains_key("413"), "{what}: a body but no 413");
            }
        }
        // Everything but signing in needs credentials (the document's default security).
        let security: Vec<&str> =
            d["security"].as_array().unwrap().iter().flat_map(|r| r.as_object().unwrap().keys()).map(String::as_str).collect();
        assert_eq!(security, ["bearer", "session"]);
        for (m, path, op) in &ops {
            if let Some(s) = op.get("security") {
                let names: Vec<&str> =
                    s.as_array().unwrap().iter().flat_map(|r| r.as_object().unwrap().keys()).map(String::as_str).collect();
                match (m.as_str(), path.as_str()) {
                    ("post", "/api/v1/session") => assert!(names.is_empty(), "{names:?}"),
                    (_, p) if p.ends_with("/original") || p.ends_with("/proxy") || p.ends_with("/poster") => {
                        assert_eq!(names, ["bearer", "session", "grant"], "{m} {path}")
                    }
                    _ => panic!("{m} {path}: unexpected security {s}"),
                }
            }
        }
    }

    /// Every `$ref` in the document resolves to a component that exists.
    #[test]
    fn every_reference_resolves() {
        fn walk<'a>(v: &'a Value, refs: &mut Vec<&'a str>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::String(r)) = m.get("$ref") {
                        refs.push(r);
                    }
                    m.values().for_each(|x| walk(x, refs));
                }
                Value::Array(a) => a.iter().for_each(|x| walk(x, refs)),
                _ => {}
            }
        }
        let d = doc();
        let mut refs = vec![];
        walk(&d, &mut refs);
        assert!(refs.len() > 50, "{} references", refs.len());
        for r in refs {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external reference {r}"));
            assert!(d.pointer(pointer).is_some(), "{r} does not resolve");
        }
        // And every component schema is used somewhere (no stale ones).
        let text = json();
        for name in d["components"]["schemas"].as_object().unwrap().keys() {
            assert!(text.contains(&format!("\"#/components/schemas/{name}\"")), "schema {name} is never referenced");
        }
    }

    /// The contract's routes are all described, with the operations they name.
    #[test]
    fn the_contract_routes_are_described() {
        let d = doc();
        let have: BTreeSet<(String, String)> = operations(&d).into_iter().map(|(m, p, _)| (m, p)).collect();
        for (m, p) in CONTRACT_ROUTES {
            assert!(have.contains(&(m.to_string(), format!("{PREFIX}{p}"))), "{m} {p} is not described");
        }
    }

    /// The query parameters the description lists are the ones the handlers accept.
    #[test]
    fn query_parameters_match_the_parsers() {
        let d = doc();
        let names = |m: &str, p: &str| -> Vec<String> {
            let op = &d["paths"][format!("{PREFIX}{p}")][m];
            let mut v: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|x| x["in"] == "query")
                .map(|x| x["name"].as_str().unwrap().to_string())
                .collect();
            v.sort();
            v
        };
        let sorted = |k: &[&str]| -> Vec<String> {
            let mut v: Vec<String> = k.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(names("get", "/recordings"), sorted(&super::super::recordings::FILTER_KEYS));
        assert_eq!(names("get", "/cases/{id}/recordings"), sorted(&super::super::recordings::FILTER_KEYS));
        assert_eq!(names("get", "/audit"), sorted(&super::super::audit::KEYS));
        let headers: BTreeMap<String, Value> = d["paths"]["/api/v1/recordings/{id}/proxy"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["in"] == "header")
            .map(|x| (x["name"].as_str().unwrap().to_string(), x.clone()))
            .collect();
        assert!(["X-Access-Reason", "Range", "If-Range", "If-None-Match"].iter().all(|h| headers.contains_key(*h)), "{headers:?}");
    }

    /// The `/api/v1` router registers its routes only through `routes!`, so that none can be
    /// served without being described.
    #[test]
    fn routes_are_registered_only_from_annotations() {
        let src = include_str!("mod.rs");
        let start = src.find("fn api_routes()").expect("api_routes in mod.rs");
        let body = &src[start..start + src[start..].find("\n}\n").expect("end of api_routes")];
        for forbidden in [".route(", ".route_service(", ".nest(", ".nest_service(", ".merge("] {
            assert!(!body.contains(forbidden), "api_routes uses {forbidden}: register routes with routes!(handler) instead");
        }
        assert!(body.matches("routes!(").count() >= 30);
    }

    /// The routes of the CONTRACT's table (method, path under `/api/v1`).
    pub(crate) const CONTRACT_ROUTES: &[(&str, &str)] = &[
        ("get", "/recordings"),
        ("get", "/recordings/{id}"),
        ("patch", "/recordings/{id}"),
        ("post", "/recordings/{id}/access"),
        ("get", "/recordings/{id}/original"),
        ("get", "/recordings/{id}/proxy"),
        ("get", "/recordings/{id}/poster"),
        ("post", "/recordings/{id}/clips"),
        ("get", "/clips/{id}"),
        ("get", "/clips/{id}/media"),
        ("put", "/cases/{id}"),
        ("get", "/cases/{id}"),
        ("put", "/cases/{id}/recordings/{rid}"),
        ("delete", "/cases/{id}/recordings/{rid}"),
        ("put", "/recordings/{id}/classification"),
        ("put", "/recordings/{id}/grants/{principal}"),
        ("delete", "/recordings/{id}/grants/{principal}"),
        ("get", "/recordings/{id}/custody"),
        ("get", "/events"),
        ("put", "/recordings/{id}/category"),
        ("delete", "/recordings/{id}/category"),
        ("put", "/recordings/{id}/hold"),
        ("delete", "/recordings/{id}/hold"),
        ("get", "/destructions"),
        ("post", "/destructions/{id}/approve"),
        ("get", "/audit"),
        ("get", "/principals"),
        ("post", "/principals"),
        ("get", "/principals/{name}"),
        ("delete", "/principals/{name}"),
        ("get", "/session"),
        ("post", "/session"),
        ("delete", "/session"),
        ("get", "/openapi.json"),
    ];
}
