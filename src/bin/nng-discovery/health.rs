//! Whether `join` lists its name: the `--check` results counted against
//! `--rise` and `--fall`, overridden by the `--maintenance-file`. Pure: the
//! check runner and the join loop feed it and act on what it returns.

/// The rise/fall state machine and the maintenance override.
///
/// The first check result decides at once (a service that is down at start
/// is never listed, one that is up is listed without waiting for `rise`
/// passes); after that, `fall` consecutive failures make a healthy service
/// unhealthy and `rise` consecutive passes make an unhealthy one healthy.
/// The name is listed while the service is healthy and not in maintenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    rise: u32,
    fall: u32,
    /// `None` until the first result.
    healthy: Option<bool>,
    /// Consecutive results that disagree with `healthy`.
    streak: u32,
    maintenance: bool,
}

impl Health {
    /// A state awaiting its first check. `rise` and `fall` below 1 count
    /// as 1.
    pub fn new(rise: u32, fall: u32) -> Health {
        Health {
            rise: rise.max(1),
            fall: fall.max(1),
            healthy: None,
            streak: 0,
            maintenance: false,
        }
    }

    /// A state for a join without `--check`: always healthy.
    pub fn always_healthy() -> Health {
        Health {
            healthy: Some(true),
            ..Health::new(1, 1)
        }
    }

    /// Whether the name should be listed now.
    pub fn listed(&self) -> bool {
        self.healthy == Some(true) && !self.maintenance
    }

    /// Whether the checks say the service is healthy (`None` before the
    /// first).
    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    /// Takes a check result; returns the new [`listed`](Health::listed)
    /// value if it changed.
    pub fn record(&mut self, passed: bool) -> Option<bool> {
        let before = self.listed();
        match self.healthy {
            None => self.healthy = Some(passed),
            Some(healthy) if healthy == passed => self.streak = 0,
            Some(healthy) => {
                self.streak += 1;
                let needed = if healthy { self.fall } else { self.rise };
                if self.streak >= needed {
                    self.healthy = Some(passed);
                    self.streak = 0;
                }
            }
        }
        self.change_from(before)
    }

    /// Sets whether the maintenance file exists; returns the new
    /// [`listed`](Health::listed) value if it changed.
    pub fn set_maintenance(&mut self, on: bool) -> Option<bool> {
        let before = self.listed();
        self.maintenance = on;
        self.change_from(before)
    }

    fn change_from(&self, before: bool) -> Option<bool> {
        let now = self.listed();
        (now != before).then_some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_first_result_decides() {
        let mut h = Health::new(3, 3);
        assert!(!h.listed());
        assert_eq!(h.record(true), Some(true));
        let mut h = Health::new(3, 3);
        assert_eq!(h.record(false), None);
        assert_eq!(h.healthy(), Some(false));
    }

    #[test]
    fn fall_needs_consecutive_failures() {
        let mut h = Health::new(1, 3);
        h.record(true);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None); // resets the streak
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(false));
        assert_eq!(h.record(false), None);
    }

    #[test]
    fn rise_needs_consecutive_passes() {
        let mut h = Health::new(2, 1);
        h.record(false);
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None); // resets the streak
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(true));
    }

    #[test]
    fn defaults_of_one_follow_every_result() {
        let mut h = Health::new(1, 1);
        assert_eq!(h.record(true), Some(true));
        assert_eq!(h.record(false), Some(false));
        assert_eq!(h.record(true), Some(true));
        assert_eq!(h.record(true), None);
    }

    #[test]
    fn maintenance_overrides_the_checks() {
        let mut h = Health::always_healthy();
        assert!(h.listed());
        assert_eq!(h.set_maintenance(true), Some(false));
        assert_eq!(h.set_maintenance(true), None);
        assert_eq!(h.set_maintenance(false), Some(true));
        let mut h = Health::new(1, 1);
        assert_eq!(h.set_maintenance(true), None);
        assert_eq!(h.record(true), None); // healthy, but in maintenance
        assert_eq!(h.set_maintenance(false), Some(true));
        h.set_maintenance(true);
        assert_eq!(h.record(false), None);
        assert_eq!(h.set_maintenance(false), None); // still unhealthy
    }

    #[test]
    fn zero_counts_as_one() {
        assert_eq!(Health::new(0, 0), Health::new(1, 1));
    }

    /// What the state must be, computed another way: after the first
    /// result, the state flips exactly when the last `needed` results all
    /// disagree with it (counting only results since the last flip).
    fn model(rise: u32, fall: u32, results: &[bool]) -> Option<bool> {
        let (&first, rest) = results.split_first()?;
        let mut state = first;
        let mut since_flip: Vec<bool> = Vec::new();
        for &r in rest {
            since_flip.push(r);
            let needed = if state { fall } else { rise } as usize;
            let tail = &since_flip[since_flip.len().saturating_sub(needed)..];
            if tail.len() == needed && tail.iter().all(|&t| t != state) {
                state = !state;
                since_flip.clear();
            }
        }
        Some(state)
    }

    proptest! {
        #[test]
        fn agrees_with_the_model(
            rise in 1u32..5,
            fall in 1u32..5,
            steps in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..60),
        ) {
            let mut h = Health::new(rise, fall);
            let mut results = Vec::new();
            let mut listed = false;
            let mut maintenance = false;
            for (is_check, value) in steps {
                let change = if is_check {
                    results.push(value);
                    h.record(value)
                } else {
                    maintenance = value;
                    h.set_maintenance(value)
                };
                let healthy = model(rise, fall, &results);
                prop_assert_eq!(h.healthy(), healthy);
                prop_assert_eq!(h.listed(), healthy == Some(true) && !maintenance);
                // A change is reported exactly when listed() changes.
                prop_assert_eq!(change, (h.listed() != listed).then_some(h.listed()));
                listed = h.listed();
            }
        }
    }
}
