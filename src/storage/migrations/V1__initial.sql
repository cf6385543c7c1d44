-- A site is one business; every contact, key and change belongs to exactly one.
CREATE TABLE sites (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    create_time timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 hashes: a database dump does not reveal them.
CREATE TABLE api_keys (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    site_id     bigint NOT NULL REFERENCES sites (id),
    app         text NOT NULL,
    key_hash    bytea NOT NULL UNIQUE,
    can_read    boolean NOT NULL,
    can_write   boolean NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now()
);

-- One row per contact, one column per top-level field, so that a read mask can
-- leave unrequested columns unread. Array properties are JSONB arrays of values
-- (each with its own id); they are small and always read and written whole.
CREATE TABLE contacts (
    site_id       bigint NOT NULL REFERENCES sites (id),
    id            uuid NOT NULL,
    -- Creation order: "earliest created" for Reconcile, and the keyset for listing.
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    -- Bumped by every change; the etag is derived from (id, version).
    version       bigint NOT NULL,
    name_prefix   text NOT NULL DEFAULT '',
    name_first    text NOT NULL DEFAULT '',
    name_middle   text NOT NULL DEFAULT '',
    name_last     text NOT NULL DEFAULT '',
    name_suffix   text NOT NULL DEFAULT '',
    company_name  text NOT NULL DEFAULT '',
    company_role  text NOT NULL DEFAULT '',
    picture       text NOT NULL DEFAULT '',
    emails        jsonb NOT NULL DEFAULT '[]',
    phones        jsonb NOT NULL DEFAULT '[]',
    addresses     jsonb NOT NULL DEFAULT '[]',
    urls          jsonb NOT NULL DEFAULT '[]',
    dates         jsonb NOT NULL DEFAULT '[]',
    notes         jsonb NOT NULL DEFAULT '[]',
    custom_fields jsonb NOT NULL DEFAULT '[]',
    tags          text[] NOT NULL DEFAULT '{}',
    create_time   timestamptz NOT NULL,
    update_time   timestamptz NOT NULL,
    PRIMARY KEY (site_id, id)
);
CREATE UNIQUE INDEX contacts_site_seq ON contacts (site_id, seq);
CREATE INDEX contacts_site_first_name ON contacts (site_id, lower(name_first), seq);
CREATE INDEX contacts_site_last_name ON contacts (site_id, lower(name_last), seq);

-- The identity of contacts: normalized emails (lower-cased) and phones (E.164).
-- The two never collide (an email has an '@', an E.164 phone starts with '+').
-- Not unique: two contacts may share an email (AddValue and OverrideValue allow
-- it); Reconcile then picks the earliest created.
CREATE TABLE contact_keys (
    site_id    bigint NOT NULL,
    key        text NOT NULL,
    contact_id uuid NOT NULL,
    PRIMARY KEY (site_id, key, contact_id),
    FOREIGN KEY (site_id, contact_id) REFERENCES contacts (site_id, id) ON DELETE CASCADE
);
CREATE INDEX contact_keys_contact ON contact_keys (site_id, contact_id);

-- Every change, written in the same transaction as the change itself.
--
-- Feed order is (xid, seq). A reader only reads rows whose xid is below
-- pg_snapshot_xmin(pg_current_snapshot()): every transaction at or above it may
-- still commit, every one below it is finished, so nothing can later appear
-- behind a position already read. Per-contact commit order holds because every
-- write transaction's first xid-assigning statement creates or row-locks the
-- contact, so a later writer of the same contact gets a larger xid.
CREATE TABLE contact_changes (
    xid            xid8 NOT NULL DEFAULT pg_current_xact_id(),
    seq            bigint GENERATED ALWAYS AS IDENTITY,
    site_id        bigint NOT NULL,
    contact_id     uuid NOT NULL,
    -- 1 created, 2 updated, 3 deleted
    kind           smallint NOT NULL,
    changed_fields text[] NOT NULL,
    -- The contact's version after the change (its etag derives from it).
    version        bigint NOT NULL,
    -- The app whose key made the change.
    app            text NOT NULL,
    change_time    timestamptz NOT NULL DEFAULT now(),
    -- The contact after the change (NULL for deletes), for include_contact.
    snapshot       jsonb,
    PRIMARY KEY (xid, seq)
);
CREATE INDEX contact_changes_site ON contact_changes (site_id, xid, seq);
