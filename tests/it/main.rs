//! Black-box tests: one binary, one module per area. Each boots the real server on
//! 127.0.0.1:0 with a fresh database and speaks to it as its users do.

mod adapters;
mod ami;
mod api;
mod ari;
mod assign;
mod bookings;
mod browser;
mod browser_rebook;
mod browser_supervisor;
mod browser_venue;
mod cli;
mod common;
mod desk;
mod dial;
mod dialplans;
mod doors;
mod outage;
mod pbx;
mod rebook;
mod restart;
mod resume;
mod roles;
mod sip;
mod slow;
mod supervisor;
mod tracker;
mod venue;
mod webdriver;
mod webhook;
