//! The application side: the HTTP channel to the app, its subscriptions, event delivery.

mod bulk;
pub mod channel;
pub mod delivery;
pub mod rules;
pub mod subscription;
