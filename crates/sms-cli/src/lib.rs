//! The administrator's restricted shell on the SMS appliance.
//!
//! The grammar ([`grammar`]) is the whole language: keywords with unique
//! prefixes, arguments checked by type, `?` and completion from the same
//! tree. [`commands`] runs a matched line against the daemons over D-Bus and
//! systemd, [`audit`] records every change. Nothing typed ever reaches a
//! shell or a program.

pub mod account;
pub mod action;
pub mod audit;
pub mod commands;
pub mod configure;
pub mod files;
pub mod grammar;
pub mod setlines;
pub mod terminal;
