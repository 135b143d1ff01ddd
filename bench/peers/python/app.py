"""The Python peer of scripts/bench: GET /api/orders/{id} and POST /api/orders written the way a
Python team would without Tern: FastAPI on uvicorn (uvloop, httptools), asyncpg, Pydantic models.
The same database, the same pool size in all (DB_POOL_SIZE split over uvicorn's workers) and the
same bodies as the orders functions (tests/tests/peers.rs compares them).

Run: WEB_CONCURRENCY=2 uvicorn app:app --loop uvloop --http httptools --no-access-log
(uvicorn takes its worker count from WEB_CONCURRENCY, and so does the pool split below).
Settings: DATABASE_URL (required), DB_POOL_SIZE (default 8, over all workers), WEB_CONCURRENCY.
Each worker has its own pool of DB_POOL_SIZE / WEB_CONCURRENCY connections.
"""

import base64
import json
import os
import secrets
import uuid
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_ITEMS = 100
ORDER_COLUMNS = "id, status, customer_email, currency, total_cents, payment_id, created_at, updated_at"
ORDER_ID_ALPHABET = set("abcdefghijklmnopqrstuvwxyz234567")


class Item(BaseModel):
    # Strict: "2" is not a quantity, as it is not for the orders functions.
    model_config = ConfigDict(extra="forbid", strict=True)
    sku: str
    quantity: Annotated[int, Field(ge=1, le=1000)]
    unit_price_cents: Annotated[int, Field(ge=0, le=1_000_000_000)]

    @field_validator("sku")
    @classmethod
    def printable(cls, v: str) -> str:
        v = v.strip()
        if not v or len(v) > 64 or any(not c.isprintable() for c in v):
            raise ValueError("must be 1 to 64 printable characters")
        return v


class NewOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    customer_email: str
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    items: Annotated[list[Item], Field(min_length=1, max_length=MAX_ITEMS)]

    @field_validator("customer_email")
    @classmethod
    def email(cls, v: str) -> str:
        local, at, domain = v.partition("@")
        ok = (
            at
            and len(v) <= 254
            and not any(c.isspace() or not c.isprintable() for c in v)
            and local
            and len(local) <= 64
            and "@" not in domain
            and "." in domain
            and not domain.startswith(".")
            and not domain.endswith(".")
            and ".." not in domain
        )
        if not ok:
            raise ValueError("must be an email address such as ada@example.com")
        return v


class Order(BaseModel):
    id: str
    status: str
    customer_email: str
    currency: str
    total_cents: int
    items: list[Item]
    payment_id: str | None
    created_at: datetime
    updated_at: datetime


def mask_email(s: str) -> str:
    local, at, domain = s.partition("@")
    return f"{local[:1]}***@{domain}" if at else "***"


def new_order_id() -> str:
    return "ord_" + base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def is_order_id(s: str) -> bool:
    return len(s) == 30 and s.startswith("ord_") and set(s[4:]) <= ORDER_ID_ALPHABET


def to_order(row: asyncpg.Record, items: list[Item]) -> Order:
    return Order(
        id=row["id"],
        status=row["status"],
        customer_email=mask_email(row["customer_email"]),
        currency=row["currency"],
        total_cents=row["total_cents"],
        items=items,
        payment_id=row["payment_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


@asynccontextmanager
async def lifespan(app: FastAPI):
    workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
    size = max(1, int(os.environ.get("DB_POOL_SIZE", "8")) // workers)
    app.state.db = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=size, max_size=size)
    yield
    await app.state.db.close()


app = FastAPI(lifespan=lifespan)


def not_found(order_id: str) -> JSONResponse:
    return JSONResponse(
        {"title": "Not found", "status": 404, "detail": f"There is no order {order_id}."},
        status_code=404,
        media_type="application/problem+json",
    )


@app.get("/api/orders/{order_id}", response_model=Order)
async def get_order(order_id: str, request: Request):
    if not is_order_id(order_id):
        return not_found(order_id)
    async with request.app.state.db.acquire() as conn:
        row = await conn.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1", order_id)
        if row is None:
            return not_found(order_id)
        items = await conn.fetch(
            "SELECT sku, quantity, unit_price_cents FROM order_items WHERE order_id = $1 ORDER BY line",
            order_id,
        )
    return to_order(row, [Item.model_construct(**dict(i)) for i in items])


@app.post("/api/orders", response_model=Order, status_code=201)
async def create_order(new: NewOrder, request: Request):
    total = sum(i.quantity * i.unit_price_cents for i in new.items)
    order_id = new_order_id()
    async with request.app.state.db.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO orders (id, customer_email, currency, total_cents) VALUES ($1, $2, $3, $4) "
            f"RETURNING {ORDER_COLUMNS}",
            order_id,
            new.customer_email,
            new.currency,
            total,
        )
        await conn.executemany(
            "INSERT INTO order_items (order_id, line, sku, quantity, unit_price_cents) VALUES ($1, $2, $3, $4, $5)",
            [(order_id, line, i.sku, i.quantity, i.unit_price_cents) for line, i in enumerate(new.items)],
        )
        data = {"order_id": order_id, "currency": new.currency, "total_cents": total, "items": len(new.items)}
        await conn.execute(
            "INSERT INTO tern_outbox (topic, event_id, event_type, source, subject, data) "
            "VALUES ('orders', $1, 'com.example.order.created', '//peer-python', $2, $3::jsonb)",
            str(uuid.uuid4()),
            order_id,
            json.dumps(data),
        )
    order = to_order(row, new.items)
    return JSONResponse(
        order.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/api/orders/{order_id}"},
    )
