//! Storage of orders in PostgreSQL. Every write stages its event in the same transaction.

use crate::OrderError;
use crate::cursor::Cursor;
use crate::events::{self, Payment};
use crate::model::{NewItem, NewOrder, Order, Status, mask_email};
use chrono::{DateTime, Utc};
use tern::Problem;
use tern_db::tokio_postgres::Row;
use tern_db::tokio_postgres::types::ToSql;
use tern_db::{DbResultExt, GenericClient};
use tern_events::OutboxTx;

/// The result of a create.
#[derive(Debug)]
pub struct Created {
    /// The order (new, or the one an earlier request with the same key made).
    pub order: Order,
    /// Whether this was an idempotent replay.
    pub replayed: bool,
}

/// An `Idempotency-Key` and the hash of the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// The client's key.
    pub key: String,
    /// SHA-256 of the canonical request.
    pub request_hash: String,
}

const ORDER_COLUMNS: &str =
    "id, status, customer_email, currency, total_cents, payment_id, created_at, updated_at";

/// Creates an order and stages its `order.created` event, or replays the order an earlier
/// request with the same idempotency key made (staging nothing).
pub async fn create(
    tx: &mut OutboxTx<'_>,
    new: &NewOrder,
    total: i64,
    key: Option<&IdempotencyKey>,
) -> Result<Created, OrderError> {
    if let Some(k) = key {
        // Same-key requests queue here, so the second sees the first's committed row.
        // Prepared once per connection, like every statement here: a statement sent as text is
        // parsed in a round trip of its own before it runs.
        let lock = tx
            .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .await
            .or_problem()?;
        let find = tx
            .prepare_cached("SELECT request_hash, order_id FROM idempotency_keys WHERE key = $1")
            .await
            .or_problem()?;
        // Sent together, run in order: the lookup runs once the lock is held.
        let params: [&(dyn ToSql + Sync); 1] = [&k.key];
        let (_, existing) =
            futures::try_join!(tx.execute(&lock, &params), tx.query_opt(&find, &params))
                .or_problem()?;
        if let Some(row) = existing {
            let hash: String = row.get(0);
            if hash != k.request_hash {
                return Err(OrderError::KeyReused);
            }
            let order_id: String = row.get(1);
            let order = get(&**tx, &order_id).await?.ok_or_else(Problem::internal)?;
            return Ok(Created {
                order,
                replayed: true,
            });
        }
    }
    let id = crate::id::new_order_id();
    // The order and its items in one statement (the items' foreign key is checked at its end,
    // with the order inserted), sent with the idempotency key's row and the outbox row before
    // any answer is awaited: with BEGIN and COMMIT, three round trips whatever the item count.
    let stmt = tx
        .prepare_cached(&format!(
            "WITH o AS (
               INSERT INTO orders (id, customer_email, currency, total_cents)
               VALUES ($1, $2, $3, $4) RETURNING {ORDER_COLUMNS}
             ), i AS (
               INSERT INTO order_items (order_id, line, sku, quantity, unit_price_cents)
               SELECT $1, (t.n - 1)::int, t.sku, t.quantity, t.price
               FROM unnest($5::text[], $6::int[], $7::bigint[]) WITH ORDINALITY AS t(sku, quantity, price, n)
             )
             SELECT {ORDER_COLUMNS} FROM o"
        ))
        .await
        .or_problem()?;
    let remember = match key {
        Some(_) => Some(
            tx.prepare_cached(
                "INSERT INTO idempotency_keys (key, request_hash, order_id) VALUES ($1, $2, $3)",
            )
            .await
            .or_problem()?,
        ),
        None => None,
    };
    // The items as stored (the SKU trimmed), so the answer equals what a GET returns.
    let items: Vec<NewItem> = new
        .items
        .iter()
        .map(|i| NewItem {
            sku: i.sku.trim().to_owned(),
            ..i.clone()
        })
        .collect();
    let skus: Vec<&str> = items.iter().map(|i| i.sku.as_str()).collect();
    let quantities = items
        .iter()
        .map(|i| i32::try_from(i.quantity))
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|_| Problem::internal())?;
    let prices: Vec<i64> = items.iter().map(|i| i.unit_price_cents).collect();
    let data = serde_json::json!({
        "order_id": id,
        "currency": new.currency,
        "total_cents": total,
        "items": items.len(),
    });
    let params: [&(dyn ToSql + Sync); 7] = [
        &id,
        &new.customer_email,
        &new.currency,
        &total,
        &skus,
        &quantities,
        &prices,
    ];
    let remembered = async {
        match (&remember, key) {
            (Some(r), Some(k)) => {
                let params: [&(dyn ToSql + Sync); 3] = [&k.key, &k.request_hash, &id];
                tx.execute(r, &params).await.map(drop)
            }
            _ => Ok(()),
        }
    };
    // The order's statement is polled, so sent, before the key's row, whose foreign key needs
    // the order: keep `query_one` first in the `try_join`.
    let (staged, written) = futures::join!(
        tx.stage_begin(
            events::ORDERS_TOPIC,
            events::ORDER_CREATED,
            Some(&id),
            &data
        ),
        futures::future::try_join(tx.query_one(&stmt, &params), remembered),
    );
    let recorded = tx.staged(staged);
    // The first statement to fail aborts the transaction, and the others then fail with
    // "current transaction is aborted" (25P02): report the first. Which one was sent first
    // depends on whether the outbox statement was prepared on this connection yet.
    let aborted = |e: &tern_db::tokio_postgres::Error| {
        e.code() == Some(&tern_db::tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
    };
    let (row, ()) = match (written, recorded) {
        (Err(e), Err(first)) if aborted(&e) => return Err(first.into()),
        (written, recorded) => {
            let done = written.or_problem()?;
            recorded?;
            done
        }
    };
    let order = to_order(&row, items);
    Ok(Created {
        order,
        replayed: false,
    })
}

/// One order with its items, or `None`.
///
/// The two SELECTs are sent together: tokio-postgres pipelines them on the connection, so the
/// request costs one round trip to PostgreSQL, not two.
pub async fn get<C: GenericClient>(client: &C, id: &str) -> Result<Option<Order>, OrderError> {
    let stmt = client
        .prepare_cached(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
        .await
        .or_problem()?;
    let items_stmt = client
        .prepare_cached("SELECT sku, quantity, unit_price_cents FROM order_items WHERE order_id = $1 ORDER BY line")
        .await
        .or_problem()?;
    let params: [&(dyn tern_db::tokio_postgres::types::ToSql + Sync); 1] = [&id];
    let (row, items) = futures::try_join!(
        client.query_opt(&stmt, &params),
        client.query(&items_stmt, &params)
    )
    .or_problem()?;
    Ok(row.map(|row| to_order(&row, items.iter().map(to_item).collect())))
}

/// A page of orders, newest first, and the cursor of the next page.
pub async fn list<C: GenericClient>(
    client: &C,
    status: Option<Status>,
    limit: i64,
    after: Option<&Cursor>,
) -> Result<(Vec<Order>, Option<Cursor>), OrderError> {
    let status = status.map(Status::as_str);
    let (after_time, after_id) = match after {
        Some(c) => (Some(c.created_at), Some(c.id.as_str())),
        None => (None, None),
    };
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE ($1::text IS NULL OR status = $1)
               AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::text))
             ORDER BY created_at DESC, id DESC LIMIT $4"
        ))
        .await
        .or_problem()?;
    let rows = client
        .query(&stmt, &[&status, &after_time, &after_id, &(limit + 1)])
        .await
        .or_problem()?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let item_rows = client
        .query(
            "SELECT order_id, sku, quantity, unit_price_cents FROM order_items WHERE order_id = ANY($1) ORDER BY order_id, line",
            &[&ids],
        )
        .await
        .or_problem()?;
    let orders: Vec<Order> = rows
        .iter()
        .map(|r| {
            let id: String = r.get(0);
            let items = item_rows
                .iter()
                .filter(|i| i.get::<_, String>(0) == id)
                .map(|i| NewItem {
                    sku: i.get(1),
                    quantity: i.get::<_, i32>(2) as u32,
                    unit_price_cents: i.get(3),
                })
                .collect();
            to_order(r, items)
        })
        .collect();
    let next = if more {
        orders.last().map(|o| Cursor {
            created_at: o.created_at,
            id: o.id.clone(),
        })
    } else {
        None
    };
    Ok((orders, next))
}

/// What a payment event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// The order moved (and its event is staged).
    Moved {
        /// New status.
        to: Status,
    },
    /// The order is already past this (paid is final): nothing changed.
    Unchanged(Status),
}

/// Applies a payment result to its order and stages the order's event. A mismatched amount or
/// currency, or an unknown order, is permanent: retrying cannot fix it.
pub async fn apply_payment(
    tx: &mut OutboxTx<'_>,
    payment: &Payment,
    to: Status,
) -> Result<PaymentOutcome, OrderError> {
    let lock = tx
        .prepare_cached("SELECT status, currency, total_cents FROM orders WHERE id = $1 FOR UPDATE")
        .await
        .or_problem()?;
    let row = tx
        .query_opt(&lock, &[&payment.order_id])
        .await
        .or_problem()?;
    let Some(row) = row else {
        return Err(OrderError::UnknownOrder(payment.order_id.clone()));
    };
    let status = Status::parse(row.get(0)).ok_or_else(Problem::internal)?;
    let currency: String = row.get(1);
    let total: i64 = row.get(2);
    if currency != payment.currency || total != payment.amount_cents {
        return Err(OrderError::PaymentMismatch {
            order_cents: total,
            order_currency: currency,
            paid_cents: payment.amount_cents,
            paid_currency: payment.currency.clone(),
        });
    }
    if !status.can_move_to(to) {
        return Ok(PaymentOutcome::Unchanged(status));
    }
    let update = tx
        .prepare_cached("UPDATE orders SET status = $2, payment_id = CASE WHEN $2 = 'paid' THEN $3 ELSE payment_id END, updated_at = now() WHERE id = $1")
        .await
        .or_problem()?;
    tx.execute(
        &update,
        &[&payment.order_id, &to.as_str(), &payment.payment_id],
    )
    .await
    .or_problem()?;
    let ty = if to == Status::Paid {
        events::ORDER_PAID
    } else {
        events::ORDER_PAYMENT_FAILED
    };
    let data = serde_json::json!({
        "order_id": payment.order_id,
        "payment_id": payment.payment_id,
        "amount_cents": payment.amount_cents,
        "currency": payment.currency,
    });
    tx.stage(events::ORDERS_TOPIC, ty, Some(&payment.order_id), &data)
        .await?;
    Ok(PaymentOutcome::Moved { to })
}

fn to_item(r: &Row) -> NewItem {
    NewItem {
        sku: r.get(0),
        quantity: r.get::<_, i32>(1) as u32,
        unit_price_cents: r.get(2),
    }
}

fn to_order(r: &Row, items: Vec<NewItem>) -> Order {
    let status: String = r.get(1);
    let email: String = r.get(2);
    Order {
        id: r.get(0),
        status: Status::parse(&status).unwrap_or(Status::Pending),
        customer_email: mask_email(&email),
        currency: r.get(3),
        total_cents: r.get(4),
        payment_id: r.get(5),
        items,
        created_at: r.get::<_, DateTime<Utc>>(6),
        updated_at: r.get::<_, DateTime<Utc>>(7),
    }
}
