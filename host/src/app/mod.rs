//! The application side: the HTTP channel to the app, its subscriptions, event delivery.

pub mod channel;
pub mod delivery;
pub mod rules;
pub mod subscription;
