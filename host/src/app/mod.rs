//! The application side, shared by every block that calls the app: the HTTP channel to it,
//! what its answers to events mean, and subscription discovery.

pub mod channel;
pub mod discovery;
mod events;
