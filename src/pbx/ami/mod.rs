//! The AMI link (WIP).
pub mod codec;
pub mod translate;
