//! A uniform grid over the bounded world, so "who is near me" costs the neighbours of one
//! cell, not every player.

/// Items of one cell with their positions.
type Cell<T> = Vec<(f32, f32, T)>;

/// Items bucketed by square cells of side `cell` over `[-half_extent, half_extent]²`
/// (positions outside are clamped to the edge cells). Cells are a dense array: no hashing.
pub struct SpatialGrid<T> {
    cell: f32,
    half_extent: f32,
    side: usize,
    cells: Vec<Cell<T>>,
}

impl<T: Copy> SpatialGrid<T> {
    /// An empty grid; `cell` should be the query radius.
    pub fn new(cell: f32, half_extent: f32) -> Self {
        let side = ((2.0 * half_extent / cell).ceil() as usize).max(1);
        Self {
            cell,
            half_extent,
            side,
            cells: (0..side * side).map(|_| Vec::new()).collect(),
        }
    }

    fn coord(&self, v: f32) -> usize {
        let c = ((v + self.half_extent) / self.cell).floor();
        if c.is_nan() {
            0
        } else {
            (c.max(0.0) as usize).min(self.side - 1)
        }
    }

    /// Empties the grid, keeping its allocations.
    pub fn clear(&mut self) {
        self.cells.iter_mut().for_each(Vec::clear);
    }

    /// Adds an item at a position.
    pub fn insert(&mut self, x: f32, y: f32, item: T) {
        let index = self.coord(y) * self.side + self.coord(x);
        self.cells[index].push((x, y, item));
    }

    /// Items within `radius` (at most the grid's cell size) of a point, up to `limit`.
    pub fn near(&self, x: f32, y: f32, radius: f32, limit: usize, out: &mut Vec<(f32, f32, T)>) {
        out.clear();
        let (cx, cy) = (self.coord(x), self.coord(y));
        let r2 = radius * radius;
        for gy in cy.saturating_sub(1)..=(cy + 1).min(self.side - 1) {
            for gx in cx.saturating_sub(1)..=(cx + 1).min(self.side - 1) {
                for &(px, py, item) in &self.cells[gy * self.side + gx] {
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
        let mut grid = SpatialGrid::new(50.0, 1000.0);
        grid.insert(0.0, 0.0, 1);
        grid.insert(49.0, 0.0, 2);
        grid.insert(-30.0, -30.0, 3);
        grid.insert(120.0, 0.0, 4);
        grid.insert(1000.0, 1000.0, 5);
        let mut out = Vec::new();
        grid.near(0.0, 0.0, 50.0, 10, &mut out);
        let mut ids: Vec<i32> = out.iter().map(|e| e.2).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3]);
        grid.near(0.0, 0.0, 50.0, 2, &mut out);
        assert_eq!(out.len(), 2, "limit respected");
        grid.near(999.0, 999.0, 50.0, 10, &mut out);
        assert_eq!(out.len(), 1, "the world's edge is a cell too");
    }
}
