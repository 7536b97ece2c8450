#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub use engineioxide_core::{ProtocolVersion, Str, TransportType};
pub use socket::{DisconnectReason, Socket};

#[doc(hidden)]
#[cfg(feature = "__test_harness")]
pub use engineioxide_core::{OpenPacket, Packet, PacketParseError};

pub mod budget;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod handle;
pub mod handler;
pub mod layer;
pub mod service;
pub mod socket;

// pin-project-lite takes no doc comments on variant fields; the variants say what they hold.
#[allow(missing_docs)]
mod body;
mod engine;
mod pace;
mod polling;
mod request;
mod ws;
