//! `schema.graphql` is generated from the code; this keeps the checked-in copy honest.

#[test]
fn schema_graphql_is_in_sync_with_the_code() {
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
            .expect("schema.graphql exists at the repository root");
    let generated = taskql::graphql::sdl();
    assert!(
        checked_in == generated,
        "schema.graphql is stale. Regenerate it with:\n\n    cargo run -- schema > schema.graphql\n"
    );
}
