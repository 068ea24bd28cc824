//! Validated values: what a task may contain, and typed filters and orders over tasks.
//!
//! The GraphQL layer parses client input into these types ("parse, don't validate"), and the
//! database layer accepts nothing else, so an unvalidated title, an out-of-range priority or a
//! filter nested a thousand levels deep cannot reach SQL. The database's CHECK constraints
//! remain the second line of defence.

pub mod query;
pub mod task;
pub mod text;
