-- Users are owned by Better Auth: taskql never creates accounts, it mirrors the identity
-- carried by a verified token the first time it sees it (and when its claims change).
create table users
(
    -- Better Auth ids are opaque strings (32 random characters by default), not UUIDs.
    id         text primary key,
    email      text        not null,
    name       text,
    image      text,
    -- A digest of the profile claims (email, name, image) last copied from a token. A token
    -- whose claims match it causes no write; one whose claims changed overwrites the profile.
    -- Comparing with the *claims* rather than the current columns lets `updateMe` edits stand
    -- until the sign-in provider's data itself changes.
    claims_digest bytea,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),

    -- Ids and emails come from tokens; bound them so a hostile issuer cannot bloat rows.
    constraint users_id_length check (char_length(id) between 1 and 255),
    constraint users_email_length check (char_length(email) between 1 and 320),
    constraint users_name_length check (char_length(name) <= 200),
    constraint users_image_length check (char_length(image) <= 2048)
);

-- Email addresses are unique regardless of case (Alice@x.com and alice@x.com are one person
-- to every mail server that matters). An expression index enforces that without the citext
-- extension, which managed PostgreSQL (Neon) roles cannot always create.
create unique index users_email_key on users (lower(email));

select manage_updated_at('users');
