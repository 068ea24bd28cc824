-- Idempotency keys for createTask: a client that retries a create (a timeout, a flaky
-- network) with the same key gets the task the first attempt made instead of a duplicate.
create table task_idempotency_keys
(
    user_id         text        not null
        constraint task_idempotency_keys_user_id_fkey references users (id) on delete cascade,
    idempotency_key text        not null,
    -- Deleting the task forgets the key: a retry after a delete creates the task again.
    task_id         uuid        not null
        constraint task_idempotency_keys_task_id_fkey references tasks (id) on delete cascade,
    -- SHA-256 of the create input, so reusing a key for a different task is detected.
    request_digest  bytea       not null,
    created_at      timestamptz not null default now(),

    -- Keys are per user: two users may pick the same key.
    constraint task_idempotency_keys_pkey primary key (user_id, idempotency_key),
    constraint task_idempotency_keys_key_length check (char_length(idempotency_key) between 1 and 255)
);

-- The task_id foreign key's ON DELETE CASCADE looks rows up by task_id.
create index task_idempotency_keys_task_idx on task_idempotency_keys (task_id);
