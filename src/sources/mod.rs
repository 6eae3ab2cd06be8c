pub mod checkpoint;
pub mod cloudtrail;
pub mod event;
pub mod health;
pub mod route;
pub mod sqs;
pub mod trail;
