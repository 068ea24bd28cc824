//! The schema's own guarantees: every rule is enforced by PostgreSQL itself, so no writer
//! (this service, a script, a psql session) can store an invalid row.

use sqlx::PgPool;

use crate::common::TestDb;

async fn migrated() -> (TestDb, PgPool) {
    let db = TestDb::create().await;
    let pool = db.pool().await;
    taskql::db::MIGRATOR
        .run(&pool)
        .await
        .expect("migrations apply");
    (db, pool)
}

async fn insert_user(pool: &PgPool, id: &str) {
    sqlx::query("insert into users (id, email) values ($1, $1 || '@example.com')")
        .bind(id)
        .execute(pool)
        .await
        .expect("insert user");
}

/// Inserts a task with `title`, `description` and `priority`; returns the violated constraint.
async fn insert_task(
    pool: &PgPool,
    user: &str,
    title: &str,
    description: Option<&str>,
    priority: i16,
) -> Option<String> {
    let result = sqlx::query(
        "insert into tasks (id, user_id, title, description, priority) values ($1, $2, $3, $4, $5)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(user)
    .bind(title)
    .bind(description)
    .bind(priority)
    .execute(pool)
    .await;
    match result {
        Ok(_) => None,
        Err(sqlx::Error::Database(err)) => Some(err.constraint().unwrap_or("<none>").to_owned()),
        Err(err) => panic!("unexpected error: {err}"),
    }
}

#[tokio::test]
async fn applying_migrations_twice_is_a_no_op() {
    let (_db, pool) = migrated().await;
    let before: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("select version, checksum from _sqlx_migrations order by version")
            .fetch_all(&pool)
            .await
            .expect("read migrations");
    taskql::db::MIGRATOR
        .run(&pool)
        .await
        .expect("second run succeeds");
    let after: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("select version, checksum from _sqlx_migrations order by version")
            .fetch_all(&pool)
            .await
            .expect("read migrations");
    assert_eq!(before.len(), taskql::db::MIGRATOR.iter().count());
    assert_eq!(before, after);
}

#[tokio::test]
async fn every_task_constraint_rejects_what_it_should() {
    let (_db, pool) = migrated().await;
    insert_user(&pool, "alice").await;
    struct Case<'a> {
        name: &'a str,
        user: &'a str,
        title: &'a str,
        description: Option<&'a str>,
        priority: i16,
        violates: &'a [&'a str],
    }
    let long_title = "t".repeat(201);
    let long_description = "d".repeat(1001);
    let valid = Case {
        name: "",
        user: "alice",
        title: "ok",
        description: None,
        priority: 3,
        violates: &[],
    };
    let cases = [
        Case {
            name: "empty title",
            title: "",
            violates: &["tasks_title_length", "tasks_title_not_blank"],
            ..valid
        },
        Case {
            name: "blank title",
            title: " \t\n ",
            violates: &["tasks_title_not_blank"],
            ..valid
        },
        Case {
            name: "201-character title",
            title: &long_title,
            violates: &["tasks_title_length"],
            ..valid
        },
        Case {
            name: "1001-character description",
            description: Some(&long_description),
            violates: &["tasks_description_length"],
            ..valid
        },
        Case {
            name: "priority 0",
            priority: 0,
            violates: &["tasks_priority_range"],
            ..valid
        },
        Case {
            name: "priority 6",
            priority: 6,
            violates: &["tasks_priority_range"],
            ..valid
        },
        Case {
            name: "a missing user",
            user: "nobody",
            violates: &["tasks_user_id_fkey"],
            ..valid
        },
    ];
    for case in cases {
        let violated = insert_task(
            &pool,
            case.user,
            case.title,
            case.description,
            case.priority,
        )
        .await;
        assert!(
            violated
                .as_deref()
                .is_some_and(|name| case.violates.contains(&name)),
            "{}: expected a violation of {:?}, got {violated:?}",
            case.name,
            case.violates
        );
    }
    // The limits count characters, not bytes: 200 four-byte characters fit.
    assert_eq!(
        insert_task(
            &pool,
            "alice",
            &"🦀".repeat(200),
            Some(&"é".repeat(1000)),
            5
        )
        .await,
        None
    );
    assert_eq!(insert_task(&pool, "alice", "ok", None, 1).await, None);
    let count: i64 = sqlx::query_scalar("select count(*) from tasks")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(count, 2, "only the two valid tasks were stored");
}

#[tokio::test]
async fn deleting_a_user_deletes_their_tasks() {
    let (_db, pool) = migrated().await;
    insert_user(&pool, "alice").await;
    insert_user(&pool, "bob").await;
    for user in ["alice", "alice", "bob"] {
        assert_eq!(insert_task(&pool, user, "task", None, 3).await, None);
    }
    sqlx::query("delete from users where id = 'alice'")
        .execute(&pool)
        .await
        .expect("delete");
    let owners: Vec<String> = sqlx::query_scalar("select user_id from tasks")
        .fetch_all(&pool)
        .await
        .expect("read");
    assert_eq!(owners, ["bob"]);
}

#[tokio::test]
async fn updated_at_moves_on_every_change_and_only_then() {
    let (_db, pool) = migrated().await;
    insert_user(&pool, "alice").await;
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "insert into tasks (id, user_id, title, created_at, updated_at)
         values ($1, 'alice', 'old', now() - interval '1 day', now() - interval '1 day')",
    )
    .bind(id)
    .execute(&pool)
    .await
    .expect("insert");
    let read = || async {
        sqlx::query_scalar::<_, chrono::DateTime<chrono::Utc>>(
            "select updated_at from tasks where id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("read")
    };
    let inserted = read().await;
    sqlx::query("update tasks set title = 'new' where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .expect("update");
    let changed = read().await;
    assert!(changed > inserted, "a change moves updated_at");
    sqlx::query("update tasks set title = 'new' where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .expect("update");
    assert_eq!(
        read().await,
        changed,
        "an update that changes nothing leaves it alone"
    );
    // Two updates in one transaction still give two distinct, increasing timestamps.
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("update tasks set title = 'a' where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect("update");
    let first: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select updated_at from tasks where id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .expect("read");
    sqlx::query("update tasks set title = 'b' where id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await
        .expect("update");
    let second: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("select updated_at from tasks where id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .expect("read");
    tx.commit().await.expect("commit");
    assert!(
        second > first,
        "updated_at strictly increases even within a transaction"
    );
}

#[tokio::test]
async fn completed_at_follows_completed() {
    let (_db, pool) = migrated().await;
    insert_user(&pool, "alice").await;
    let id = uuid::Uuid::now_v7();
    sqlx::query("insert into tasks (id, user_id, title) values ($1, 'alice', 't')")
        .bind(id)
        .execute(&pool)
        .await
        .expect("insert");
    let state = || async {
        sqlx::query_as::<_, (bool, Option<chrono::DateTime<chrono::Utc>>)>(
            "select completed, completed_at from tasks where id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .expect("read")
    };
    assert_eq!(state().await, (false, None));
    sqlx::query("update tasks set completed = true where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .expect("complete");
    let (completed, stamped) = state().await;
    assert!(completed && stamped.is_some());
    sqlx::query("update tasks set completed = true, title = 'x' where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .expect("again");
    assert_eq!(
        state().await.1,
        stamped,
        "completing again keeps the first completion time"
    );
    sqlx::query("update tasks set completed = false where id = $1")
        .bind(id)
        .execute(&pool)
        .await
        .expect("reopen");
    assert_eq!(state().await, (false, None));
    let forged = sqlx::query("update tasks set completed_at = now() where id = $1")
        .bind(id)
        .execute(&pool)
        .await;
    assert!(
        forged.is_ok(),
        "the trigger clears a stray completion time instead of failing"
    );
    assert_eq!(state().await, (false, None));
}

/// Better Auth owns email uniqueness: the mirror accepts two ids with one address (a
/// returning user with a new account), so that neither is locked out.
#[tokio::test]
async fn two_users_may_share_an_email() {
    let (_db, pool) = migrated().await;
    for id in ["a", "b"] {
        sqlx::query("insert into users (id, email) values ($1, 'alice@example.com')")
            .bind(id)
            .execute(&pool)
            .await
            .expect("insert");
    }
}
