//! The AMI link (WIP).
pub mod codec;
pub mod link;
pub mod translate;
