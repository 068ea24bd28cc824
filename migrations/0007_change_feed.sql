-- The change feed: a version per user, advanced by every write in the writing statement
-- itself, in place of 0006's NOTIFY inside every write transaction (src/live says why and
-- how the feed is read).
--
-- `pg_notify` in a transaction makes its commit take a cluster-wide lock until the commit is
-- flushed, so every notifying writer in the database queued behind every other: 885 inserts/s
-- with the trigger against 2,045/s without it. Writers now only advance their user's
-- version; each taskql instance announces what it committed afterwards, coalesced, and
-- readers fetch changes by version.
drop trigger notify_task_change on tasks;
drop function notify_task_change();

-- users.version: the number of the user's latest change. Writers of one user take this row's
-- lock to advance it (`update users set version = version + n`), so that user's versions are
-- handed out in commit order: a writer cannot get version v+1 before the holder of v has
-- committed or rolled back. Writers of different users never meet. Numbers left unused by a
-- rolled-back write are gaps, which readers skip.
--
-- users.sync_epoch: which life of the account the versions count. `deleteMe` removes the row
-- and a later sign-in starts again from 0 under a new epoch; a restore draws new epochs too,
-- so a client holding a version from before is told to resync instead of trusting numbers
-- that mean something else now. Random, so epochs of one id do not repeat.
--
-- users.sync_floor: the highest version of a tombstone the retention purge removed. A client
-- asking for changes since a version below it may have missed a deletion and is told to
-- resync; above it, the answer is exact however old the version.
alter table users
    add column version    bigint not null default 0,
    add column sync_epoch bigint not null default (random() * 4611686018427387903)::bigint,
    add column sync_floor bigint not null default 0,
    add constraint users_version_range check (version >= 0 and sync_floor <= version);

-- users.updated_at is the profile's time: advancing the version must not touch it, and the
-- profile trigger need not run for it at all. Only the profile's columns fire it now.
drop trigger set_updated_at on users;
create trigger set_updated_at
    before update of email, name, image on users
    for each row execute function set_updated_at();

-- tasks.version: the version of the task's latest change (its row is the change: readers
-- take the task as it now is). created_version and completed_version tell a reader, for a
-- client at version v, whether the task is new to it (created after v) and whether
-- `completed` flipped since v; that is all an event's kind needs.
alter table tasks
    add column version           bigint,
    add column created_version   bigint,
    add column completed_version bigint;

-- Existing tasks are numbered per user in creation order, and each user's version is set to
-- their count, so a client starting from 0 receives every task once. The `updated_at`
-- trigger is recreated below (it ignores the version columns); it is gone while this runs,
-- so the backfill changes no timestamp.
drop trigger set_updated_at on tasks;
update tasks t
set version = n.rn, created_version = n.rn, completed_version = n.rn
from (select id, row_number() over (partition by user_id order by created_at, id) as rn from tasks) n
where t.id = n.id;
update users u
set version = c.n
from (select user_id, count(*) as n from tasks group by user_id) c
where u.id = c.user_id;

alter table tasks
    alter column version set not null,
    alter column created_version set not null,
    alter column completed_version set not null;

select manage_updated_at('tasks', 'search', 'version', 'created_version', 'completed_version');

-- The feed read: one user's tasks changed after a version, in version order. A range scan of
-- one user's slice, however many tasks the user has and however old the version.
create index tasks_user_version_idx on tasks (user_id, version);

-- Deleted tasks leave a tombstone, so a client that was away learns of the deletion. Kept
-- for SYNC_RETENTION, then purged by the server in small batches (advancing
-- users.sync_floor). A user's deletion (`deleteMe`) takes their tombstones with it.
create table task_tombstones
(
    user_id    text        not null
        constraint task_tombstones_user_id_fkey references users (id) on delete cascade,
    version    bigint      not null,
    task_id    uuid        not null,
    deleted_at timestamptz not null default now(),

    -- One change per version per user; the key is also the feed read's range scan and the
    -- user cascade's lookup.
    constraint task_tombstones_pkey primary key (user_id, version)
);

-- The purge finds expired tombstones oldest first without reading the live ones.
create index task_tombstones_deleted_at_idx on task_tombstones (deleted_at);

-- taskql's own writes set the versions in the writing statement (src/db/tasks/write.rs).
-- Writes from elsewhere (psql, a data migration) would leave them behind, and clients would
-- never hear of those changes. These triggers catch exactly those writes: the WHEN clauses
-- are checked without calling any function, so taskql's writes pay nothing for them.
--
-- An insert without a version, or an update that changed the row but not its version,
-- advances the owner's version here.
create function sync_external_write() returns trigger
language plpgsql as
$$
declare
    stamped bigint;
begin
    if tg_op = 'UPDATE'
       and to_jsonb(new) - 'search' - 'updated_at' = to_jsonb(old) - 'search' - 'updated_at' then
        -- The same values written again (a bulk completion of a completed task): no change.
        return new;
    end if;
    update users set version = version + 1 where id = new.user_id returning version into stamped;
    -- No such user: the foreign key refuses the row (it checks after this trigger, so the
    -- version columns must not be the ones to refuse it first).
    stamped := coalesce(stamped, 0);
    new.version := stamped;
    if tg_op = 'INSERT' then
        new.created_version := stamped;
        new.completed_version := stamped;
    elsif new.completed is distinct from old.completed then
        new.completed_version := stamped;
    end if;
    return new;
end;
$$;

create trigger sync_external_insert
    before insert on tasks
    for each row when (new.version is null)
    execute function sync_external_write();

create trigger sync_external_update
    before update on tasks
    for each row when (new.version = old.version)
    execute function sync_external_write();

-- A delete from elsewhere leaves tombstones too. taskql's own deletes write theirs in the
-- deleting statement and say so with the transaction-local setting `taskql.writer`; one
-- function call per statement (not per row) checks it. A user's deletion cascades here with
-- the user already gone, so nothing is written for it.
create function sync_external_delete() returns trigger
language plpgsql as
$$
begin
    if current_setting('taskql.writer', true) = 'on' then
        return null;
    end if;
    with per_user as (
        select user_id, count(*) as n from gone group by user_id
    ), bumped as (
        update users u set version = u.version + p.n
        from per_user p
        where u.id = p.user_id
        returning u.id, u.version - p.n as base
    )
    insert into task_tombstones (user_id, version, task_id)
    select g.user_id, b.base + row_number() over (partition by g.user_id order by g.id), g.id
    from gone g
    join bumped b on b.id = g.user_id;
    return null;
end;
$$;

create trigger sync_external_delete
    after delete on tasks
    referencing old table as gone
    for each statement execute function sync_external_delete();
