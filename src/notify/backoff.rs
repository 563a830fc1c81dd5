//! When a failed delivery is tried again: exponentially later (first after
//! about 5 s), with jitter so that a receiver coming back is not met by every
//! retry at once, never more than 6 h apart, and not at all once the
//! notification is about 3 days old (then it is dead-lettered).

use std::time::Duration;

const FIRST: Duration = Duration::from_secs(5);
const MAX_GAP: Duration = Duration::from_secs(6 * 3600);
/// How long a notification is tried before it is dead-lettered.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);

/// The delay before the next attempt after `attempts` failed ones, for a
/// notification `age` old; a receiver's `Retry-After` is honoured (within
/// the same bounds). `None`: give up.
pub fn next(attempts: u32, age: Duration, retry_after: Option<Duration>) -> Option<Duration> {
    let exponent = attempts.saturating_sub(1).min(20);
    let base = FIRST.saturating_mul(1 << exponent).min(MAX_GAP);
    // Jitter: 80% to 120% of the base.
    let jittered = base.mul_f64(0.8 + 0.4 * fastrand::f64());
    let delay = retry_after.map_or(jittered, |r| r.min(MAX_GAP).max(Duration::from_secs(1)));
    (age + delay <= GIVE_UP_AFTER).then_some(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_start_near_five_seconds_and_double_within_jitter() {
        for attempts in 1..=5u32 {
            let base = 5.0 * f64::from(1u32 << (attempts - 1));
            let d = next(attempts, Duration::ZERO, None).unwrap().as_secs_f64();
            assert!((0.8 * base..=1.2 * base).contains(&d), "{attempts}: {d}");
        }
    }

    #[test]
    fn gaps_stop_growing_at_six_hours_and_give_up_after_three_days() {
        let d = next(30, Duration::from_secs(3600), None).unwrap();
        assert!(d <= Duration::from_secs(6 * 3600 * 12 / 10));
        assert_eq!(next(3, GIVE_UP_AFTER, None), None);
        // Attempts up to giving up: a receiver down for good is tried a
        // bounded number of times.
        let (mut age, mut attempts) = (Duration::ZERO, 0);
        while let Some(d) = next(attempts + 1, age, None) {
            age += d;
            attempts += 1;
        }
        assert!((15..40).contains(&attempts), "{attempts}");
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        assert_eq!(
            next(1, Duration::ZERO, Some(Duration::from_secs(120))),
            Some(Duration::from_secs(120))
        );
        assert_eq!(next(1, Duration::ZERO, Some(Duration::from_secs(86400))), Some(MAX_GAP));
    }
}
