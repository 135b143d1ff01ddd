//! # tern-cli: the `tern` command and the local stand-ins it runs
//!
//! `tern dev` runs the whole system on one machine ([`dev`]); `tern publish` publishes an event
//! as a producer would; `tern routes` prints the route table as JSON; `tern new` scaffolds a
//! function. The end-to-end tests use [`local`] to start the same processes the same way.

pub mod delivery;
pub mod dev;
pub mod local;
pub mod pubsub;
pub mod render;
pub mod router;
pub mod scaffold;
