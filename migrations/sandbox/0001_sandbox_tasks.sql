-- The sandbox's own database (not the MISP store's: `sqlx::migrate!` reads
-- only the files of a folder, so intel's migrator does not see this one).
-- Shapes follow Cuckoo 2.0.7's tasks and samples tables.

CREATE TABLE samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_size INTEGER NOT NULL,
    file_type TEXT NOT NULL,
    md5 TEXT NOT NULL,
    sha1 TEXT NOT NULL,
    sha256 TEXT NOT NULL UNIQUE,
    sha512 TEXT NOT NULL,
    ssdeep TEXT
);
CREATE INDEX samples_md5 ON samples (md5);

CREATE TABLE tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    category TEXT NOT NULL CHECK (category IN ('file', 'url')),
    -- the submitted file name, or the URL
    target TEXT NOT NULL,
    sample_id INTEGER REFERENCES samples (id),
    package TEXT,
    options TEXT NOT NULL DEFAULT '',
    timeout INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 1,
    custom TEXT,
    owner TEXT,
    machine TEXT,
    platform TEXT,
    tags TEXT NOT NULL DEFAULT '',
    memory INTEGER NOT NULL DEFAULT 0,
    enforce_timeout INTEGER NOT NULL DEFAULT 0,
    added_on REAL NOT NULL,
    started_on REAL,
    completed_on REAL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN
        ('pending', 'running', 'completed', 'reported', 'failed_analysis', 'failed_processing', 'failed_reporting')),
    -- JSON list of texts
    errors TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX tasks_status ON tasks (status, priority DESC, id);
