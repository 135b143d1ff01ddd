//! What an order is, and what makes a new one valid.

use crate::OrderError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tern::FieldError;

/// Bounds of a new order.
pub const MAX_ITEMS: usize = 100;
/// Largest quantity of one line.
pub const MAX_QUANTITY: u32 = 1000;
/// Largest unit price, in minor units (one billion: ten million in major units).
pub const MAX_UNIT_PRICE_CENTS: i64 = 1_000_000_000;

/// The body of `POST /api/orders`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    /// Where the confirmation goes.
    pub customer_email: String,
    /// ISO 4217.
    pub currency: String,
    /// 1..=100 lines.
    pub items: Vec<NewItem>,
}

/// One line of a new order.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NewItem {
    /// Stock-keeping unit.
    pub sku: String,
    /// 1..=1000.
    pub quantity: u32,
    /// Minor units, 0..=1e9.
    pub unit_price_cents: i64,
}

impl NewOrder {
    /// Checks every field; returns all problems at once. On success, the order total.
    pub fn validate(&self) -> Result<i64, OrderError> {
        let mut errors = Vec::new();
        if !is_email(&self.customer_email) {
            errors.push(FieldError::new(
                "/customer_email",
                "must be an email address such as ada@example.com",
            ));
        }
        if !crate::currency::is_iso4217(&self.currency) {
            errors.push(FieldError::new(
                "/currency",
                "must be an ISO 4217 code such as EUR or USD",
            ));
        }
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            errors.push(FieldError::new(
                "/items",
                format!("must hold 1 to {MAX_ITEMS} items"),
            ));
        }
        let mut total: Option<i64> = Some(0);
        for (i, item) in self.items.iter().enumerate() {
            let sku = item.sku.trim();
            if sku.is_empty() || sku.len() > 64 || sku.chars().any(char::is_control) {
                errors.push(FieldError::new(
                    format!("/items/{i}/sku"),
                    "must be 1 to 64 printable characters",
                ));
            }
            if item.quantity == 0 || item.quantity > MAX_QUANTITY {
                errors.push(FieldError::new(
                    format!("/items/{i}/quantity"),
                    format!("must be 1 to {MAX_QUANTITY}"),
                ));
            }
            if !(0..=MAX_UNIT_PRICE_CENTS).contains(&item.unit_price_cents) {
                errors.push(FieldError::new(
                    format!("/items/{i}/unit_price_cents"),
                    format!("must be 0 to {MAX_UNIT_PRICE_CENTS}"),
                ));
            }
            total = total.and_then(|t| {
                item.unit_price_cents
                    .checked_mul(i64::from(item.quantity))
                    .and_then(|l| t.checked_add(l))
            });
        }
        let Some(total) = total else {
            errors.push(FieldError::new("/items", "the order total overflows"));
            return Err(OrderError::Invalid(errors));
        };
        if errors.is_empty() {
            Ok(total)
        } else {
            Err(OrderError::Invalid(errors))
        }
    }
}

/// A pragmatic email shape check: one `@`, a non-empty local part, a dotted domain, no spaces.
pub fn is_email(s: &str) -> bool {
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

/// `ada@example.com` → `a***@example.com`: enough for the customer to recognise, not to harvest.
pub fn mask_email(s: &str) -> String {
    match s.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_owned(),
    }
}

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for payment.
    Pending,
    /// Paid: final.
    Paid,
    /// The payment failed; a later successful payment can still move it to paid.
    Failed,
}

impl Status {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Failed => "failed",
        }
    }

    /// Parses the database or query spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "paid" => Some(Self::Paid),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// Whether a payment result may move an order from `self` to `to`. Paid is final, so an
    /// old failure arriving after the success never moves the order backwards.
    pub fn can_move_to(self, to: Status) -> bool {
        matches!(
            (self, to),
            (Self::Pending, Self::Paid | Self::Failed) | (Self::Failed, Self::Paid)
        )
    }
}

/// An order as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Order {
    /// Unguessable id; also the customer's tracking link.
    pub id: String,
    /// Where it stands.
    pub status: Status,
    /// Masked.
    pub customer_email: String,
    /// ISO 4217.
    pub currency: String,
    /// Sum of the lines, minor units.
    pub total_cents: i64,
    /// The lines.
    pub items: Vec<NewItem>,
    /// The payment that paid it.
    pub payment_id: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> NewOrder {
        NewOrder {
            customer_email: "ada@example.com".into(),
            currency: "EUR".into(),
            items: vec![NewItem {
                sku: "TEA-1".into(),
                quantity: 2,
                unit_price_cents: 450,
            }],
        }
    }

    #[test]
    fn a_valid_order_has_a_total() {
        assert_eq!(order().validate().unwrap(), 900);
    }

    #[test]
    fn every_bad_field_is_reported() {
        let mut o = order();
        o.customer_email = "not-an-email".into();
        o.currency = "EURO".into();
        o.items[0].quantity = 0;
        o.items[0].unit_price_cents = -1;
        let p = tern::Problem::from(o.validate().unwrap_err());
        let v: serde_json::Value = serde_json::from_str(&p.body()).unwrap();
        let pointers: Vec<&str> = v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["pointer"].as_str().unwrap())
            .collect();
        assert_eq!(
            pointers,
            [
                "/customer_email",
                "/currency",
                "/items/0/quantity",
                "/items/0/unit_price_cents"
            ]
        );
    }

    #[test]
    fn bounds() {
        let mut o = order();
        o.items = vec![];
        assert!(o.validate().is_err());
        o.items = vec![order().items[0].clone(); 101];
        assert!(o.validate().is_err());
        o.items = vec![
            NewItem {
                sku: "X".into(),
                quantity: 1000,
                unit_price_cents: MAX_UNIT_PRICE_CENTS
            };
            100
        ];
        assert_eq!(o.validate().unwrap(), 100 * 1000 * MAX_UNIT_PRICE_CENTS);
    }

    #[test]
    fn emails() {
        for ok in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@.b.co", "a@b..co",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
        assert_eq!(mask_email("ada@example.com"), "a***@example.com");
    }

    #[test]
    fn status_never_moves_backwards() {
        use Status::*;
        assert!(Pending.can_move_to(Paid));
        assert!(Pending.can_move_to(Failed));
        assert!(Failed.can_move_to(Paid));
        assert!(!Paid.can_move_to(Failed));
        assert!(!Paid.can_move_to(Pending));
        assert!(!Failed.can_move_to(Pending));
    }
}
