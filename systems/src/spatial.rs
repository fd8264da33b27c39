//! A uniform grid over the bounded world, so "who is near me" costs the neighbours of one
//! cell, not every player; and the world's index of players by [`Position`], which
//! [`NearbyPlayers`] (and `ToClients::send_near`) query.

use std::sync::Mutex;

use bevy_app::{App, First, Plugin};
use bevy_ecs::prelude::*;
use bevy_ecs::system::SystemParam;
use hearth_components::{PlayerId, Position};

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

    /// Items within `radius` of a point, up to `limit`. A radius up to the cell size visits
    /// the 3 x 3 cells around the point; a larger one as many rings as it spans.
    pub fn near(&self, x: f32, y: f32, radius: f32, limit: usize, out: &mut Vec<(f32, f32, T)>) {
        out.clear();
        if limit == 0 || radius.is_nan() || radius < 0.0 {
            return;
        }
        let (cx, cy) = (self.coord(x), self.coord(y));
        let reach = ((radius / self.cell).ceil() as usize).clamp(1, self.side);
        let r2 = radius * radius;
        for gy in cy.saturating_sub(reach)..=(cy + reach).min(self.side - 1) {
            for gx in cx.saturating_sub(reach)..=(cx + reach).min(self.side - 1) {
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

impl<T: Copy> SpatialGrid<T> {
    /// Items within `radius` of a point, nearest cells first: the point's own cell, then each
    /// ring of cells around it, until `limit` items are found (so at most the cells within
    /// `radius` are visited and at most `limit` items kept, however crowded the cells).
    pub fn nearest_first(
        &self,
        x: f32,
        y: f32,
        radius: f32,
        limit: usize,
        out: &mut Vec<(f32, f32, T)>,
    ) {
        out.clear();
        if limit == 0 || radius.is_nan() || radius < 0.0 {
            return;
        }
        let (cx, cy) = (self.coord(x) as isize, self.coord(y) as isize);
        let reach = ((radius / self.cell).ceil() as isize).clamp(1, self.side as isize);
        let side = self.side as isize;
        let r2 = radius * radius;
        for ring in 0..=reach {
            for gy in (cy - ring).max(0)..=(cy + ring).min(side - 1) {
                let edge_row = gy == cy - ring || gy == cy + ring;
                let step = if edge_row { 1 } else { (2 * ring).max(1) };
                let mut gx = cx - ring;
                while gx <= cx + ring {
                    if (0..side).contains(&gx) {
                        for &(px, py, item) in &self.cells[(gy * side + gx) as usize] {
                            if (px - x).powi(2) + (py - y).powi(2) <= r2 {
                                out.push((px, py, item));
                                if out.len() == limit {
                                    return;
                                }
                            }
                        }
                    }
                    gx += step;
                }
            }
        }
    }
}

/// Frames since start, counted in `First`: lets per-frame caches know when they are stale.
#[derive(Resource, Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCount(pub u64);

fn count_frames(mut frames: ResMut<FrameCount>) {
    frames.0 += 1;
}

/// Every player's position in a [`SpatialGrid`], rebuilt at most once per frame and only in
/// frames where someone asks (a game that never asks pays nothing).
#[derive(Resource)]
pub struct SpatialIndex {
    state: Mutex<IndexState>,
}

struct IndexState {
    built_in: Option<u64>,
    grid: SpatialGrid<(Entity, PlayerId)>,
    /// The grid's answer to the last query, kept to reuse its allocation.
    found: Vec<(f32, f32, (Entity, PlayerId))>,
}

impl SpatialIndex {
    /// An index with cells of side `cell` over `[-half_extent, half_extent]²` (positions
    /// outside land in the edge cells: still found, only slower to search).
    pub fn new(cell: f32, half_extent: f32) -> Self {
        Self {
            state: Mutex::new(IndexState {
                built_in: None,
                grid: SpatialGrid::new(cell, half_extent),
                found: Vec::new(),
            }),
        }
    }
}

/// Who is near a point: players (entity, id, position) within a radius, from the world's
/// [`SpatialIndex`] as of this frame.
#[derive(SystemParam)]
pub struct NearbyPlayers<'w, 's> {
    index: Res<'w, SpatialIndex>,
    frame: Res<'w, FrameCount>,
    players: Query<'w, 's, (Entity, &'static PlayerId, &'static Position)>,
}

/// One player found near a point.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nearby {
    pub entity: Entity,
    pub player: PlayerId,
    pub x: f32,
    pub y: f32,
}

impl NearbyPlayers<'_, '_> {
    /// Players within `radius` of `(x, y)`, at most `limit`, into `out` (cleared first).
    pub fn near(&self, x: f32, y: f32, radius: f32, limit: usize, out: &mut Vec<Nearby>) {
        let mut state = self.index.state.lock().unwrap_or_else(|p| p.into_inner());
        let IndexState {
            built_in,
            grid,
            found,
        } = &mut *state;
        if *built_in != Some(self.frame.0) {
            grid.clear();
            for (entity, player, p) in &self.players {
                grid.insert(p.x, p.y, (entity, *player));
            }
            *built_in = Some(self.frame.0);
        }
        grid.near(x, y, radius, limit, found);
        out.clear();
        out.extend(found.iter().map(|&(x, y, (entity, player))| Nearby {
            entity,
            player,
            x,
            y,
        }));
    }
}

/// The world's spatial index of players. Cell size and extent are the plugin's fields
/// (defaults: 50-unit cells over a 2,000-unit square).
pub struct SpatialPlugin {
    /// Side of a cell: best near the radius most queries use.
    pub cell: f32,
    /// Half the side of the square the grid covers.
    pub half_extent: f32,
}

impl Default for SpatialPlugin {
    fn default() -> Self {
        Self {
            cell: 50.0,
            half_extent: 1000.0,
        }
    }
}

impl Plugin for SpatialPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<FrameCount>()
            .insert_resource(SpatialIndex::new(self.cell, self.half_extent))
            .add_systems(First, count_frames);
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

    #[test]
    fn nearest_first_visits_rings_outward_and_stops_at_the_limit() {
        let mut grid = SpatialGrid::new(10.0, 1000.0);
        grid.insert(25.0, 0.0, 3); // two rings out
        grid.insert(15.0, 15.0, 2); // one ring out, a corner
        grid.insert(1.0, 1.0, 1); // the point's own cell
        grid.insert(-14.0, 2.0, 2); // one ring out, a side
        grid.insert(100.0, 0.0, 9); // beyond the radius
        let mut out = Vec::new();
        grid.nearest_first(1.0, 1.0, 30.0, usize::MAX, &mut out);
        let rings: Vec<i32> = out.iter().map(|e| e.2).collect();
        assert_eq!(rings.len(), 4, "{rings:?}");
        assert!(rings.windows(2).all(|w| w[0] <= w[1]), "{rings:?}");
        grid.nearest_first(1.0, 1.0, 30.0, 2, &mut out);
        assert_eq!(out.iter().map(|e| e.2).collect::<Vec<_>>(), [1, 2]);
    }

    #[test]
    fn a_radius_wider_than_a_cell_searches_as_many_rings_as_it_spans() {
        let mut grid = SpatialGrid::new(10.0, 1000.0);
        grid.insert(0.0, 0.0, 1);
        grid.insert(35.0, 0.0, 2);
        grid.insert(0.0, -49.0, 3);
        grid.insert(80.0, 0.0, 4);
        let mut out = Vec::new();
        grid.near(0.0, 0.0, 50.0, usize::MAX, &mut out);
        let mut ids: Vec<i32> = out.iter().map(|e| e.2).collect();
        ids.sort();
        assert_eq!(ids, vec![1, 2, 3]);
    }
}
