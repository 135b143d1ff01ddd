//! The events the orders application publishes and consumes (schemas in docs/events.md).

use serde::{Deserialize, Serialize};

/// Topic of order events.
pub const ORDERS_TOPIC: &str = "orders";
/// An order was created.
pub const ORDER_CREATED: &str = "com.example.order.created";
/// An order was paid.
pub const ORDER_PAID: &str = "com.example.order.paid";
/// An order's payment failed.
pub const ORDER_PAYMENT_FAILED: &str = "com.example.order.payment_failed";
/// A payment succeeded (consumed).
pub const PAYMENT_COMPLETED: &str = "com.example.payment.completed";
/// A payment failed (consumed).
pub const PAYMENT_FAILED: &str = "com.example.payment.failed";

/// The data of `com.example.payment.completed` and `.failed`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct Payment {
    /// The order paid for.
    pub order_id: String,
    /// The provider's payment id.
    pub payment_id: String,
    /// Must equal the order total.
    pub amount_cents: i64,
    /// Must equal the order currency.
    pub currency: String,
}
