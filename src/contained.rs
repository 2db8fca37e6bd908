//! Libraries that panic on bad input instead of returning an error. tokenizers 0.22, for
//! one, `expect`s its way through parts of tokenizer.json (a decoder object with a syntax
//! error inside, a Precompiled normalizer whose charsmap is not bytes: found by
//! fuzz/checkpoint.py), and a checkpoint's tokenizer is untrusted text. Such a call runs
//! here: its panic becomes an error carrying the panic's message, and that message is kept
//! off stderr, since the caller reports it.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    /// True while this thread runs a `contained` call: the panic hook stays quiet.
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

static QUIET_HOOK: Once = Once::new();

/// Runs `f`; a panic inside it is `Err(its message)`. `f` must leave nothing half-changed
/// that outlives it (it gets only what it owns or borrows immutably).
pub fn contained<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    QUIET_HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CONTAINING.with(Cell::get) {
                previous(info)
            }
        }));
    });
    let outer = CONTAINING.with(|c| c.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    CONTAINING.with(|c| c.set(outer));
    result.map_err(|payload| {
        if let Some(message) = payload.downcast_ref::<&str>() {
            (*message).to_owned()
        } else if let Some(message) = payload.downcast_ref::<String>() {
            message.clone()
        } else {
            "a panic without a message".to_owned()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::contained;

    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(contained(|| 7), Ok(7));
        let values: Vec<u8> = Vec::new();
        assert_eq!(
            contained(|| values.first().copied().expect("no value")),
            Err("no value".into())
        );
        assert_eq!(
            contained(|| panic!("{} parts", 3)),
            Err::<(), _>("3 parts".into())
        );
    }
}
