//! One module per group of routes; `http::router` wires them.

pub mod generate;
pub mod health;
pub mod live;
pub mod lookup;
pub mod models;
pub mod serials;
pub mod tasks;
