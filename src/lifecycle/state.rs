//! The two state variables of a protocol instance and the rules that move
//! them.
//!
//! `ProtoState` is what the protocol itself says (down, start, up, stop);
//! `CoreState` is what the runtime does with the protocol's routes (hungry:
//! nothing connected, feeding: the table is being sent to it, happy: fed and
//! receiving changes, flushing: its routes are being removed). Only
//! `notify` changes them, and it accepts exactly the moves listed in its
//! doc; everything else is `ErrorKind::State` and changes nothing.

use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtoState {
    Down,
    Start,
    Up,
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoreState {
    Hungry,
    Feeding,
    Happy,
    Flushing,
}

impl ProtoState {
    pub fn name(self) -> &'static str {
        match self {
            ProtoState::Down => "down",
            ProtoState::Start => "start",
            ProtoState::Up => "up",
            ProtoState::Stop => "stop",
        }
    }
}

impl CoreState {
    pub fn name(self) -> &'static str {
        match self {
            CoreState::Hungry => "hungry",
            CoreState::Feeding => "feeding",
            CoreState::Happy => "happy",
            CoreState::Flushing => "flushing",
        }
    }
}

/// The combined name `show protocols` prints: down, start, feed, up, stop,
/// flush (and "???" for a pair the rules never produce).
pub fn display_name(ps: ProtoState, cs: CoreState) -> &'static str {
    use CoreState::*;
    use ProtoState::*;
    match (ps, cs) {
        (Down, Hungry) => "down",
        (Start, Hungry) => "start",
        (Up, Hungry) | (Up, Feeding) => "feed",
        (Stop, Hungry) => "stop",
        (Up, Happy) => "up",
        (Stop, Flushing) | (Down, Flushing) => "flush",
        _ => "???",
    }
}

/// What the runtime must do after a state report was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Same state reported again: nothing changes.
    Nothing,
    /// The new pair is recorded; no further work.
    Recorded,
    /// The protocol is down with no routes left: re-evaluate its goal
    /// (restart it, replace it after a commit, or leave it down).
    FellDown,
    /// Begin sending the table to the protocol.
    StartFeed,
    /// Drop any feed in progress and remove the protocol's routes.
    StartFlush,
}

/// The result of a report: the new pair and what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub proto: ProtoState,
    pub core: CoreState,
    pub action: Action,
}

/// Applies the protocol's report `to` to the pair (`from`, `core`).
///
/// Legal moves:
/// * the same state again: no change;
/// * `down` while hungry: the protocol fell down (`FellDown`);
///   while flushing: recorded, the flush continues; while feeding or
///   happy: the feed stops and a flush begins;
/// * `start`: only from down + hungry;
/// * `up`: only from down or start, while hungry; feeding begins;
/// * `stop`: from start or up a flush begins (start + hungry has no routes
///   yet but still passes through flushing so that imports made during
///   start are removed); from down it is only recorded.
pub fn notify(from: ProtoState, core: CoreState, to: ProtoState) -> Result<Step> {
    use ProtoState::*;
    if from == to {
        return Ok(Step { proto: from, core, action: Action::Nothing });
    }
    let step = |core, action| Ok(Step { proto: to, core, action });
    match to {
        Down => match core {
            CoreState::Hungry => step(CoreState::Hungry, Action::FellDown),
            CoreState::Flushing => step(CoreState::Flushing, Action::Recorded),
            CoreState::Feeding | CoreState::Happy => step(CoreState::Flushing, Action::StartFlush),
        },
        Start if from == Down && core == CoreState::Hungry => step(CoreState::Hungry, Action::Recorded),
        Up if (from == Down || from == Start) && core == CoreState::Hungry => step(CoreState::Feeding, Action::StartFeed),
        Stop if from != Down => step(CoreState::Flushing, Action::StartFlush),
        Stop => step(core, Action::Recorded),
        _ => Err(Error::new(
            ErrorKind::State,
            format!(
                "illegal transition {}/{} -> {}",
                from.name(),
                core.name(),
                to.name()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CoreState::*;
    use ProtoState::*;

    const PS: [ProtoState; 4] = [Down, Start, Up, Stop];
    const CS: [CoreState; 4] = [Hungry, Feeding, Happy, Flushing];

    #[test]
    fn every_pair_and_target_is_either_legal_or_rejected() {
        let legal: &[(ProtoState, CoreState, ProtoState, CoreState, Action)] = &[
            (Down, Hungry, Start, Hungry, Action::Recorded),
            (Down, Hungry, Up, Feeding, Action::StartFeed),
            (Start, Hungry, Up, Feeding, Action::StartFeed),
            (Start, Hungry, Down, Hungry, Action::FellDown),
            (Stop, Hungry, Down, Hungry, Action::FellDown),
            (Up, Hungry, Down, Hungry, Action::FellDown),
            (Start, Hungry, Stop, Flushing, Action::StartFlush),
            (Up, Feeding, Stop, Flushing, Action::StartFlush),
            (Up, Happy, Stop, Flushing, Action::StartFlush),
            (Up, Feeding, Down, Flushing, Action::StartFlush),
            (Up, Happy, Down, Flushing, Action::StartFlush),
            (Stop, Flushing, Down, Flushing, Action::Recorded),
            (Down, Hungry, Stop, Hungry, Action::Recorded),
            (Down, Flushing, Stop, Flushing, Action::Recorded),
            (Up, Hungry, Stop, Flushing, Action::StartFlush),
            (Up, Flushing, Down, Flushing, Action::Recorded),
            (Up, Flushing, Stop, Flushing, Action::StartFlush),
            (Start, Feeding, Down, Flushing, Action::StartFlush),
            (Start, Happy, Down, Flushing, Action::StartFlush),
            (Start, Flushing, Down, Flushing, Action::Recorded),
            (Start, Feeding, Stop, Flushing, Action::StartFlush),
            (Start, Happy, Stop, Flushing, Action::StartFlush),
            (Start, Flushing, Stop, Flushing, Action::StartFlush),
            (Stop, Feeding, Down, Flushing, Action::StartFlush),
            (Stop, Happy, Down, Flushing, Action::StartFlush),
            (Down, Feeding, Stop, Feeding, Action::Recorded),
            (Down, Happy, Stop, Happy, Action::Recorded),
        ];
        let mut checked = 0;
        for from in PS {
            for core in CS {
                for to in PS {
                    let got = notify(from, core, to);
                    if from == to {
                        assert_eq!(got.unwrap().action, Action::Nothing);
                        continue;
                    }
                    checked += 1;
                    match legal.iter().find(|l| l.0 == from && l.1 == core && l.2 == to) {
                        Some(&(_, _, p, c, a)) => {
                            assert_eq!(got, Ok(Step { proto: p, core: c, action: a }), "{from:?}/{core:?} -> {to:?}")
                        }
                        None => assert_eq!(got.unwrap_err().kind, ErrorKind::State, "{from:?}/{core:?} -> {to:?}"),
                    }
                }
            }
        }
        assert_eq!(checked, 48);
    }

    #[test]
    fn the_reachable_lifecycle_has_names() {
        // down -> start -> up(feed) -> up(happy) -> stop(flush) -> stop(hungry) -> down
        assert_eq!(display_name(Down, Hungry), "down");
        assert_eq!(display_name(Start, Hungry), "start");
        assert_eq!(display_name(Up, Feeding), "feed");
        assert_eq!(display_name(Up, Happy), "up");
        assert_eq!(display_name(Stop, Flushing), "flush");
        assert_eq!(display_name(Down, Flushing), "flush");
        assert_eq!(display_name(Stop, Hungry), "stop");
        assert_eq!(display_name(Start, Happy), "???");
    }

    #[test]
    fn illegal_moves_say_which() {
        let e = notify(Up, Happy, Start).unwrap_err();
        assert!(e.message.contains("up/happy -> start"), "{}", e.message);
        assert!(notify(Stop, Flushing, Up).is_err());
        assert!(notify(Up, Feeding, Up).is_ok());
    }
}
