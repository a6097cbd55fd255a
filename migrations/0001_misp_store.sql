-- The embedded MISP-compatible store (intel/src/store): the subset of MISP's
-- data model that the REST endpoints of shared/spec/misp.md need.

CREATE TABLE orgs (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    role TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    created INTEGER NOT NULL
);

-- API keys are stored as SHA-256 of the key; the key itself is shown once.
CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    key_sha256 TEXT NOT NULL UNIQUE,
    key_end TEXT NOT NULL,
    created INTEGER NOT NULL
);

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    info TEXT NOT NULL,
    date TEXT NOT NULL,
    threat_level_id INTEGER NOT NULL,
    analysis INTEGER NOT NULL,
    distribution INTEGER NOT NULL,
    published INTEGER NOT NULL DEFAULT 0,
    timestamp INTEGER NOT NULL,
    publish_timestamp INTEGER NOT NULL DEFAULT 0,
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    orgc_id INTEGER NOT NULL REFERENCES orgs(id),
    creator_email TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_timestamp ON events(timestamp);

CREATE TABLE objects (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    meta_category TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    template_uuid TEXT NOT NULL DEFAULT '',
    template_version TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    distribution INTEGER NOT NULL DEFAULT 5,
    timestamp INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE attributes (
    id INTEGER PRIMARY KEY,
    event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    object_id INTEGER REFERENCES objects(id) ON DELETE CASCADE,
    object_relation TEXT,
    uuid TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    category TEXT NOT NULL,
    value TEXT NOT NULL,
    to_ids INTEGER NOT NULL,
    comment TEXT NOT NULL DEFAULT '',
    distribution INTEGER NOT NULL DEFAULT 5,
    timestamp INTEGER NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    disable_correlation INTEGER NOT NULL DEFAULT 0,
    first_seen TEXT,
    last_seen TEXT
);
CREATE INDEX attributes_event ON attributes(event_id);
CREATE INDEX attributes_type ON attributes(type);
CREATE INDEX attributes_value ON attributes(value);
CREATE INDEX attributes_timestamp ON attributes(timestamp);

CREATE TABLE tags (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    colour TEXT NOT NULL DEFAULT '#0088cc'
);

CREATE TABLE event_tags (
    event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    tag_id INTEGER NOT NULL REFERENCES tags(id),
    local INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, tag_id)
);

CREATE TABLE attribute_tags (
    attribute_id INTEGER NOT NULL REFERENCES attributes(id) ON DELETE CASCADE,
    tag_id INTEGER NOT NULL REFERENCES tags(id),
    local INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (attribute_id, tag_id)
);

CREATE TABLE sightings (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    attribute_id INTEGER NOT NULL REFERENCES attributes(id) ON DELETE CASCADE,
    event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    org_id INTEGER NOT NULL REFERENCES orgs(id),
    type INTEGER NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    date_sighting INTEGER NOT NULL
);
