pub mod checkpoint;
pub mod cloudtrail;
pub mod event;
pub mod health;
pub mod sqs;
pub mod trail;
