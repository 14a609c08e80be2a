//! What every service's OpenAPI document says besides its own routes: the
//! bearer scheme, and each error status a route can answer with the error
//! body's schema, so that Swagger UI (and a client generated from the
//! document) knows every answer it may get.

use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{PartialSchema, ToSchema};

use crate::error::{ErrorBody, ErrorDetail};

/// Adds the bearer scheme and, to every operation, the errors it can answer
/// that it does not document yet.
pub fn complete(openapi: &mut OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
    );
    components.schemas.insert(ErrorBody::name().into_owned(), ErrorBody::schema());
    components.schemas.insert(ErrorDetail::name().into_owned(), ErrorDetail::schema());
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ];
        for operation in operations.into_iter().flatten() {
            for (status, why) in errors(path, operation) {
                let error = ResponseBuilder::new()
                    .description(why)
                    .content(
                        "application/json",
                        ContentBuilder::new().schema(Some(Ref::from_schema_name(ErrorBody::name()))).build(),
                    )
                    .build();
                operation.responses.responses.entry(status.to_string()).or_insert(RefOr::T(error));
            }
        }
    }
}

/// The errors `operation` on `path` can answer, whatever the route.
fn errors(path: &str, operation: &Operation) -> Vec<(u16, &'static str)> {
    let mut errors = vec![
        // A public route too, when a token comes with the request and is not valid.
        (401, "`unauthorized`: no token where one is needed, or an expired or revoked one"),
        (429, "`rate_limited`: too many requests from this client (the gateway's limit); see `Retry-After`"),
        (503, "`unavailable`: a service or a database it needs does not answer; try again"),
    ];
    if operation.security.as_ref().is_some_and(|s| !s.is_empty()) {
        errors.push((403, "`forbidden`: the caller's role may not call this route"));
    }
    if path.contains('{') {
        errors.push((404, "`not_found` (or the resource's own code): nothing at this path"));
    }
    let queried = operation.parameters.iter().flatten().any(|p| p.parameter_in == ParameterIn::Query);
    if operation.request_body.is_some() || queried {
        errors.push((400, "`malformed_json` or `invalid_query`: the request does not parse"));
        errors.push((422, "`invalid_body` or a rule of the route: the request parses but is not acceptable"));
    }
    if operation.request_body.is_some() {
        errors.push((413, "`payload_too_large`: the body is over the limit"));
        errors.push((415, "`unsupported_media_type`: the body is not `application/json`"));
    }
    errors
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    use super::*;

    #[derive(serde::Deserialize, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Thing {
        name: String,
    }

    #[utoipa::path(post, path = "/things/{id}", params(("id" = String, Path)), request_body = Thing,
        responses((status = 201, description = "made"), (status = 404, description = "no thing, the route's own")),
        security(("bearer" = [])))]
    #[allow(dead_code)]
    fn make() {}

    #[utoipa::path(get, path = "/health", responses((status = 200, description = "fine")))]
    #[allow(dead_code)]
    fn health() {}

    #[derive(utoipa::OpenApi)]
    #[openapi(paths(make, health))]
    struct Api;

    fn statuses(doc: &OpenApi, path: &str, get: bool) -> Vec<String> {
        let item = &doc.paths.paths[path];
        let operation = if get { item.get.as_ref() } else { item.post.as_ref() };
        operation.unwrap().responses.responses.keys().cloned().collect()
    }

    #[test]
    fn each_operation_documents_the_errors_it_can_answer_without_overwriting_its_own() {
        let mut doc = Api::openapi();
        complete(&mut doc);
        let make = statuses(&doc, "/things/{id}", false);
        assert_eq!(make, ["201", "400", "401", "403", "404", "413", "415", "422", "429", "503"]);
        let item = &doc.paths.paths["/things/{id}"];
        let RefOr::T(not_found) = &item.post.as_ref().unwrap().responses.responses["404"] else { panic!() };
        assert_eq!(not_found.description, "no thing, the route's own");
        assert_eq!(statuses(&doc, "/health", true), ["200", "401", "429", "503"]);
        let schemas = &doc.components.as_ref().unwrap().schemas;
        assert!(schemas.contains_key("ErrorBody") && schemas.contains_key("ErrorDetail"));
    }
}
