//! Who sees what: the spatial area of interest (entities within a radius of the viewer,
//! nearest cells first, at most a fixed number of candidates) filtered by the game's
//! visibility rule over [`InterestTags`] — both evaluated off the tick, on the data the round
//! carries.

use bevy_ecs::prelude::*;

/// What a game's visibility rule knows of an entity, copied into each round on the tick.
/// An entity without the component has the default: layer 1, group 0.
#[derive(Component, Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterestTags {
    /// Bit set of layers (an instance, a dimension): with the default rule, entities are
    /// visible to each other only when they share a layer.
    pub layers: u64,
    /// A free value for the game's own rule (a party, a team).
    pub group: u64,
}

impl Default for InterestTags {
    fn default() -> Self {
        Self {
            layers: 1,
            group: 0,
        }
    }
}

/// A game's visibility rule: whether `viewer` sees `other`, both within the radius. Runs off
/// the tick, on network threads, for every candidate of every client each round: keep it a
/// few comparisons. A closure `Fn(&InterestTags, &InterestTags) -> bool` is a rule.
pub trait InterestRule: Send + Sync + 'static {
    /// Whether `viewer` sees `other`. A viewer always sees itself, whatever this says.
    fn visible(&self, viewer: &InterestTags, other: &InterestTags) -> bool;
}

impl<F: Fn(&InterestTags, &InterestTags) -> bool + Send + Sync + 'static> InterestRule for F {
    fn visible(&self, viewer: &InterestTags, other: &InterestTags) -> bool {
        self(viewer, other)
    }
}

/// The default rule: entities sharing a layer see each other.
pub struct SharedLayer;

impl InterestRule for SharedLayer {
    fn visible(&self, viewer: &InterestTags, other: &InterestTags) -> bool {
        viewer.layers & other.layers != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let a = InterestTags::default();
        let b = InterestTags {
            layers: 2,
            group: 7,
        };
        assert!(SharedLayer.visible(&a, &a));
        assert!(!SharedLayer.visible(&a, &b));
        let same_group = |v: &InterestTags, o: &InterestTags| v.group == o.group;
        assert!(!same_group.visible(&a, &b));
        assert!(same_group.visible(&b, &b));
    }
}
