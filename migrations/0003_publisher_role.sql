-- MISP's publisher role, between user and admin (intel/src/store/keys.rs).
-- SQLite changes a CHECK only by rebuilding the table. The migration runs in
-- a transaction with foreign keys on, so the child table (api_keys) is
-- rebuilt too, referring to the new users table: dropping the old tables then
-- violates nothing, and the renames carry the references along.
CREATE TABLE users_new (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    role TEXT NOT NULL CHECK (role IN ('admin', 'publisher', 'user')),
    created INTEGER NOT NULL
);
INSERT INTO users_new (id, email, org_id, role, created) SELECT id, email, org_id, role, created FROM users;

CREATE TABLE api_keys_new (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users_new(id),
    key_sha256 TEXT NOT NULL UNIQUE,
    key_end TEXT NOT NULL,
    created INTEGER NOT NULL
);
INSERT INTO api_keys_new (id, user_id, key_sha256, key_end, created)
    SELECT id, user_id, key_sha256, key_end, created FROM api_keys;

DROP TABLE api_keys;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
ALTER TABLE api_keys_new RENAME TO api_keys;
CREATE INDEX api_keys_user ON api_keys(user_id);
