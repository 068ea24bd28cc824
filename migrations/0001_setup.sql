-- Shared helpers used by the table migrations that follow.
--
-- Conventions for every migration in this folder:
--   * lower-case SQL, one statement per purpose, a comment saying why each constraint and
--     index exists;
--   * every constraint is *named*, because the application turns violations of named
--     constraints into client errors (`ResultExt::on_constraint` in src/error.rs);
--   * an applied migration is never edited: sqlx checksums them, so a change is a new file.

-- Keeps `updated_at` honest without trusting writers to remember it.
--
-- An update that changes nothing (the same values written again) leaves `updated_at` alone,
-- so "did it change?" stays answerable. The trigger's arguments name columns that do not count:
-- generated columns, which are not computed yet when a BEFORE trigger runs.
--
-- `now()` is the transaction's start time. Two updates of one row in quick succession could
-- therefore see the same value (or a smaller one after a clock step), and optimistic
-- concurrency control compares `updated_at` to detect lost updates. Taking the greater of
-- now() and the old value plus one microsecond makes `updated_at` strictly increase on every
-- change of a row, whatever the clock does.
create or replace function set_updated_at() returns trigger
language plpgsql as
$$
begin
    if to_jsonb(new) - tg_argv - 'updated_at' = to_jsonb(old) - tg_argv - 'updated_at' then
        return new;
    end if;
    new.updated_at := greatest(now(), old.updated_at + interval '1 microsecond');
    return new;
end;
$$;

-- Attaches `set_updated_at` to a table, so each table migration is a single line. `_ignored`
-- lists the table's generated columns.
create or replace function manage_updated_at(_table regclass, variadic _ignored text[] default '{}')
returns void
language plpgsql as
$$
begin
    execute format(
        'create trigger set_updated_at before update on %s for each row execute function set_updated_at(%s)',
        _table,
        (select coalesce(string_agg(quote_literal(column_name), ', '), '') from unnest(_ignored) as column_name)
    );
end;
$$;
