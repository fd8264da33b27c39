//! A uniform grid over player positions, so "who is near me" costs the neighbours of one
//! cell, not every player.

use std::collections::HashMap;

/// Items of one cell with their positions.
type Cell<T> = Vec<(f32, f32, T)>;

/// Players bucketed by square cells of side `cell`.
#[derive(Default)]
pub struct SpatialGrid<T> {
    cell: f32,
    cells: HashMap<(i32, i32), Cell<T>>,
}

impl<T: Copy> SpatialGrid<T> {
    /// An empty grid; `cell` should be the query radius.
    pub fn new(cell: f32) -> Self {
        Self {
            cell,
            cells: HashMap::new(),
        }
    }

    fn key(&self, x: f32, y: f32) -> (i32, i32) {
        (
            (x / self.cell).floor() as i32,
            (y / self.cell).floor() as i32,
        )
    }

    /// Empties the grid, keeping its allocations.
    pub fn clear(&mut self) {
        self.cells.values_mut().for_each(Vec::clear);
    }

    /// Adds an item at a position.
    pub fn insert(&mut self, x: f32, y: f32, item: T) {
        let key = self.key(x, y);
        self.cells.entry(key).or_default().push((x, y, item));
    }

    /// Items within `radius` (at most the grid's cell size) of a point, up to `limit`.
    pub fn near(&self, x: f32, y: f32, radius: f32, limit: usize, out: &mut Vec<(f32, f32, T)>) {
        out.clear();
        let (cx, cy) = self.key(x, y);
        let r2 = radius * radius;
        for gx in cx - 1..=cx + 1 {
            for gy in cy - 1..=cy + 1 {
                for &(px, py, item) in self.cells.get(&(gx, gy)).into_iter().flatten() {
                    if (px - x).powi(2) + (py - y).powi(2) <= r2 {
                        out.push((px, py, item));
                        if out.len() == limit {
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_items_within_the_radius() {
        let mut grid = SpatialGrid::new(50.0);
        grid.insert(0.0, 0.0, 1);
        grid.insert(49.0, 0.0, 2);
        grid.insert(-30.0, -30.0, 3);
        grid.insert(120.0, 0.0, 4);
        let mut out = Vec::new();
        grid.near(0.0, 0.0, 50.0, 10, &mut out);
        let mut ids: Vec<i32> = out.iter().map(|e| e.2).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3]);
        grid.near(0.0, 0.0, 50.0, 2, &mut out);
        assert_eq!(out.len(), 2, "limit respected");
    }
}
