//! `madoguchi demo`: a synthetic Maizuru to try the system on, with nothing real in it.
//!
//! - [`synth`]: the resident register (real 町名 and postal codes, households sharing 0773
//!   landlines, an ageing population), the demo staff, [`synth::populate`] for a fresh
//!   database, and caller numbers for the AMI simulator.
//! - [`history`]: 60 days of past calls and inquiries, so screen pops show a history.
//! - [`appointments`]: venues, slots, and both doses assigned to everyone who wants them.
//! - [`venue_day`]: today's simulated venue day: check-ins and doses as time passes.

pub mod appointments;
pub mod command;
pub mod history;
pub mod synth;
pub mod venue_day;

pub use command::{run, DemoArgs};

pub use synth::{
    caller_numbers, populate, residents, sample_phones, stranger_numbers, DemoSummary,
};

#[cfg(test)]
mod tests;
