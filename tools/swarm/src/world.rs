//! The world a bot rebuilds from its updates, and the promises each update must keep
//! (docs/protocol.md, "Replication: what you see"): rounds increase, nothing changes or
//! leaves that was not entered, the bot's own entity is always there, and where it stands
//! agrees with where it walked ([`crate::walk`]).

use std::collections::HashMap;

use hearth_components::wire::decode_message;

use crate::conn::ComponentInfo;
use crate::update::{Component, Update};
use crate::walk::{Verdict, Walk};

/// What one update brought to light.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Checked {
    /// Broken promises, each a sentence.
    pub(crate) violations: Vec<String>,
    /// True when the bot's position could no longer be checked (too many moves in flight).
    pub(crate) unchecked: bool,
    /// The bot's own position, when the update reported it.
    pub(crate) own: Option<(f32, f32)>,
}

/// Entities by id with their components (by index), as the server told this bot.
pub(crate) struct World {
    schema: Vec<ComponentInfo>,
    you: Option<u64>,
    entities: HashMap<u64, Vec<Option<Component>>>,
    round: Option<u64>,
}

impl World {
    /// An empty world, before any `replication` message.
    pub(crate) fn new() -> Self {
        Self {
            schema: Vec::new(),
            you: None,
            entities: HashMap::new(),
            round: None,
        }
    }

    /// A `replication` message: clear the world; the bot is `you`.
    pub(crate) fn replication(&mut self, you: u64, schema: Vec<ComponentInfo>) {
        self.schema = schema;
        self.you = Some(you);
        self.entities.clear();
        self.round = None;
    }

    /// The replicated components, in index order.
    pub(crate) fn schema(&self) -> &[ComponentInfo] {
        &self.schema
    }

    /// Where entity `id` is, as the server last told this bot.
    pub(crate) fn position_of(&self, id: u64) -> Option<(f32, f32)> {
        self.entities.get(&id)?.iter().find_map(|c| match c {
            Some(Component::Position(x, y)) => Some((*x, *y)),
            _ => None,
        })
    }

    /// The bot's own position, as the server last told it.
    pub(crate) fn own_position(&self) -> Option<(f32, f32)> {
        self.position_of(self.you?)
    }

    /// The player entity `id` is (its `player_id` component), when the bot knows it.
    pub(crate) fn player_of(&self, id: u64) -> Option<u64> {
        let index = self.schema.iter().position(|c| c.name == "player_id")?;
        match self.entities.get(&id)?.get(index)?.as_ref()? {
            Component::Binary(payload) => decode_message::<u64>(payload).ok(),
            Component::Json(value) => value.as_u64(),
            Component::Position(..) => None,
        }
    }

    /// Entities the bot knows of.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entities.len()
    }

    /// Applies `update` (entered, changed, left, in that order) and checks it; the bot's own
    /// position, when reported, against `walk`.
    pub(crate) fn apply(&mut self, update: Update, walk: &mut Walk) -> Checked {
        let mut checked = Checked::default();
        let Some(you) = self.you else {
            checked
                .violations
                .push("an update before the replication message".into());
            return checked;
        };
        if let Some(previous) = self.round.filter(|&r| update.round <= r) {
            checked
                .violations
                .push(format!("round {} after round {previous}", update.round));
        }
        self.round = Some(update.round);
        let mut own = None;
        let slots = self.schema.len();
        for entity in update.entered {
            let mut components = vec![None; slots];
            for (index, component) in entity.components {
                if entity.id == you
                    && let Component::Position(x, y) = component
                {
                    own = Some((x, y));
                }
                components[index] = Some(component);
            }
            self.entities.insert(entity.id, components);
        }
        for entity in update.changed {
            let Some(known) = self.entities.get_mut(&entity.id) else {
                checked.violations.push(format!(
                    "a change of entity {}, never entered or left",
                    entity.id
                ));
                continue;
            };
            for (index, component) in entity.components {
                if entity.id == you
                    && let Component::Position(x, y) = component
                {
                    own = Some((x, y));
                }
                known[index] = Some(component);
            }
        }
        for id in update.left {
            if self.entities.remove(&id).is_none() {
                checked
                    .violations
                    .push(format!("entity {id} left, never entered"));
            }
        }
        if !self.entities.contains_key(&you) {
            checked.violations.push(format!(
                "its own entity {you} missing after round {}",
                update.round
            ));
        }
        checked.own = own;
        if let Some(reported) = own {
            match walk.check(reported) {
                Verdict::Agrees => {}
                Verdict::Disagrees(why) => checked.violations.push(why),
                Verdict::Unchecked => checked.unchecked = true,
            }
        }
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::update::{Entity, POSITION_ENCODING};
    use crate::walk::Precision;

    fn world() -> World {
        let mut world = World::new();
        world.replication(
            1,
            vec![ComponentInfo {
                name: "position".into(),
                encoding: POSITION_ENCODING.into(),
            }],
        );
        world
    }

    fn at(id: u64, x: f32, y: f32) -> Entity {
        Entity {
            id,
            components: vec![(0, Component::Position(x, y))],
        }
    }

    #[test]
    fn a_faithful_stream_keeps_every_promise() {
        let mut world = world();
        let mut walk = Walk::new((0.0, 0.0), Precision::Exact);
        let update = Update {
            round: 5,
            entered: vec![at(1, 0.0, 0.0), at(2, 3.0, 4.0)],
            changed: vec![],
            left: vec![],
        };
        let checked = world.apply(update, &mut walk);
        assert_eq!(checked.violations, Vec::<String>::new());
        assert_eq!(checked.own, Some((0.0, 0.0)));
        walk.sent(1.0, 0.0);
        let update = Update {
            round: 6,
            entered: vec![],
            changed: vec![at(1, 1.0, 0.0)],
            left: vec![2],
        };
        let checked = world.apply(update, &mut walk);
        assert_eq!(checked.violations, Vec::<String>::new());
        assert_eq!(world.own_position(), Some((1.0, 0.0)));
        assert_eq!(world.len(), 1);
    }

    #[test]
    fn each_broken_promise_is_counted() {
        let mut world = world();
        let mut walk = Walk::new((0.0, 0.0), Precision::Exact);
        let update = Update {
            round: 5,
            entered: vec![at(1, 0.0, 2.0)],
            changed: vec![at(9, 0.0, 0.0)],
            left: vec![8],
        };
        let checked = world.apply(update, &mut walk);
        assert_eq!(checked.violations.len(), 3, "{checked:?}");
        let update = Update {
            round: 5,
            entered: vec![],
            changed: vec![],
            left: vec![1],
        };
        let checked = world.apply(update, &mut walk);
        assert_eq!(
            checked.violations,
            [
                "round 5 after round 5",
                "its own entity 1 missing after round 5"
            ]
        );
    }
}
