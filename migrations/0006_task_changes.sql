-- Live updates: every committed change to a task is announced on the channel
-- `taskql_task_changes`, which each taskql instance LISTENs on and fans out to its
-- subscribers (src/live).
--
-- A trigger, not the application, sends the announcement: it fires for every path that changes
-- a row (single and bulk mutations, the cascade of a deleted user, a psql session), and
-- `pg_notify` inside the writing transaction is delivered if and only if that transaction
-- commits. A rolled-back bulk mutation announces nothing.
--
-- The payload is JSON: `op` (INSERT, UPDATE, DELETE), `uid` (the owner), `id`, `at` (the time
-- of the change), `new` (the row after, for INSERT and UPDATE) and `old` (the row before, for
-- UPDATE and DELETE; filtered subscriptions use it to learn that a task left their view), and
-- for UPDATE `was_completed`, which tells a completion from another edit even without `old`.
-- NOTIFY payloads must stay under 8000 bytes. A 1000-character description of 4-byte
-- characters, escaped, can push one row near that, so a payload over the limit first drops
-- `old` (subscribers then cannot tell whether the task matched their filter before, and are
-- told anyway) and then `new` (the instance reads the row itself). The id and owner always fit.
create function notify_task_change() returns trigger
language plpgsql as
$$
declare
    payload jsonb;
begin
    if tg_op = 'UPDATE' and to_jsonb(new) - 'search' = to_jsonb(old) - 'search' then
        -- Nothing changed (the same values written again): nothing to announce.
        return null;
    end if;
    if tg_op = 'DELETE' then
        payload := jsonb_build_object('op', tg_op, 'uid', old.user_id, 'id', old.id, 'at', now(),
                                      'old', to_jsonb(old) - 'search');
    elsif tg_op = 'INSERT' then
        payload := jsonb_build_object('op', tg_op, 'uid', new.user_id, 'id', new.id,
                                      'at', new.updated_at, 'new', to_jsonb(new) - 'search');
    else
        payload := jsonb_build_object('op', tg_op, 'uid', new.user_id, 'id', new.id,
                                      'at', new.updated_at, 'was_completed', old.completed,
                                      'new', to_jsonb(new) - 'search',
                                      'old', to_jsonb(old) - 'search');
    end if;
    if octet_length(payload::text) > 7900 then
        payload := payload - 'old';
    end if;
    if octet_length(payload::text) > 7900 then
        payload := payload - 'new';
    end if;
    perform pg_notify('taskql_task_changes', payload::text);
    return null;
end;
$$;

create trigger notify_task_change
    after insert or update or delete on tasks
    for each row execute function notify_task_change();
