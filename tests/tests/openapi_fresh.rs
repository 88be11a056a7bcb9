//! The checked-in `openapi/openapi.json` must be what the code generates; regenerate with
//! `cargo run -q --bin phasebook -- openapi > openapi/openapi.json`.

#[test]
fn checked_in_openapi_document_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/openapi.json");
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    let generated = phasebook_api::routes::openapi_json();
    assert!(
        checked_in == generated,
        "openapi/openapi.json is stale; regenerate it with \
         `cargo run -q --bin phasebook -- openapi > openapi/openapi.json`"
    );
}
