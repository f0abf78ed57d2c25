//! The runner's signals: SIGHUP (and consul-template's `reload_signal`)
//! reload; SIGINT, SIGTERM (and `kill_signal`) stop; USR1, USR2, QUIT and
//! WINCH, unless chosen for one of those, go to the `-exec` child.

use nix::sys::signal::Signal;
use tokio::signal::unix::{signal, SignalKind};

/// What a received signal means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Reload(Signal),
    Stop(Signal),
    Forward(Signal),
}

pub struct Signals {
    streams: Vec<(Signal, tokio::signal::unix::Signal)>,
    reload: Signal,
    kill: Signal,
}

const FORWARDED: [Signal; 4] = [
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGQUIT,
    Signal::SIGWINCH,
];

impl Signals {
    /// Listen for the defaults plus `reload` and `kill` (consul-template's
    /// `reload_signal`, `kill_signal`; SIGHUP and SIGINT when not set).
    pub fn new(reload: Option<Signal>, kill: Option<Signal>) -> std::io::Result<Self> {
        let reload = reload.unwrap_or(Signal::SIGHUP);
        let kill = kill.unwrap_or(Signal::SIGINT);
        let mut wanted = vec![Signal::SIGHUP, Signal::SIGINT, Signal::SIGTERM];
        wanted.extend(FORWARDED);
        for s in [reload, kill] {
            if !wanted.contains(&s) {
                wanted.push(s);
            }
        }
        let mut streams = Vec::new();
        for s in wanted {
            streams.push((s, signal(SignalKind::from_raw(s as i32))?));
        }
        Ok(Self {
            streams,
            reload,
            kill,
        })
    }

    /// What `s` means here.
    pub fn classify(&self, s: Signal) -> Event {
        if s == self.reload || s == Signal::SIGHUP {
            Event::Reload(s)
        } else if s == self.kill || s == Signal::SIGINT || s == Signal::SIGTERM {
            Event::Stop(s)
        } else {
            Event::Forward(s)
        }
    }

    /// The next signal received.
    pub async fn next(&mut self) -> Event {
        let futs = self.streams.iter_mut().map(|(s, st)| {
            let s = *s;
            Box::pin(async move {
                st.recv().await;
                s
            })
        });
        let (s, _, _) = futures_select_all(futs).await;
        self.classify(s)
    }
}

/// The first of several futures to finish (a small `select_all`).
async fn futures_select_all<F: std::future::Future<Output = Signal> + Unpin>(
    futs: impl Iterator<Item = F>,
) -> (Signal, usize, ()) {
    let mut futs: Vec<F> = futs.collect();
    std::future::poll_fn(move |cx| {
        for (i, f) in futs.iter_mut().enumerate() {
            if let std::task::Poll::Ready(s) = std::pin::Pin::new(f).poll(cx) {
                return std::task::Poll::Ready((s, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn classify_with_configured_signals() {
        let s = Signals::new(Some(Signal::SIGUSR1), Some(Signal::SIGQUIT)).unwrap();
        assert_eq!(s.classify(Signal::SIGUSR1), Event::Reload(Signal::SIGUSR1));
        assert_eq!(s.classify(Signal::SIGHUP), Event::Reload(Signal::SIGHUP));
        assert_eq!(s.classify(Signal::SIGQUIT), Event::Stop(Signal::SIGQUIT));
        assert_eq!(s.classify(Signal::SIGTERM), Event::Stop(Signal::SIGTERM));
        assert_eq!(s.classify(Signal::SIGUSR2), Event::Forward(Signal::SIGUSR2));
        let d = Signals::new(None, None).unwrap();
        assert_eq!(d.classify(Signal::SIGUSR1), Event::Forward(Signal::SIGUSR1));
    }
}
