-- Tasks: every row belongs to exactly one user, and the database enforces every rule below,
-- so no writer (this service, a migration, a psql session) can store an invalid task.
create table tasks
(
    -- UUIDv7, made by the application: time-ordered, so inserts append to the primary key
    -- index instead of scattering across it, and the id doubles as a stable tiebreak.
    id           uuid primary key,
    -- Deleting a user deletes their tasks: no orphan can exist.
    user_id      text        not null
        constraint tasks_user_id_fkey references users (id) on delete cascade,
    title        text        not null,
    description  text,
    completed    boolean     not null default false,
    priority     smallint    not null default 3,
    due_at       timestamptz,
    completed_at timestamptz,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),

    -- Counted in characters, not bytes, as the API documents. "Non-blank" means at least one
    -- character that is not whitespace.
    constraint tasks_title_length check (char_length(title) between 1 and 200),
    constraint tasks_title_not_blank check (title ~ '[^[:space:]]'),
    constraint tasks_description_length check (char_length(description) <= 1000),
    constraint tasks_priority_range check (priority between 1 and 5),
    -- A task has a completion time exactly when it is completed.
    constraint tasks_completed_at_consistent check (completed = (completed_at is not null)),
    -- PostgreSQL accepts 'infinity' as a timestamp; the ordering below uses it to stand for
    -- "no due date", so a real due date may not be infinite.
    constraint tasks_due_at_finite check (isfinite(due_at)),

    -- The words of the title and description, for the `search` filter. 'simple' lower-cases
    -- and splits words without stemming, so a search matches the words as typed, in any case.
    search       tsvector generated always as (
        to_tsvector('simple', title || ' ' || coalesce(description, ''))
    ) stored
);

-- Keeps `completed_at` in step with `completed`, so writers only ever set `completed`:
-- completing stamps the time once, re-completing keeps it, reopening clears it.
create function set_completed_at() returns trigger
language plpgsql as
$$
begin
    if not new.completed then
        new.completed_at := null;
    elsif tg_op = 'INSERT' or not old.completed then
        new.completed_at := coalesce(new.completed_at, now());
    else
        new.completed_at := old.completed_at;
    end if;
    return new;
end;
$$;

create trigger set_completed_at
    before insert or update of completed, completed_at on tasks
    for each row execute function set_completed_at();

select manage_updated_at('tasks', 'search');

-- One index per order the API offers, each leading with user_id (every query is scoped to one
-- user) and ending with id (the tiebreak that makes the order total). A page of any order is
-- then a range scan of one user's slice of one index, read in index order: keyset pagination
-- never sorts and never reads another user's rows, whatever the table's size.

-- orderBy CREATED_AT (the default order, newest first, is a backward scan of this index).
create index tasks_user_created_idx on tasks (user_id, created_at, id);

-- orderBy UPDATED_AT ("recently changed").
create index tasks_user_updated_idx on tasks (user_id, updated_at, id);

-- orderBy DUE_AT. The API puts tasks without a due date last in *both* directions. Ordering by
-- coalesce(due_at, +infinity) ascending, or coalesce(due_at, -infinity) descending, gives
-- exactly that with a sort key that is never null, so a page boundary is a plain row comparison
-- that PostgreSQL uses as an index condition (a seek). One expression index per direction.
create index tasks_user_due_idx on tasks (user_id, coalesce(due_at, 'infinity'::timestamptz), id);
create index tasks_user_due_desc_idx on tasks (user_id, coalesce(due_at, '-infinity'::timestamptz), id);

-- orderBy PRIORITY.
create index tasks_user_priority_idx on tasks (user_id, priority, id);

-- orderBy TITLE (alphabetical lists).
create index tasks_user_title_idx on tasks (user_id, title, id);

-- orderBy COMPLETED, and the common "open tasks" / "done tasks" filter.
create index tasks_user_completed_idx on tasks (user_id, completed, id);

-- The `search` filter (full-text, words in title or description). GIN cannot lead with
-- user_id without the btree_gin extension; PostgreSQL combines this index with the user_id
-- indexes above in a bitmap AND.
create index tasks_search_idx on tasks using gin (search);
