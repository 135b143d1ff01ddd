//! What can go wrong in the orders domain. The domain returns these; the HTTP edge (the
//! functions, through the `From` impl below) turns each into its problem+json document, and the
//! web page shows the violations themselves.

use http::StatusCode;
use tern::{FieldError, Problem};

/// A domain failure.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// A new order breaks one or more rules: every violation, each with a JSON pointer.
    #[error("the order is not valid ({} problems)", .0.len())]
    Invalid(Vec<FieldError>),
    /// An `Idempotency-Key` came back with a different request body.
    #[error("This Idempotency-Key was used with a different body; use a new key for a new order.")]
    KeyReused,
    /// A payment names an order that does not exist.
    #[error("no order {0}")]
    UnknownOrder(String),
    /// A payment's amount or currency differs from its order's.
    #[error(
        "the order is {order_cents} {order_currency}, the payment {paid_cents} {paid_currency}"
    )]
    PaymentMismatch {
        /// The order's total.
        order_cents: i64,
        /// The order's currency.
        order_currency: String,
        /// What was paid.
        paid_cents: i64,
        /// In what.
        paid_currency: String,
    },
    /// The database failed; already a problem (503 with `Retry-After`, from `tern-db`).
    #[error(transparent)]
    Storage(#[from] Problem),
}

impl From<OrderError> for Problem {
    fn from(e: OrderError) -> Self {
        let unprocessable = |slug: &str, title: &str, detail: String| {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, slug, title).with_detail(detail)
        };
        match e {
            OrderError::Invalid(errors) => Problem::validation(errors),
            OrderError::KeyReused => unprocessable(
                "idempotency-key-reused",
                "Idempotency key reused with a different request",
                OrderError::KeyReused.to_string(),
            ),
            // Permanent for an event: retrying cannot fix it, so it goes to the dead-letter topic.
            e @ OrderError::UnknownOrder(_) => {
                unprocessable("unknown-order", "No such order", e.to_string())
            }
            e @ OrderError::PaymentMismatch { .. } => unprocessable(
                "payment-mismatch",
                "Payment does not match the order",
                e.to_string(),
            ),
            OrderError::Storage(p) => p,
        }
    }
}
