//! Resolver spans for traces: a span around each resolver that may run SQL (the root
//! fields, `User.tasks`, `User.taskStats`, `TaskConnection.totalCount`, `Task.owner`), so a
//! trace shows which field ran which statements. Installed only when spans are exported;
//! other fields (a task's title) get none, keeping traces readable and cheap.

use std::sync::Arc;

use async_graphql::{
    ServerResult, Value,
    async_trait::async_trait,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo},
};
use tracing::Instrument as _;

/// Fields below the roots whose resolvers go to the database.
const DATABASE_FIELDS: [(&str, &str); 4] = [
    ("User", "tasks"),
    ("User", "taskStats"),
    ("TaskConnection", "totalCount"),
    ("Task", "owner"),
];

pub struct ResolverSpans;

impl ExtensionFactory for ResolverSpans {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ResolverSpans)
    }
}

#[async_trait]
impl Extension for ResolverSpans {
    async fn resolve(
        &self,
        ctx: &ExtensionContext<'_>,
        info: ResolveInfo<'_>,
        next: NextResolve<'_>,
    ) -> ServerResult<Option<Value>> {
        let traced = matches!(info.parent_type, "Query" | "Mutation")
            || DATABASE_FIELDS.contains(&(info.parent_type, info.name));
        if !traced {
            return next.run(ctx, info).await;
        }
        let span = tracing::debug_span!(
            "graphql.resolve",
            otel.name = %format_args!("{}.{}", info.parent_type, info.name),
            graphql.field.path = %info.path_node,
        );
        next.run(ctx, info).instrument(span).await
    }
}
