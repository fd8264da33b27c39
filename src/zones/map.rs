//! The zone map: one world cut into named rectangles, one file that every process of the world
//! shares (`--zones FILE`). Rectangles are half-open, `min <= p < max` on each axis, so a
//! point on a border between two zones belongs to the one whose `min` includes it; only the
//! world's own outer `max` edge is closed (it belongs to the zone touching it), so every point
//! of the world is in exactly one zone.
//!
//! ```toml
//! [[zone]]
//! name = "west"
//! min = [-1000, -1000]
//! max = [0, 1000]
//!
//! [[zone]]
//! name = "east"
//! min = [0, -1000]
//! max = [1000, 1000]
//! ```

use std::path::Path;

use serde::Deserialize;

/// One zone: a name and the rectangle it covers.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    /// The zone's name, unique in the map (`--zone NAME` picks it).
    pub name: String,
    /// The corner with the smallest coordinates (included).
    pub min: [f32; 2],
    /// The corner with the largest coordinates (excluded, but for the world's outer edge).
    pub max: [f32; 2],
}

impl Zone {
    /// Whether `point` is in this zone: `min <= p < max`, or on `max` where that edge is the
    /// world's (no zone starts there).
    fn holds(&self, point: [f32; 2], world_max: [f32; 2]) -> bool {
        (0..2).all(|i| {
            self.min[i] <= point[i]
                && (point[i] < self.max[i]
                    || (point[i] == self.max[i] && self.max[i] == world_max[i]))
        })
    }

    fn overlaps(&self, other: &Zone) -> bool {
        (0..2).all(|i| self.min[i] < other.max[i] && other.min[i] < self.max[i])
    }

    fn area(&self) -> f64 {
        (0..2)
            .map(|i| f64::from(self.max[i]) - f64::from(self.min[i]))
            .product()
    }
}

/// A checked zone map: at least one zone, unique names, finite rectangles with `min < max`,
/// no two overlapping, together covering their bounding box (no holes a player could walk
/// into and belong nowhere).
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneMap {
    zones: Vec<Zone>,
    /// The world's bounding box (the union of the zones).
    min: [f32; 2],
    max: [f32; 2],
}

/// Why a zone map was refused.
#[derive(Debug, thiserror::Error)]
pub enum ZoneMapError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("not a zone map: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("a zone map needs at least one [[zone]]")]
    Empty,
    #[error("zone {name:?}: {reason}")]
    Zone { name: String, reason: String },
    #[error("zones {0:?} and {1:?} overlap")]
    Overlap(String, String),
    #[error(
        "the zones leave holes in the world [{:?}, {:?}] (they cover {covered} of its area {area}): every point must be in a zone",
        min,
        max
    )]
    Holes {
        min: [f32; 2],
        max: [f32; 2],
        covered: f64,
        area: f64,
    },
}

/// The file's shape.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    zone: Vec<Zone>,
}

impl ZoneMap {
    /// Reads and checks the map in `path`.
    pub fn load(path: &Path) -> Result<Self, ZoneMapError> {
        let text = std::fs::read_to_string(path).map_err(|source| ZoneMapError::Read {
            path: path.display().to_string(),
            source,
        })?;
        text.parse()
    }

    /// The zones, in the file's order.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zone named `name`.
    pub fn zone(&self, name: &str) -> Option<&Zone> {
        self.zones.iter().find(|zone| zone.name == name)
    }

    /// The zone `(x, y)` is in; `None` outside the world (or for a NaN coordinate).
    pub fn zone_at(&self, x: f32, y: f32) -> Option<&Zone> {
        self.zones.iter().find(|zone| zone.holds([x, y], self.max))
    }

    /// A fingerprint of the map (its zones' names and rectangles, in order: BLAKE2b-256,
    /// 16 hex digits), registered with the zone: every process of a world must read the same
    /// map, and one that meets a neighbour registered with another fingerprint refuses to
    /// hand players to it.
    pub fn digest(&self) -> String {
        use blake2::{Blake2b, Digest, digest::consts::U32};
        let mut hasher = Blake2b::<U32>::new();
        for zone in &self.zones {
            hasher.update(zone.name.as_bytes());
            for v in zone.min.iter().chain(&zone.max) {
                hasher.update(v.to_le_bytes());
            }
            hasher.update([0]);
        }
        hasher.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The world's bounding box, `(min, max)`.
    pub fn bounds(&self) -> ([f32; 2], [f32; 2]) {
        (self.min, self.max)
    }

    fn check(zones: Vec<Zone>) -> Result<Self, ZoneMapError> {
        if zones.is_empty() {
            return Err(ZoneMapError::Empty);
        }
        for (i, zone) in zones.iter().enumerate() {
            let refuse = |reason: &str| ZoneMapError::Zone {
                name: zone.name.clone(),
                reason: reason.to_string(),
            };
            if zone.name.is_empty()
                || zone.name.len() > 64
                || !zone
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
            {
                return Err(refuse("a name must be 1-64 characters of [A-Za-z0-9_-.]"));
            }
            if zones[..i].iter().any(|other| other.name == zone.name) {
                return Err(refuse("named twice"));
            }
            if !zone.min.iter().chain(&zone.max).all(|v| v.is_finite()) {
                return Err(refuse("coordinates must be finite numbers"));
            }
            if !(zone.min[0] < zone.max[0] && zone.min[1] < zone.max[1]) {
                return Err(refuse("min must be below max on both axes"));
            }
            if let Some(other) = zones[..i].iter().find(|other| other.overlaps(zone)) {
                return Err(ZoneMapError::Overlap(other.name.clone(), zone.name.clone()));
            }
        }
        let min = [0, 1].map(|i| zones.iter().map(|z| z.min[i]).fold(f32::INFINITY, f32::min));
        let max = [0, 1].map(|i| {
            zones
                .iter()
                .map(|z| z.max[i])
                .fold(f32::NEG_INFINITY, f32::max)
        });
        // Disjoint rectangles inside the box cover it exactly when their areas add up to it.
        let area = (0..2)
            .map(|i| f64::from(max[i]) - f64::from(min[i]))
            .product::<f64>();
        let covered: f64 = zones.iter().map(Zone::area).sum();
        if (area - covered).abs() > area * 1e-9 {
            return Err(ZoneMapError::Holes {
                min,
                max,
                covered,
                area,
            });
        }
        Ok(Self { zones, min, max })
    }
}

impl std::str::FromStr for ZoneMap {
    type Err = ZoneMapError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let file: File = toml::from_str(text)?;
        Self::check(file.zone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &str = r#"
        [[zone]]
        name = "west"
        min = [-1000, -1000]
        max = [0, 1000]

        [[zone]]
        name = "east"
        min = [0, -1000]
        max = [1000, 1000]
    "#;

    fn name_at(map: &ZoneMap, x: f32, y: f32) -> Option<&str> {
        map.zone_at(x, y).map(|zone| zone.name.as_str())
    }

    #[test]
    fn a_point_on_a_border_belongs_to_the_zone_whose_min_includes_it() {
        let map: ZoneMap = TWO.parse().unwrap();
        assert_eq!(name_at(&map, -0.001, 0.0), Some("west"));
        assert_eq!(name_at(&map, 0.0, 0.0), Some("east"));
        assert_eq!(name_at(&map, -1000.0, -1000.0), Some("west"));
        // The world's outer edge is in the zone touching it.
        assert_eq!(name_at(&map, 1000.0, 1000.0), Some("east"));
        assert_eq!(name_at(&map, -1000.0, 1000.0), Some("west"));
        assert_eq!(name_at(&map, 1000.1, 0.0), None);
        assert_eq!(name_at(&map, f32::NAN, 0.0), None);
        assert_eq!(map.bounds(), ([-1000.0, -1000.0], [1000.0, 1000.0]));
        assert_eq!(map.zone("east").unwrap().min, [0.0, -1000.0]);
    }

    #[test]
    fn every_point_of_a_grid_of_four_is_in_exactly_one_zone() {
        let map: ZoneMap = r#"
            [[zone]]
            name = "sw"
            min = [-10, -10]
            max = [0, 0]
            [[zone]]
            name = "se"
            min = [0, -10]
            max = [10, 0]
            [[zone]]
            name = "nw"
            min = [-10, 0]
            max = [0, 10]
            [[zone]]
            name = "ne"
            min = [0, 0]
            max = [10, 10]
        "#
        .parse()
        .unwrap();
        for x in -20..=20 {
            for y in -20..=20 {
                let p = [x as f32 / 2.0, y as f32 / 2.0];
                let holding = map.zones().iter().filter(|z| z.holds(p, map.max)).count();
                assert_eq!(holding, 1, "{p:?}");
            }
        }
        assert_eq!(name_at(&map, 0.0, 0.0), Some("ne"));
        assert_eq!(name_at(&map, -0.5, 0.0), Some("nw"));
    }

    #[test]
    fn the_fingerprint_changes_with_any_zone_and_only_then() {
        let map: ZoneMap = TWO.parse().unwrap();
        assert_eq!(map.digest(), TWO.parse::<ZoneMap>().unwrap().digest());
        assert_eq!(map.digest().len(), 16);
        let moved = TWO
            .replacen("0, 1000]", "1, 1000]", 1)
            .replacen("[0, -1000]", "[1, -1000]", 1);
        let moved: ZoneMap = moved.parse().unwrap();
        assert_ne!(moved, map, "the border moved");
        assert_ne!(moved.digest(), map.digest());
    }

    #[test]
    fn the_example_map_in_assets_is_valid() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/zones.toml");
        let map = ZoneMap::load(Path::new(path)).unwrap();
        assert_eq!(map.bounds(), ([-1000.0, -1000.0], [1000.0, 1000.0]));
        assert_eq!(map.zone_at(-1.0, 0.0).unwrap().name, "west");
    }

    #[test]
    fn bad_maps_are_refused_saying_why() {
        let cases = [
            ("", "at least one"),
            (
                "[[zone]]\nname = \"a\"\nmin = [0, 0]\nmax = [0, 1]\n",
                "min must be below max",
            ),
            (
                "[[zone]]\nname = \"a b\"\nmin = [0, 0]\nmax = [1, 1]\n",
                "a name must be",
            ),
            (
                "[[zone]]\nname = \"a\"\nmin = [0, 0]\nmax = [1, 1]\ncolour = 1\n",
                "unknown field",
            ),
            (
                "[[zone]]\nname = \"a\"\nmin = [0, 0]\nmax = [2, 2]\n[[zone]]\nname = \"b\"\nmin = [1, 1]\nmax = [3, 3]\n",
                "overlap",
            ),
            (
                "[[zone]]\nname = \"a\"\nmin = [0, 0]\nmax = [1, 1]\n[[zone]]\nname = \"a\"\nmin = [1, 0]\nmax = [2, 1]\n",
                "named twice",
            ),
            (
                "[[zone]]\nname = \"a\"\nmin = [0, 0]\nmax = [1, 1]\n[[zone]]\nname = \"b\"\nmin = [1, 1]\nmax = [2, 2]\n",
                "holes",
            ),
            (
                "[[zone]]\nname = \"a\"\nmin = [0]\nmax = [1, 1]\n",
                "not a zone map",
            ),
        ];
        for (text, expected) in cases {
            let error = text.parse::<ZoneMap>().unwrap_err().to_string();
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }
}
