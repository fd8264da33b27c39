//! How urgently a candidate should be sent: each round a candidate with something to send
//! gains priority (more when nearer); the client's budget goes to the highest accumulated
//! priorities, and sending resets a candidate's accumulator. So nearby entities go nearly
//! every round, farther ones less often, and everything in range eventually.

/// Priority a candidate at the edge of the radius gains per round.
pub const EDGE_PRIORITY: f32 = 1.0;
/// Priority a candidate at the viewer's position gains per round: 4 times the edge's, so in
/// a crowd over budget the nearest are sent about 4 times as often as the farthest.
pub const NEAR_PRIORITY: f32 = 4.0;
/// Extra priority for an entity the client does not know yet (its first appearance matters
/// more than a move of one it already shows).
pub const ENTERING_BONUS: f32 = 1.0;

/// Priority gained this round by a candidate at squared distance `distance2` of a viewer
/// whose radius is `radius`.
pub fn gain(distance2: f32, radius: f32, entering: bool) -> f32 {
    let nearness = if radius > 0.0 {
        1.0 - (distance2.sqrt() / radius).clamp(0.0, 1.0)
    } else {
        1.0
    };
    let bonus = if entering { ENTERING_BONUS } else { 0.0 };
    EDGE_PRIORITY + (NEAR_PRIORITY - EDGE_PRIORITY) * nearness + bonus
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearer_and_new_gain_more() {
        assert_eq!(gain(0.0, 50.0, false), NEAR_PRIORITY);
        assert_eq!(gain(2500.0, 50.0, false), EDGE_PRIORITY);
        assert!(gain(100.0, 50.0, false) > gain(900.0, 50.0, false));
        assert!(gain(100.0, 50.0, true) > gain(100.0, 50.0, false));
    }
}
