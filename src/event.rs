//! Ephemeral events: someone typing, a name joining or leaving a room. They go to whoever is
//! waiting in the room at that moment and are never stored or replayed.

use serde::Serialize;

/// An ephemeral event. Its JSON is `{"type":"typing","from":"ann"}`,
/// `{"type":"join","name":"bob"}` or `{"type":"leave","name":"bob"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Event {
    /// `from` is typing.
    Typing {
        /// Who types.
        from: String,
    },
    /// `name` appeared in the room.
    Join {
        /// Who joined.
        name: String,
    },
    /// `name` has not been seen for the presence window, and no stream holds it.
    Leave {
        /// Who left.
        name: String,
    },
}

impl Event {
    /// The event's type, which is also its SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Typing { .. } => "typing",
            Event::Join { .. } => "join",
            Event::Leave { .. } => "leave",
        }
    }
}
