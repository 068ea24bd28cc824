-- Better Auth owns email uniqueness, not this mirror. A person who deletes their Better Auth
-- account and signs up again with the same address gets a new user id; with a unique email
-- index here, every request of the new account failed with CONFLICT, forever, and nothing in
-- the API could clear the stale row.
--
-- The stale row is kept, not deleted: taskql cannot tell a deleted account from one whose
-- address simply moved, and deleting would take that account's tasks with it. Its data stays
-- reachable only by its own id (tasks are scoped by user id, never by email), so the two
-- accounts never see each other's tasks. Email is a profile field here, used for nothing else.
drop index users_email_key;
