//! The io_uring engine: ring setup and probing, provided-buffer rings,
//! wake-on-close, cancel-and-drain, and the message receive/send queues the
//! UDP handle (and later TUN) are built from.

mod buf_ring;
mod file_io;
mod msg_recv;
mod msg_send;
mod poll_waiter;
mod probe;
mod ring;

pub use file_io::{FileIo, WriteAt, QUEUE_DEPTH};
pub use msg_recv::{Flow, Incoming, MsgReceiver, ReceiverConfig};
pub use msg_send::{MsgSender, SendOutcome};
pub use poll_waiter::PollWaiter;
pub use probe::{probe, Features};
pub use ring::Ring;
