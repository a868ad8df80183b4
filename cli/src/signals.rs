//! SIGINT and SIGTERM, for the commands that run until told to stop (tail, stats --watch): the
//! signal is turned into a call of `on_stop` on a thread of its own, so that the command ends
//! its loop and closes the broker as after any other run, instead of dying mid-call.

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::exit::{Failure, Outcome};

/// Calls `on_stop` at each SIGINT or SIGTERM from now on (the default action, ending the
/// process, no longer applies).
pub fn on_stop(on_stop: impl Fn() + Send + 'static) -> Outcome {
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Failure::new(crate::exit::Code::Fatal, format!("cannot handle SIGINT and SIGTERM: {e}")))?;
    std::thread::Builder::new()
        .name("brokk signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                on_stop();
            }
        })
        .map_err(|e| Failure::new(crate::exit::Code::Fatal, format!("cannot start the signal thread: {e}")))?;
    Ok(())
}
