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

/// ~280 m by ~190 m in France: a reverse query near an address reads a few
/// dozen points. Files written before it used `OLD_CELL_DEG`; `open` tells
/// them apart by checking that every point lies in its cell.
const CELL_DEG: f64 = 0.0025;
const OLD_CELL_DEG: f64 = 0.01;
/// How far a query looks, in degrees of latitude (~200 km). Beyond that
/// nothing is "near".
const MAX_REACH_DEG: f64 = 2.0;
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

fn cell_of(lat: f64, lon: f64, deg: f64) -> (i64, i64) {
    ((lat / deg).floor() as i64, (lon / deg).floor() as i64)
}

/// Cell keys sort by row (latitude), then by column: the cells of a row
/// are contiguous.
fn cell_key(ci: i64, cj: i64) -> u64 {
    ((row_of(ci) as u64) << 32) | col_of(cj) as u64
}

fn row_of(ci: i64) -> u32 {
    (ci + 100_000) as u32
}

fn col_of(cj: i64) -> u32 {
    (cj + 100_000) as u32
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
        let (ci, cj) = cell_of(p.lat, p.lon, CELL_DEG);
        self.points.push((cell_key(ci, cj), GeoPoint { lat: p.lat, lon: p.lon, slot }));
    }

    pub fn write(mut self, path: &Path) -> Result<()> {
        // By cell, then by latitude within a cell (see `nearest`).
        self.points.sort_by(|(ka, a), (kb, b)| ka.cmp(kb).then(a.lat.total_cmp(&b.lat)).then(a.slot.cmp(&b.slot)));
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
    /// Whether each cell's points are sorted by latitude, as this version
    /// writes them; files from older versions are read by a full cell scan.
    lat_sorted: bool,
    /// The grid's cell size in degrees.
    cell_deg: f64,
    /// `rows[i]..rows[i + 1]` are the cells of row `first_row + i`: a query
    /// finds a row without a binary search over all cells, which at 1M
    /// points cost a cache miss per step.
    first_row: u32,
    rows: Vec<u32>,
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
        // Starts strictly increasing: no cell is empty, so cell keys stay
        // near the points' coordinates, and so does the row table below.
        let not_increasing = data.starts.windows(2).any(|w| w[0].to_native() >= w[1].to_native());
        if ns != nc + 1 || not_increasing || data.starts.iter().any(|s| s.to_native() as usize > np) {
            return Err(Error::Corrupt { path: path.into(), reason: "inconsistent cell table".into() });
        }
        let lat_sorted = data.starts.windows(2).all(|w| {
            let cell = &data.points[w[0].to_native() as usize..w[1].to_native() as usize];
            cell.windows(2).all(|p| p[0].lat.to_native() <= p[1].lat.to_native())
        });
        let increasing = data.cells.windows(2).all(|w| w[0].to_native() < w[1].to_native());
        if !increasing {
            return Err(Error::Corrupt { path: path.into(), reason: "cells out of order".into() });
        }
        if !data.points.iter().all(|p| Point { lat: p.lat.to_native(), lon: p.lon.to_native() }.is_valid()) {
            return Err(Error::Corrupt { path: path.into(), reason: "invalid point".into() });
        }
        let in_grid = |deg: f64| {
            data.starts.windows(2).zip(data.cells.iter()).all(|(w, c)| {
                data.points[w[0].to_native() as usize..w[1].to_native() as usize].iter().all(|p| {
                    let (ci, cj) = cell_of(p.lat.to_native(), p.lon.to_native(), deg);
                    cell_key(ci, cj) == c.to_native()
                })
            })
        };
        let cell_deg = if in_grid(CELL_DEG) {
            CELL_DEG
        } else if in_grid(OLD_CELL_DEG) {
            OLD_CELL_DEG
        } else {
            return Err(Error::Corrupt { path: path.into(), reason: "points outside their cells".into() });
        };
        let row = |c: &rkyv::rend::u64_le| (c.to_native() >> 32) as u32;
        let (first_row, last_row) = match (data.cells.first(), data.cells.last()) {
            (Some(f), Some(l)) => (row(f), row(l)),
            _ => (0, 0),
        };
        let mut rows = Vec::with_capacity((last_row - first_row) as usize + 2);
        let mut next = first_row;
        for (i, c) in data.cells.iter().enumerate() {
            while next <= row(c) {
                rows.push(i as u32);
                next += 1;
            }
        }
        rows.push(data.cells.len() as u32);
        Ok(GeoIndex { map, lat_sorted, cell_deg, first_row, rows })
    }

    /// The range of `cells` in row `ci`, if it has any.
    fn row(&self, ci: i64) -> Option<(usize, usize)> {
        let i = row_of(ci).checked_sub(self.first_row)? as usize;
        let (a, b) = (*self.rows.get(i)? as usize, *self.rows.get(i + 1)? as usize);
        (a < b).then_some((a, b))
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
    pub fn nearest(&self, at: Point, k: usize, keep: impl FnMut(u32) -> bool) -> Vec<(u32, f64)> {
        self.nearest_within(at, k, f64::INFINITY, keep)
    }

    /// [`GeoIndex::nearest`], looking no further than about `reach_m`
    /// metres: a filter that takes few points then does not walk every
    /// cell of the search's 2° reach.
    pub fn nearest_within(
        &self,
        at: Point,
        k: usize,
        reach_m: f64,
        mut keep: impl FnMut(u32) -> bool,
    ) -> Vec<(u32, f64)> {
        let data = self.data();
        if k == 0 || data.points.is_empty() || !at.is_valid() {
            return Vec::new();
        }
        let deg = self.cell_deg;
        let (ci, cj) = cell_of(at.lat, at.lon, deg);
        // The smallest extent of a cell near this latitude, to know when the
        // next ring cannot hold anything nearer.
        let lat_m = deg.to_radians() * EARTH_RADIUS_M;
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
        // The k nearest so far, ordered by (distance, slot) so that ties
        // resolve the same whatever order the points are visited in.
        let mut found: Vec<(f64, u32, Point)> = Vec::with_capacity(k.min(data.points.len()) + 1);
        let mut offer = |found: &mut Vec<(f64, u32, Point)>, d2: f64, p: &ArchivedGeoPoint| {
            let slot = p.slot.to_native();
            if found.len() == k && (d2, slot) >= (found[k - 1].0, found[k - 1].1) {
                return;
            }
            if !keep(slot) {
                return;
            }
            let at = found.partition_point(|f| (f.0, f.1) < (d2, slot));
            found.insert(at, (d2, slot, Point { lat: p.lat.to_native(), lon: p.lon.to_native() }));
            found.truncate(k);
        };
        // Squared flat distance of the k-th nearest, infinite until k are found.
        let bound = |found: &Vec<(f64, u32, Point)>| if found.len() == k { found[k - 1].0 } else { f64::INFINITY };
        let mut scan = |found: &mut Vec<(f64, u32, Point)>, c: usize| {
            let (s, e) = (data.starts[c].to_native() as usize, data.starts[c + 1].to_native() as usize);
            let points = &data.points[s..e];
            if !self.lat_sorted {
                for p in points {
                    let d2 = flat(p.lat.to_native(), p.lon.to_native());
                    if d2 <= bound(found) {
                        offer(found, d2, p);
                    }
                }
                return;
            }
            // A cell's points are sorted by latitude: walk away from the
            // query's latitude both ways, each way until the latitude gap
            // alone exceeds the k-th distance.
            let mid = points.partition_point(|p| p.lat.to_native() < at.lat);
            for p in &points[mid..] {
                let dy = p.lat.to_native() - at.lat;
                if dy * dy > bound(found) {
                    break;
                }
                offer(found, flat(p.lat.to_native(), p.lon.to_native()), p);
            }
            for p in points[..mid].iter().rev() {
                let dy = at.lat - p.lat.to_native();
                if dy * dy > bound(found) {
                    break;
                }
                offer(found, flat(p.lat.to_native(), p.lon.to_native()), p);
            }
        };
        let col = |c: usize| data.cells[c].to_native() as u32;
        // Ring r holds only points at least (r - 1) cells away.
        let rings = ((MAX_REACH_DEG / deg) as i64).min((reach_m / cell_min_m).ceil().min(1e9) as i64 + 1);
        for r in 0..=rings {
            // Ring r: the whole first and last rows, the two end cells of
            // the rows between. A row's cells are contiguous in key order.
            let (lo, hi) = (col_of(cj - r), col_of(cj + r));
            for di in -r..=r {
                let Some((a, b)) = self.row(ci + di) else { continue };
                let mut c = a + data.cells[a..b].partition_point(|x| (x.to_native() as u32) < lo);
                if di.abs() == r {
                    while c < b && col(c) <= hi {
                        scan(&mut found, c);
                        c += 1;
                    }
                } else {
                    if c < b && col(c) == lo {
                        scan(&mut found, c);
                    }
                    if r > 0 {
                        let c = c + data.cells[c..b].partition_point(|x| (x.to_native() as u32) < hi);
                        if c < b && col(c) == hi {
                            scan(&mut found, c);
                        }
                    }
                }
            }
            if found.len() == k && bound(&found).sqrt() * m_per_deg < r as f64 * cell_min_m {
                break;
            }
        }
        found.into_iter().map(|(_, slot, p)| (slot, haversine_m(at, p))).filter(|(_, d)| *d <= reach_m).collect()
    }
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

    /// Random points in dense clusters and sparse noise, for comparing
    /// `nearest` with a scan of every point.
    fn random_points(n: usize, seed: u64) -> Vec<Point> {
        let mut x = seed;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let centres: Vec<Point> =
            (0..8).map(|_| Point { lat: 45.0 + next() * 4.0, lon: -1.0 + next() * 6.0 }).collect();
        (0..n)
            .map(|i| {
                if i % 5 == 0 {
                    Point { lat: 44.0 + next() * 6.0, lon: -2.0 + next() * 8.0 }
                } else {
                    let c = centres[i % centres.len()];
                    Point { lat: c.lat + (next() - 0.5) * 0.05, lon: c.lon + (next() - 0.5) * 0.05 }
                }
            })
            .collect()
    }

    /// The k nearest kept points by the same flat metric and tie order as
    /// `nearest`, by looking at all of them.
    fn brute(points: &[Point], at: Point, k: usize, keep: impl Fn(u32) -> bool) -> Vec<u32> {
        let cos_lat = at.lat.to_radians().cos();
        let mut all: Vec<(f64, u32)> = points
            .iter()
            .enumerate()
            .filter(|(i, _)| keep(*i as u32))
            .map(|(i, p)| {
                let (dy, dx) = (p.lat - at.lat, (p.lon - at.lon) * cos_lat);
                (dy * dy + dx * dx, i as u32)
            })
            .collect();
        all.sort_by(|a, b| a.partial_cmp(b).unwrap());
        all.into_iter().take(k).map(|(_, s)| s).collect()
    }

    fn check_against_brute(g: &GeoIndex, points: &[Point], seed: u64) {
        let queries = random_points(300, seed);
        for (i, at) in queries.iter().enumerate() {
            let k = [1, 3, 10][i % 3];
            let got: Vec<u32> = g.nearest(*at, k, |_| true).into_iter().map(|x| x.0).collect();
            assert_eq!(got, brute(points, *at, k, |_| true), "query {i} at {at:?}, k {k}");
            let odd = |s: u32| s % 2 == 1;
            let got: Vec<u32> = g.nearest(*at, k, odd).into_iter().map(|x| x.0).collect();
            assert_eq!(got, brute(points, *at, k, odd), "filtered query {i} at {at:?}, k {k}");
        }
    }

    #[test]
    fn nearest_agrees_with_a_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo");
        let points = random_points(20_000, 7);
        let mut b = GeoBuilder::default();
        for (slot, p) in points.iter().enumerate() {
            b.add(*p, slot as u32);
        }
        b.write(&path).unwrap();
        let g = GeoIndex::open(&path).unwrap();
        assert_eq!((g.cell_deg, g.lat_sorted), (CELL_DEG, true));
        check_against_brute(&g, &points, 99);
    }

    #[test]
    fn files_of_the_older_grid_are_still_read() {
        // The layout written before the grid was made finer: 0.01 degree
        // cells, points in slot order within a cell.
        let points = random_points(20_000, 11);
        let mut keyed: Vec<(u64, GeoPoint)> = points
            .iter()
            .enumerate()
            .map(|(slot, p)| {
                let (ci, cj) = cell_of(p.lat, p.lon, OLD_CELL_DEG);
                (cell_key(ci, cj), GeoPoint { lat: p.lat, lon: p.lon, slot: slot as u32 })
            })
            .collect();
        keyed.sort_by_key(|(k, p)| (*k, p.slot));
        let mut data = GeoIndexData::default();
        for (i, (k, _)) in keyed.iter().enumerate() {
            if data.cells.last() != Some(k) {
                data.cells.push(*k);
                data.starts.push(i as u32);
            }
        }
        data.starts.push(keyed.len() as u32);
        data.points = keyed.into_iter().map(|(_, p)| p).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo");
        std::fs::write(&path, rkyv::to_bytes::<rkyv::rancor::Error>(&data).unwrap()).unwrap();
        let g = GeoIndex::open(&path).unwrap();
        assert_eq!((g.cell_deg, g.lat_sorted), (OLD_CELL_DEG, false));
        check_against_brute(&g, &points, 5);
    }

    #[test]
    fn points_outside_their_cells_are_refused() {
        let mut data = GeoIndexData::default();
        data.cells.push(cell_key(0, 0));
        data.starts.extend([0, 1]);
        data.points.push(GeoPoint { lat: 45.0, lon: 5.0, slot: 0 });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo");
        std::fs::write(&path, rkyv::to_bytes::<rkyv::rancor::Error>(&data).unwrap()).unwrap();
        assert!(matches!(GeoIndex::open(&path), Err(Error::Corrupt { .. })));
        // A point no builder writes, and a cell with no points: both
        // refused, not allocated for or walked.
        let mut data = GeoIndexData::default();
        data.cells.push(cell_key(0, 0));
        data.starts.extend([0, 1]);
        data.points.push(GeoPoint { lat: 1e300, lon: 5.0, slot: 0 });
        std::fs::write(&path, rkyv::to_bytes::<rkyv::rancor::Error>(&data).unwrap()).unwrap();
        assert!(matches!(GeoIndex::open(&path), Err(Error::Corrupt { .. })));
        let mut data = GeoIndexData::default();
        data.cells.extend([cell_key(0, 0), cell_key(1_000_000, 0)]);
        data.starts.extend([0, 0, 0]);
        std::fs::write(&path, rkyv::to_bytes::<rkyv::rancor::Error>(&data).unwrap()).unwrap();
        assert!(matches!(GeoIndex::open(&path), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo");
        std::fs::write(&path, b"not an index at all, just bytes").unwrap();
        assert!(matches!(GeoIndex::open(&path), Err(Error::Corrupt { .. })));
    }
}
