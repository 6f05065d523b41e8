//! The watch protocol's pure parts: its wire format, the server's history
//! of revisions, the requests it holds, and a watcher's state.

pub mod held_requests;
pub mod history;
pub mod state;
pub mod wire;
