//! Where a lane's pipelines go: the connection to the node that serves a key. A single Redis
//! is one node serving every key. The lane worker asks only this, so one lane implementation
//! serves every topology.

use hearth_components::PlayerId;

use super::conn::LaneConn;

/// A lane's connections, one per node.
pub struct Nodes {
    conns: Vec<LaneConn>,
}

impl Nodes {
    /// One Redis: every key on `conn`.
    pub fn single(conn: LaneConn) -> Self {
        Self { conns: vec![conn] }
    }

    /// How many nodes the lane sends to.
    pub fn count(&self) -> usize {
        self.conns.len()
    }

    /// The node serving `player`'s keys (record and lease share its hash tag).
    pub fn of_player(&self, _player: PlayerId) -> usize {
        0
    }

    /// The node serving `key`.
    pub fn of_key(&self, _key: &str) -> usize {
        0
    }

    /// The connection to node `node` (an index from [`Nodes::of_player`] or [`Nodes::of_key`]).
    pub fn conn(&mut self, node: usize) -> &mut LaneConn {
        &mut self.conns[node]
    }

    /// The connection to the node serving `key`.
    pub fn for_key(&mut self, key: &str) -> &mut LaneConn {
        let node = self.of_key(key);
        self.conn(node)
    }

    /// Every node's connection.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut LaneConn> {
        self.conns.iter_mut()
    }
}
