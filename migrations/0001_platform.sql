-- Tern platform tables: the transactional outbox and the consumer inbox.

CREATE TABLE tern_outbox (
    id           bigserial PRIMARY KEY,
    topic        text        NOT NULL,
    event_id     text        NOT NULL UNIQUE,
    event_type   text        NOT NULL,
    source       text        NOT NULL,
    subject      text,
    data         jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    message_id   text,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text
);

-- The relay scans only what is pending.
CREATE INDEX tern_outbox_pending ON tern_outbox (id) WHERE published_at IS NULL;

CREATE TABLE tern_inbox (
    consumer     text        NOT NULL,
    event_source text        NOT NULL,
    event_id     text        NOT NULL,
    event_type   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_source, event_id)
);
