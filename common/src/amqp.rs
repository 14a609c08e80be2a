//! Broker connections. lapin does not reconnect dependably by itself, so every
//! long-running component (relay, consumer) owns a connection and a reconnect
//! loop built from [`connect`] and [`Backoff`].

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

/// Opens a connection named after its owner (shown in the management UI).
pub async fn connect(url: &str, name: &str) -> lapin::Result<Connection> {
    Connection::connect(url, ConnectionProperties::default().with_connection_name(name.into())).await
}

/// Exponential back-off between reconnect attempts: 100 ms doubling to 5 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    /// The delay to wait now; the next one is twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<_> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }
}
