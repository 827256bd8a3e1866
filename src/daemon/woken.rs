//! A future polled only when its own waker fired.
//!
//! `future::or(a, b)` polls both sides whenever either one is woken, and
//! async-io's reads (`Async::read_with`, `accept`) retry their system call
//! on every poll, woken or not. The daemon runs its main loop `or` its
//! background loops (control socket listener, signals, watchdog), so every
//! turn of the main loop paid a failing `accept4` and a failing `recvfrom`
//! on the signal pipe, each with an epoll re-registration: measured on the
//! sender of `benches/bench.py`, 0.6 of each per replicated entry, a third
//! of the loop's system calls. Wrapped in [`OnlyWhenWoken`], the
//! background loops run only when something they wait for happened.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// See the module header.
pub(crate) struct OnlyWhenWoken<F> {
    inner: Pin<Box<F>>,
    flag: Arc<Flag>,
}

struct Flag {
    /// Set by the inner future's waker; the first poll always runs it.
    woken: AtomicBool,
    /// The waker of whoever polls us, woken in turn.
    outer: Mutex<Option<Waker>>,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        let outer = match self.outer.lock() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        if let Some(w) = outer {
            w.wake();
        }
    }
}

pub(crate) fn only_when_woken<F: Future>(inner: F) -> OnlyWhenWoken<F> {
    OnlyWhenWoken {
        inner: Box::pin(inner),
        flag: Arc::new(Flag {
            woken: AtomicBool::new(true),
            outer: Mutex::new(None),
        }),
    }
}

impl<F: Future> Future for OnlyWhenWoken<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        {
            // Stored before the flag is read: a wake-up that comes after
            // the read reaches this caller.
            let mut outer = match self.flag.outer.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            if !outer.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *outer = Some(cx.waker().clone());
            }
        }
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(self.flag.clone());
        self.inner.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

#[cfg(test)]
mod test {
    use super::only_when_woken;
    use std::cell::Cell;
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Poll, Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn the_inner_future_is_polled_first_and_then_only_when_it_was_woken() {
        let polls = Cell::new(0);
        let stash: Cell<Option<Waker>> = Cell::new(None);
        let inner = std::future::poll_fn(|cx| {
            polls.set(polls.get() + 1);
            stash.set(Some(cx.waker().clone()));
            if polls.get() == 2 {
                Poll::Ready(7)
            } else {
                Poll::Pending
            }
        });
        let mut f = pin!(only_when_woken(inner));
        let outer = Arc::new(Count(AtomicUsize::new(0)));
        let outer_waker = Waker::from(outer.clone());
        let mut cx = Context::from_waker(&outer_waker);
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(polls.get(), 1);
        // Polled for someone else's sake: the inner future is left alone.
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Pending);
        assert_eq!(polls.get(), 1);
        stash.take().unwrap().wake();
        assert_eq!(outer.0.load(Ordering::Relaxed), 1, "the caller is woken");
        assert_eq!(f.as_mut().poll(&mut cx), Poll::Ready(7));
        assert_eq!(polls.get(), 2);
    }
}
