//! One module per command.

pub mod count;
pub mod dead_letters;
pub mod peek;
pub mod publish;
pub mod stats;
pub mod tail;
