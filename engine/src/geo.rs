//! The geo index for reverse queries, and the geodesy it needs.
//!
//! Points are bucketed in a regular grid of `CELL_DEG` degrees and sorted by
//! cell; the whole index is one rkyv archive, memory-mapped and read in place.
//! A query walks rings of cells outwards from the point until no unvisited
//! cell can hold anything nearer than what it already has.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use memmap2::Mmap;
use rkyv::{Archive, Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::record::Point;

const CELL_DEG: f64 = 0.01;
/// Rings searched at most: ~200 km in latitude. Beyond that nothing is "near".
const MAX_RINGS: i64 = 200;
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres.
pub fn haversine_m(a: Point, b: Point) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Projects WGS84 degrees to Lambert-93 (EPSG:2154) metres, the x/y Addok
/// reports. GRS80 and WGS84 differ by less than a millimetre here.
pub fn lambert93(p: Point) -> (f64, f64) {
    const N: f64 = 0.725_607_765_053_267;
    const C: f64 = 11_754_255.426_096;
    const XS: f64 = 700_000.0;
    const YS: f64 = 12_655_612.049_876;
    const E: f64 = 0.081_819_191_042_815_79;
    let phi = p.lat.to_radians();
    let es = E * phi.sin();
    let l = ((std::f64::consts::FRAC_PI_4 + phi / 2.0).tan() * ((1.0 - es) / (1.0 + es)).powf(E / 2.0)).ln();
    let r = C * (-N * l).exp();
    let gamma = N * (p.lon - 3.0).to_radians();
    let round2 = |v: f64| (v * 100.0).round() / 100.0;
    (round2(XS + r * gamma.sin()), round2(YS - r * gamma.cos()))
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy)]
struct GeoPoint {
    lat: f64,
    lon: f64,
    slot: u32,
}

#[derive(Archive, Serialize, Deserialize, Debug, Default)]
struct GeoIndexData {
    /// Sorted cell keys.
    cells: Vec<u64>,
    /// `points[starts[i]..starts[i + 1]]` are in `cells[i]`.
    starts: Vec<u32>,
    points: Vec<GeoPoint>,
}

fn cell_of(lat: f64, lon: f64) -> (i64, i64) {
    ((lat / CELL_DEG).floor() as i64, (lon / CELL_DEG).floor() as i64)
}

fn cell_key(ci: i64, cj: i64) -> u64 {
    (((ci + 100_000) as u64) << 32) | ((cj + 100_000) as u64 & 0xffff_ffff)
}

/// Collects points, then writes the index file.
#[derive(Default)]
pub struct GeoBuilder {
    points: Vec<(u64, GeoPoint)>,
}

impl GeoBuilder {
    pub fn add(&mut self, p: Point, slot: u32) {
        if !p.is_valid() {
            return;
        }
        let (ci, cj) = cell_of(p.lat, p.lon);
        self.points.push((cell_key(ci, cj), GeoPoint { lat: p.lat, lon: p.lon, slot }));
    }

    pub fn write(mut self, path: &Path) -> Result<()> {
        self.points.sort_by_key(|(k, p)| (*k, p.slot));
        let mut data = GeoIndexData::default();
        for (i, (k, _)) in self.points.iter().enumerate() {
            if data.cells.last() != Some(k) {
                data.cells.push(*k);
                data.starts.push(i as u32);
            }
        }
        data.starts.push(self.points.len() as u32);
        data.points = self.points.into_iter().map(|(_, p)| p).collect();
        let bytes =
            rkyv::to_bytes::<rkyv::rancor::Error>(&data).map_err(|e| Error::Store(format!("geo index: {e}")))?;
        let mut f = File::create(path).map_err(|e| Error::io(path, e))?;
        f.write_all(&bytes).map_err(|e| Error::io(path, e))?;
        f.sync_all().map_err(|e| Error::io(path, e))
    }
}

/// A memory-mapped geo index.
pub struct GeoIndex {
    map: Mmap,
}

impl GeoIndex {
    pub fn open(path: &Path) -> Result<GeoIndex> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // SAFETY: generation files are never modified once written; a new
        // generation writes new files.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        // Validate once, so that every later access can skip the checks.
        let data = rkyv::access::<ArchivedGeoIndexData, rkyv::rancor::Error>(&map)
            .map_err(|e| Error::Corrupt { path: path.into(), reason: e.to_string() })?;
        let (nc, ns, np) = (data.cells.len(), data.starts.len(), data.points.len());
        let decreasing = data.starts.windows(2).any(|w| w[0].to_native() > w[1].to_native());
        if ns != nc + 1 || decreasing || data.starts.iter().any(|s| s.to_native() as usize > np) {
            return Err(Error::Corrupt { path: path.into(), reason: "inconsistent cell table".into() });
        }
        Ok(GeoIndex { map })
    }

    fn data(&self) -> &ArchivedGeoIndexData {
        // SAFETY: validated in `open`, and the mapping is immutable.
        unsafe { rkyv::access_unchecked::<ArchivedGeoIndexData>(&self.map) }
    }

    /// The largest slot the index refers to, to check it against the documents.
    pub fn max_slot(&self) -> Option<u32> {
        self.data().points.iter().map(|p| p.slot.to_native()).max()
    }

    /// Some indexed point and its slot: a query there finds it in the
    /// first cell.
    pub fn any_point(&self) -> Option<(Point, u32)> {
        self.data()
            .points
            .first()
            .map(|p| (Point { lat: p.lat.to_native(), lon: p.lon.to_native() }, p.slot.to_native()))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.data().points.len()
    }

    /// The `k` nearest points accepted by `keep`, nearest first, as
    /// (slot, distance in metres). Several points may share a slot.
    pub fn nearest(&self, at: Point, k: usize, mut keep: impl FnMut(u32) -> bool) -> Vec<(u32, f64)> {
        let data = self.data();
        if k == 0 || data.points.is_empty() || !at.is_valid() {
            return Vec::new();
        }
        let (ci, cj) = cell_of(at.lat, at.lon);
        // The smallest extent of a cell near this latitude, to know when the
        // next ring cannot hold anything nearer.
        let lat_m = CELL_DEG.to_radians() * EARTH_RADIUS_M;
        let lon_m = lat_m * (at.lat.abs() + 2.0).min(89.9).to_radians().cos();
        let cell_min_m = lat_m.min(lon_m);
        // Points are compared by a flat-earth squared distance, exact enough
        // within the few kilometres a search looks at and a tenth of the
        // cost of haversine; only the k kept get their true distance.
        let cos_lat = at.lat.to_radians().cos();
        let m_per_deg = EARTH_RADIUS_M.to_radians();
        let flat = |lat: f64, lon: f64| {
            let (dy, dx) = (lat - at.lat, (lon - at.lon) * cos_lat);
            dy * dy + dx * dx
        };
        let mut found: Vec<(u32, f64, Point)> = Vec::new();
        // The k-th smallest distance seen so far, once k points are sorted.
        let mut bound = f64::INFINITY;
        let trim = |found: &mut Vec<(u32, f64, Point)>, bound: &mut f64| {
            found.sort_by(|a, b| a.1.total_cmp(&b.1));
            found.truncate(k);
            if found.len() == k {
                *bound = found[k - 1].1;
            }
        };
        for r in 0..=MAX_RINGS {
            for (di, dj) in ring(r) {
                let key = cell_key(ci + di, cj + dj);
                let Ok(c) = data.cells.binary_search_by(|x| x.to_native().cmp(&key)) else {
                    continue;
                };
                let (s, e) = (data.starts[c].to_native() as usize, data.starts[c + 1].to_native() as usize);
                for p in &data.points[s..e] {
                    let (lat, lon) = (p.lat.to_native(), p.lon.to_native());
                    let d2 = flat(lat, lon);
                    if d2 >= bound {
                        continue;
                    }
                    let slot = p.slot.to_native();
                    if !keep(slot) {
                        continue;
                    }
                    found.push((slot, d2, Point { lat, lon }));
                    if found.len() >= 4 * k.max(8) {
                        trim(&mut found, &mut bound);
                    }
                }
            }
            trim(&mut found, &mut bound);
            if found.len() == k && bound.sqrt() * m_per_deg <= r as f64 * cell_min_m {
                break;
            }
        }
        found.into_iter().map(|(slot, _, p)| (slot, haversine_m(at, p))).collect()
    }
}

/// Cell offsets on the square ring at Chebyshev distance `r`.
fn ring(r: i64) -> Vec<(i64, i64)> {
    if r == 0 {
        return vec![(0, 0)];
    }
    let mut v = Vec::with_capacity(8 * r as usize);
    for d in -r..=r {
        v.push((-r, d));
        v.push((r, d));
    }
    for d in -r + 1..r {
        v.push((d, -r));
        v.push((d, r));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambert93_matches_ban() {
        // Cholet as published by BAN: x 405648.8, y 6669321.95.
        let (x, y) = lambert93(Point { lat: 47.05905, lon: -0.87953 });
        assert!((x - 405_648.8).abs() < 1.0, "{x}");
        assert!((y - 6_669_321.95).abs() < 1.0, "{y}");
    }

    #[test]
    fn haversine_known_distance() {
        // Paris Notre-Dame to Lyon Bellecour: ~392 km.
        let d = haversine_m(Point { lat: 48.8530, lon: 2.3499 }, Point { lat: 45.7578, lon: 4.8320 });
        assert!((d - 392_000.0).abs() < 3_000.0, "{d}");
    }

    #[test]
    fn nearest_walks_rings_and_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo");
        let mut b = GeoBuilder::default();
        b.add(Point { lat: 45.0, lon: 5.0 }, 0);
        b.add(Point { lat: 45.001, lon: 5.0 }, 1);
        b.add(Point { lat: 45.5, lon: 5.5 }, 2);
        b.add(Point { lat: 95.0, lon: 5.5 }, 3); // invalid, dropped
        b.write(&path).unwrap();
        let g = GeoIndex::open(&path).unwrap();
        assert_eq!(g.len(), 3);
        let at = Point { lat: 45.0009, lon: 5.0 };
        let n = g.nearest(at, 2, |_| true);
        assert_eq!(n.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 0]);
        let far = g.nearest(at, 1, |s| s == 2);
        assert_eq!(far[0].0, 2);
        assert!((far[0].1 - 68_000.0).abs() < 5_000.0);
    }

    #[test]
    fn corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo");
        std::fs::write(&path, b"not an index at all, just bytes").unwrap();
        assert!(matches!(GeoIndex::open(&path), Err(Error::Corrupt { .. })));
    }
}
