//! The AMI link.
