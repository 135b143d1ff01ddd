//! # orders-domain: the orders reference application's domain
//!
//! Validation ([`model`]), unguessable ids ([`id`]), storage with the outbox ([`repo`]), failures ([`OrderError`], each mapped to its HTTP problem), the
//! list cursor ([`cursor`]) and event names and payloads ([`events`]). The functions under
//! `functions/` are thin HTTP shells around this.

pub mod currency;
pub mod cursor;
mod error;
pub mod events;
pub mod id;
pub mod model;
pub mod repo;

pub use error::OrderError;
pub use model::{NewItem, NewOrder, Order, Status};
