//! The watch protocol's pure parts: its wire format, the server's history
//! of revisions, the requests it holds, a watcher's state, and a broadcast
//! follower's state.

pub mod follower;
pub mod held_requests;
pub mod history;
pub mod state;
pub mod wire;
