//! Named fail points on the durability path, so tests can make a step fail on purpose.
//!
//! The writer's flush goes uploaded → committed → acknowledged; a crash between two steps
//! leaves a state the rest of the system must handle (an orphan object; a commit the client
//! never heard about). Each gap has a name ([`UPLOADED_NOT_COMMITTED`],
//! [`COMMITTED_NOT_ACKED`]) where the code asks [`FailPoints::hit`] whether to fail, and
//! how ([`FailAction`]). Nothing is armed unless a test arms it, in process through
//! [`FailPoints::arm`] or, for `yaks` processes, with the `YAKS_FAIL_POINTS` environment
//! variable (`point=action[*times];…`, e.g. `writer.committed_not_acked=lose_answer*1`).
//! An unarmed check is one relaxed atomic load.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::warn;

/// After a flush's object is in S3, before its commit transaction.
pub const UPLOADED_NOT_COMMITTED: &str = "writer.uploaded_not_committed";
/// After a flush's commit, before its produce requests are answered.
pub const COMMITTED_NOT_ACKED: &str = "writer.committed_not_acked";

/// Every point a spec may name.
const POINTS: &[&str] = &[UPLOADED_NOT_COMMITTED, COMMITTED_NOT_ACKED];

/// What an armed point does when reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    /// The step fails the way a passing fault would: it is not done, and the waiting
    /// requests get a retriable error.
    Error,
    /// The process behaves as if it died at this point: the step's result is never
    /// reported and the waiting requests' connections are cut without an answer.
    LoseAnswer,
}

#[derive(Debug)]
struct Armed {
    action: FailAction,
    /// Hits left before the point disarms itself; `None` for every hit.
    remaining: Option<u32>,
}

/// The armed points of one process (or of one role in a test).
#[derive(Debug, Default)]
pub struct FailPoints {
    any_armed: AtomicBool,
    armed: Mutex<HashMap<String, Armed>>,
    fired: Mutex<HashMap<String, u64>>,
}

impl FailPoints {
    /// Parses `point=action[*times];…`; actions are `error` and `lose_answer`.
    pub fn from_spec(spec: &str) -> Result<FailPoints, String> {
        let points = FailPoints::default();
        for item in spec.split(';').map(str::trim).filter(|i| !i.is_empty()) {
            let (point, action) = item
                .split_once('=')
                .ok_or_else(|| format!("fail point `{item}`: expected point=action"))?;
            if !POINTS.contains(&point) {
                return Err(format!(
                    "unknown fail point `{point}`; known: {}",
                    POINTS.join(", ")
                ));
            }
            let (action, times) = match action.split_once('*') {
                Some((action, times)) => {
                    let times: u32 = times
                        .parse()
                        .map_err(|_| format!("fail point `{item}`: bad count `{times}`"))?;
                    (action, Some(times))
                }
                None => (action, None),
            };
            let action = match action {
                "error" => FailAction::Error,
                "lose_answer" => FailAction::LoseAnswer,
                other => {
                    return Err(format!(
                        "fail point `{item}`: unknown action `{other}` (error, lose_answer)"
                    ));
                }
            };
            points.arm(point, action, times);
        }
        Ok(points)
    }

    /// Arms `point` for the next `times` hits, or for every hit.
    pub fn arm(&self, point: &str, action: FailAction, times: Option<u32>) {
        warn!(point, ?action, ?times, "fail point armed");
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        armed.insert(
            point.to_owned(),
            Armed {
                action,
                remaining: times,
            },
        );
        self.any_armed.store(true, Ordering::Relaxed);
    }

    /// Disarms `point`.
    pub fn disarm(&self, point: &str) {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        armed.remove(point);
        self.any_armed.store(!armed.is_empty(), Ordering::Relaxed);
    }

    /// Called by the code at `point`: the action to take, if the point is armed.
    pub fn hit(&self, point: &str) -> Option<FailAction> {
        if !self.any_armed.load(Ordering::Relaxed) {
            return None;
        }
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        let entry = armed.get_mut(point)?;
        let action = entry.action;
        match &mut entry.remaining {
            Some(0) => return None,
            Some(remaining) => {
                *remaining -= 1;
                if *remaining == 0 {
                    armed.remove(point);
                    self.any_armed.store(!armed.is_empty(), Ordering::Relaxed);
                }
            }
            None => {}
        }
        drop(armed);
        *self
            .fired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(point.to_owned())
            .or_default() += 1;
        warn!(point, ?action, "fail point fired");
        Some(action)
    }

    /// How often `point` fired.
    pub fn fired(&self, point: &str) -> u64 {
        self.fired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(point)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_point_fires_that_often_then_disarms() {
        let points =
            FailPoints::from_spec("writer.committed_not_acked=lose_answer*2").expect("spec");
        assert_eq!(points.hit(UPLOADED_NOT_COMMITTED), None);
        assert_eq!(
            points.hit(COMMITTED_NOT_ACKED),
            Some(FailAction::LoseAnswer)
        );
        assert_eq!(
            points.hit(COMMITTED_NOT_ACKED),
            Some(FailAction::LoseAnswer)
        );
        assert_eq!(points.hit(COMMITTED_NOT_ACKED), None);
        assert_eq!(points.fired(COMMITTED_NOT_ACKED), 2);
    }

    #[test]
    fn bad_specs_name_the_problem() {
        assert!(
            FailPoints::from_spec("nope=error")
                .expect_err("refused")
                .contains("unknown fail point")
        );
        assert!(
            FailPoints::from_spec("writer.uploaded_not_committed=explode")
                .expect_err("refused")
                .contains("unknown action")
        );
        let always =
            FailPoints::from_spec(" writer.uploaded_not_committed=error ; ").expect("spec");
        for _ in 0..3 {
            assert_eq!(always.hit(UPLOADED_NOT_COMMITTED), Some(FailAction::Error));
        }
        always.disarm(UPLOADED_NOT_COMMITTED);
        assert_eq!(always.hit(UPLOADED_NOT_COMMITTED), None);
    }
}
