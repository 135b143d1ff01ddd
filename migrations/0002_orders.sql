-- The orders reference application.

CREATE TABLE orders (
    id             text        PRIMARY KEY,
    customer_email text        NOT NULL,
    currency       char(3)     NOT NULL,
    total_cents    bigint      NOT NULL CHECK (total_cents >= 0),
    status         text        NOT NULL DEFAULT 'pending'
                               CHECK (status IN ('pending', 'paid', 'failed')),
    payment_id     text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Keyset pagination of the back-office list, newest first, optionally by status.
CREATE INDEX orders_created ON orders (created_at DESC, id DESC);
CREATE INDEX orders_status_created ON orders (status, created_at DESC, id DESC);

CREATE TABLE order_items (
    order_id         text    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line             integer NOT NULL,
    sku              text    NOT NULL,
    quantity         integer NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    unit_price_cents bigint  NOT NULL CHECK (unit_price_cents >= 0),
    PRIMARY KEY (order_id, line)
);

-- Idempotency-Key of POST /api/orders: the key, a hash of the request, and the order it made.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    request_hash text        NOT NULL,
    order_id     text        NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now()
);
