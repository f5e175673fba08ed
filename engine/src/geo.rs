//! The geo index for reverse queries, and the geodesy it needs.
//!
//! Points are bucketed in a regular grid of `CELL_DEG` degrees and sorted by
//! cell, then by latitude. The points are the body of a [`crate::checked`]
//! file, 12 bytes each: the point's place in its cell as two 32-bit
//! fractions of the cell's side (a few hundred nanometres at worst), and
//! its slot. The index holds the cells and where their points start. A
//! block of points is checked against its CRC when a query first reads it;
//! opening reads the cell table only.
//!
//! A query walks rings of cells outwards from the point until no unvisited
//! cell can hold anything nearer than what it already has.

use std::path::Path;

use rkyv::{Archive, Deserialize, Serialize};

use crate::checked::{Blocks, BodyWriter, Mapped};
use crate::error::{Error, Result};
use crate::record::Point;
use crate::spill::{beside, until_error, Column, Sorted, Sorter, DEFAULT_BUILD_MEMORY};

/// ~280 m by ~190 m in France: a reverse query near an address reads a few
/// dozen points.
const CELL_DEG: f64 = 0.0025;
const EARTH_RADIUS_M: f64 = 6_371_008.8;
const MAGIC: &[u8; 8] = b"CAIRNGE2";
/// Bytes of a point in the body: latitude and longitude fractions, slot.
const POINT: usize = 12;
/// A fraction of a cell's side is this many units.
const FRACTION: f64 = 4_294_967_296.0;

/// Great-circle distance in metres.
pub fn haversine_m(a: Point, b: Point) -> f64 {
    let (la1, la2) = (a.lat.to_radians(), b.lat.to_radians());
    let dlat = la2 - la1;
    let dlon = (b.lon - a.lon).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The great-circle distance in metres as [`GeoIndex::nearest`] measures
/// it: the same value for the same points, to the last bit, which
/// [`haversine_m`] (another formula) is not.
pub fn distance_m(from: Point, to: Point) -> f64 {
    h_angle(Cap::new(from).h(to)) * EARTH_RADIUS_M
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

#[derive(Archive, Serialize, Deserialize, Debug, Default)]
struct GeoIndexData {
    /// Sorted cell keys.
    cells: Vec<u64>,
    /// The points of `cells[i]` are `starts[i]..starts[i + 1]`.
    starts: Vec<u32>,
    /// The largest slot of a point, to check it against the documents.
    max_slot: Option<u32>,
    /// Bytes of points.
    body_len: u64,
    /// CRC-32 of each block of points.
    sums: Vec<u32>,
}

fn cell_of(lat: f64, lon: f64, deg: f64) -> (i64, i64) {
    (floor(lat / deg), floor(lon / deg))
}

/// `x.floor() as i64` for the finite values of a grid, without the call to
/// the maths library that `floor` is on a baseline x86-64 (a tenth of a
/// reverse query's instructions).
fn floor(x: f64) -> i64 {
    let t = x as i64;
    if (t as f64) > x {
        t - 1
    } else {
        t
    }
}

/// Cell keys sort by row (latitude), then by column: the cells of a row
/// are contiguous.
fn key_of(row: u32, col: u32) -> u64 {
    (u64::from(row) << 32) | u64::from(col)
}

#[cfg(test)]
fn cell_key(ci: i64, cj: i64) -> u64 {
    key_of(row_of(ci), col_of(cj))
}

fn row_of(ci: i64) -> u32 {
    (ci + 100_000) as u32
}

fn col_of(cj: i64) -> u32 {
    (cj + 100_000) as u32
}

/// The cell of a key.
fn cell_at(key: u64) -> (i64, i64) {
    (i64::from((key >> 32) as u32) - 100_000, i64::from(key as u32) - 100_000)
}

/// Where `v` lies past the side `c * CELL_DEG` of its cell, in 1/2^32 of
/// the side.
fn fraction(v: f64, c: i64) -> u32 {
    ((v / CELL_DEG - c as f64) * FRACTION).round().clamp(0.0, f64::from(u32::MAX)) as u32
}

fn from_fraction(c: i64, f: u32) -> f64 {
    (c as f64 + f64::from(f) / FRACTION) * CELL_DEG
}

/// A point while the index is built: row and column of its cell,
/// fraction of latitude, slot, fraction of longitude. Five words, not a
/// `(u64, ..)` tuple's six; in this order so that points sort by cell,
/// then by latitude within a cell (see `nearest`), then by slot.
type Staged = [u32; 5];

/// Collects points, then writes the index file. The points go to a spill
/// file beside the index as they come and are read back only to be sorted
/// (within the builder's memory, see [`crate::spill`]), once the documents
/// file is done: a build never holds both at once.
pub struct GeoBuilder {
    path: std::path::PathBuf,
    spill: Option<Column<Staged>>,
    /// Bytes the sort of the points may hold.
    memory: usize,
    /// Whether the file is synced when written.
    durable: bool,
}

impl GeoBuilder {
    /// A builder of the index at `path`; its temporary files are `path.*`.
    pub fn new(path: &Path) -> GeoBuilder {
        GeoBuilder { path: path.to_owned(), spill: None, memory: DEFAULT_BUILD_MEMORY, durable: true }
    }

    /// The file is not synced when written (a live layer's).
    pub fn unsynced(mut self) -> GeoBuilder {
        self.durable = false;
        self
    }

    /// Bounds the memory the sort of the points holds; beyond it, it goes
    /// through temporary files. The file written is the same.
    pub fn set_memory(&mut self, bytes: usize) {
        self.memory = bytes;
    }

    pub fn add(&mut self, p: Point, slot: u32) -> Result<()> {
        if !p.is_valid() {
            return Ok(());
        }
        let (ci, cj) = cell_of(p.lat, p.lon, CELL_DEG);
        let spill = match &mut self.spill {
            Some(s) => s,
            None => self.spill.insert(Column::create(beside(&self.path, "points"))?),
        };
        spill.push([row_of(ci), col_of(cj), fraction(p.lat, ci), slot, fraction(p.lon, cj)])
    }

    /// Every point added, sorted.
    fn sorted(&mut self) -> Result<Sorted<Staged>> {
        let expected = self.spill.as_ref().map_or(0, Column::len);
        let mut sorter = Sorter::new(beside(&self.path, "points.run"), self.memory, expected);
        if let Some(spill) = &mut self.spill {
            for p in spill.read()? {
                sorter.push(p?)?;
            }
        }
        // The spill file goes as soon as it is read.
        self.spill = None;
        if u32::try_from(sorter.len()).is_err() {
            return Err(Error::Store("more points than a geo index holds".into()));
        }
        sorter.finish()
    }

    pub fn write(mut self) -> Result<()> {
        let points = self.sorted()?;
        let mut data = GeoIndexData::default();
        let mut body = BodyWriter::create(&self.path)?;
        if !self.durable {
            body = body.unsynced();
        }
        let mut i = 0u32;
        let staged = |[row, col, lat, slot, lon]: Staged| {
            let key = key_of(row, col);
            if data.cells.last() != Some(&key) {
                data.cells.push(key);
                data.starts.push(i);
            }
            data.max_slot = data.max_slot.max(Some(slot));
            i += 1;
            let mut b = [0u8; POINT];
            for (w, v) in [lat, lon, slot].into_iter().enumerate() {
                b[w * 4..w * 4 + 4].copy_from_slice(&v.to_le_bytes());
            }
            b
        };
        until_error(points.read()?, |points| body.write_items(points.map(staged)))?;
        drop(points);
        data.starts.push(i);
        (data.body_len, data.sums) = body.end_body()?;
        let bytes =
            rkyv::to_bytes::<rkyv::rancor::Error>(&data).map_err(|e| Error::Store(format!("geo index: {e}")))?;
        body.finish(&bytes, *MAGIC)
    }
}

/// A memory-mapped geo index.
pub struct GeoIndex {
    file: Mapped,
    blocks: Blocks,
    /// `rows[i]..rows[i + 1]` are the cells of row `first_row + i`: a query
    /// finds a row without a binary search over all cells, which at 1M
    /// points cost a cache miss per step.
    first_row: u32,
    rows: Vec<u32>,
}

/// The points of one cell, read in place.
struct Cell<'a> {
    bytes: &'a [u8],
    ci: i64,
    cj: i64,
}

impl Cell<'_> {
    fn len(&self) -> usize {
        self.bytes.len() / POINT
    }

    fn word(&self, i: usize, w: usize) -> u32 {
        let at = i * POINT + w * 4;
        u32::from_le_bytes([self.bytes[at], self.bytes[at + 1], self.bytes[at + 2], self.bytes[at + 3]])
    }

    fn lat(&self, i: usize) -> f64 {
        from_fraction(self.ci, self.word(i, 0))
    }

    fn point(&self, i: usize) -> (Point, u32) {
        (Point { lat: self.lat(i), lon: from_fraction(self.cj, self.word(i, 1)) }, self.word(i, 2))
    }
}

impl GeoIndex {
    pub fn open(path: &Path) -> Result<GeoIndex> {
        let corrupt = |reason: &str| Error::Corrupt { path: path.into(), reason: reason.into() };
        let file = Mapped::open(path, *MAGIC)?;
        let data = rkyv::access::<ArchivedGeoIndexData, rkyv::rancor::Error>(file.index())
            .map_err(|e| corrupt(&e.to_string()))?;
        let (nc, ns) = (data.cells.len(), data.starts.len());
        let np = data.body_len.to_native() / POINT as u64;
        // Starts strictly increasing: no cell is empty, so cell keys stay
        // near the points' coordinates, and so does the row table below.
        let not_increasing = data.starts.windows(2).any(|w| w[0].to_native() >= w[1].to_native());
        if ns != nc + 1
            || not_increasing
            || data.starts.first().is_some_and(|s| s.to_native() != 0)
            || data.starts.last().is_some_and(|s| u64::from(s.to_native()) != np)
            || !data.body_len.to_native().is_multiple_of(POINT as u64)
        {
            return Err(corrupt("inconsistent cell table"));
        }
        if !data.cells.windows(2).all(|w| w[0].to_native() < w[1].to_native()) {
            return Err(corrupt("cells out of order"));
        }
        let blocks = Blocks::new(path, data.body_len.to_native(), &data.sums, file.index_at)?;
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
        Ok(GeoIndex { file, blocks, first_row, rows })
    }

    /// An error if a query read a damaged block of points.
    pub fn check(&self) -> Result<()> {
        self.blocks.check()
    }

    /// The points of cell `c`, if their blocks are intact (else the file
    /// is marked damaged, see [`GeoIndex::check`]).
    fn cell(&self, c: usize) -> Option<Cell<'_>> {
        let data = self.data();
        let (s, e) = (data.starts[c].to_native() as usize * POINT, data.starts[c + 1].to_native() as usize * POINT);
        let body = &self.file.map[..usize::try_from(data.body_len.to_native()).ok()?];
        if !self.blocks.intact(body, s, e) {
            return None;
        }
        let (ci, cj) = cell_at(data.cells[c].to_native());
        Some(Cell { bytes: &body[s..e], ci, cj })
    }

    /// The range of `cells` in row `ci`, if it has any.
    fn row(&self, ci: i64) -> Option<(usize, usize)> {
        let i = row_of(ci).checked_sub(self.first_row)? as usize;
        let (a, b) = (*self.rows.get(i)? as usize, *self.rows.get(i + 1)? as usize);
        (a < b).then_some((a, b))
    }

    fn data(&self) -> &ArchivedGeoIndexData {
        // SAFETY: validated in `open`, and the mapping is immutable.
        unsafe { rkyv::access_unchecked::<ArchivedGeoIndexData>(self.file.index()) }
    }

    /// The largest slot the index refers to, to check it against the documents.
    pub fn max_slot(&self) -> Option<u32> {
        self.data().max_slot.as_ref().map(|s| s.to_native())
    }

    /// Some indexed point and its slot: a query there finds it in the
    /// first cell.
    pub fn any_point(&self) -> Option<(Point, u32)> {
        if self.data().cells.is_empty() {
            return None;
        }
        self.cell(0).map(|c| c.point(0))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.data().body_len.to_native() as usize / POINT
    }

    /// The `k` nearest points accepted by `keep`, nearest first, as
    /// (slot, distance in metres). Several points may share a slot.
    pub fn nearest(&self, at: Point, k: usize, keep: impl FnMut(u32) -> bool) -> Vec<(u32, f64)> {
        self.nearest_within(at, k, f64::INFINITY, keep)
    }

    /// [`GeoIndex::nearest`], looking no further than `reach_m` metres: a
    /// filter that takes few points then does not walk every cell of the
    /// search's reach ([`MAX_REACH_M`]).
    ///
    /// Distances are great-circle distances: the walk grows a spherical cap
    /// around the point, ring of cells by ring of cells, visiting in each
    /// row of the grid the columns the cap reaches there (more of them
    /// towards the poles, all of them around a pole), across the
    /// antimeridian; it stops once the k-th point found is nearer than
    /// anything outside the cap can be.
    pub fn nearest_within(
        &self,
        at: Point,
        k: usize,
        reach_m: f64,
        mut keep: impl FnMut(u32) -> bool,
    ) -> Vec<(u32, f64)> {
        let data = self.data();
        if k == 0 || data.cells.is_empty() || !at.is_valid() {
            return Vec::new();
        }
        let reach = reach_m.min(MAX_REACH_M) / EARTH_RADIUS_M;
        let deg = CELL_DEG;
        let max_slot = self.max_slot().unwrap_or(0);
        let cap = Cap::new(at);
        let (ci, cj) = cell_of(at.lat, at.lon, deg);
        let ncols = (360.0 / deg).round() as i64;
        let first_col = floor(-180.0 / deg);
        let (min_row, max_row) = (floor(-90.0 / deg), floor(90.0 / deg));
        let mut kept = Kept { k, found: Vec::with_capacity(k.min(1024) + 1), bound_deg: f64::INFINITY };
        let mut scan = |kept: &mut Kept, c: usize| {
            let Some(cell) = self.cell(c) else { return };
            let mut offer = |kept: &mut Kept, i: usize| {
                let (p, slot) = cell.point(i);
                if slot > max_slot {
                    self.blocks.damage();
                    return;
                }
                kept.offer(&cap, p, slot, &mut keep);
            };
            // A cell's points are sorted by latitude: walk away from the
            // query's latitude both ways, each way until the latitude gap
            // alone is more than the k-th distance.
            let (mut lo, mut hi) = (0, cell.len());
            while lo < hi {
                let m = lo + (hi - lo) / 2;
                if cell.lat(m) < at.lat {
                    lo = m + 1;
                } else {
                    hi = m;
                }
            }
            for i in lo..cell.len() {
                if cell.lat(i) - at.lat > kept.bound_deg {
                    break;
                }
                offer(kept, i);
            }
            for i in (0..lo).rev() {
                if at.lat - cell.lat(i) > kept.bound_deg {
                    break;
                }
                offer(kept, i);
            }
        };
        // Columns visited in each row of `first_row..`, as an unwrapped
        // range around `cj`; the rows visited only ever grow both ways.
        let mut visited: std::collections::VecDeque<Option<(i64, i64)>> = std::collections::VecDeque::new();
        let mut first_row = ci;
        let mut radius = 0.0f64;
        let step = deg.to_radians();
        for ring in 0u32.. {
            let lat_reach = radius.to_degrees();
            let rows = floor((at.lat - lat_reach) / deg).max(min_row)..=floor((at.lat + lat_reach) / deg).min(max_row);
            // Away from the poles the cap is widest in longitude at one
            // latitude, and that width serves every row; a cap that nears a
            // pole is measured row by row.
            let near_pole = radius + cap.phi.abs() >= std::f64::consts::FRAC_PI_2 - 2.0 * step;
            let widest = if near_pole { None } else { Some((radius.sin() / cap.cos_phi).min(1.0).asin()) };
            for row in rows {
                let half = if let Some(w) = widest {
                    w
                } else {
                    let (lat_lo, lat_hi) = ((row as f64 * deg).max(-90.0), ((row + 1) as f64 * deg).min(90.0));
                    match cap.half_width(radius, lat_lo, lat_hi) {
                        Some(h) => h,
                        None => continue,
                    }
                };
                let (mut lo, mut hi) = if half >= std::f64::consts::PI {
                    (cj - ncols / 2, cj - ncols / 2 + ncols - 1)
                } else {
                    let half = half.to_degrees() + 1e-9;
                    (floor((at.lon - half) / deg), floor((at.lon + half) / deg))
                };
                lo = lo.min(cj);
                hi = hi.max(cj);
                while row < first_row {
                    visited.push_front(None);
                    first_row -= 1;
                }
                let i = (row - first_row) as usize;
                if i >= visited.len() {
                    visited.resize(i + 1, None);
                }
                let (pieces, now) = columns_to_visit(visited[i], lo, hi, ncols);
                visited[i] = Some(now);
                for (a, b) in pieces.into_iter().flatten() {
                    self.scan_columns(row, a, b, first_col, ncols, &mut |c| scan(&mut kept, c));
                }
            }
            // Every point within `radius` has been seen; after the first
            // ring, the point's own cell, every point nearer than its edges.
            let seen = if ring == 0 { cap.inside_cell(ci, cj, deg) } else { radius };
            if (kept.found.len() == k && h_angle(kept.found[k - 1].0) <= seen) || radius >= reach {
                break;
            }
            // Ring by ring near the point, then faster: a point far from
            // everything must not walk a thousand rings one by one.
            radius = if ring < 8 { radius + step } else { radius * 1.5 }.min(reach);
        }
        kept.found
            .into_iter()
            .map(|(h, slot, _)| (slot, h_angle(h) * EARTH_RADIUS_M))
            .filter(|(_, d)| *d <= reach_m.min(MAX_REACH_M))
            .collect()
    }

    /// Scans the cells of `row` in the unwrapped columns `a..=b`: each
    /// taken modulo the grid's width, so that a range across the
    /// antimeridian continues on the other side.
    fn scan_columns(&self, row: i64, a: i64, b: i64, first_col: i64, ncols: i64, scan: &mut dyn FnMut(usize)) {
        let Some((start, end)) = self.row(row) else { return };
        let data = self.data();
        let wrap = |c: i64| (c - first_col).rem_euclid(ncols) + first_col;
        let (wa, wb) = (wrap(a), wrap(b));
        let last = first_col + ncols - 1;
        let mut ranges = [(wa, wb), (1, 0), (1, 0)];
        if b - a + 1 >= ncols {
            ranges[0] = (first_col, last);
        } else if wa > wb {
            ranges[0] = (wa, last);
            ranges[1] = (first_col, wb);
        }
        // A point at longitude 180 exactly lies in the column after the
        // last; it is the column of -180.
        if ranges[..2].iter().any(|&(x, y)| x == first_col && x <= y) {
            ranges[2] = (last + 1, last + 1);
        }
        let cells = &data.cells[start..end];
        for (x, y) in ranges.into_iter().filter(|(x, y)| x <= y) {
            let (x, y) = (col_of(x), col_of(y));
            let mut c = cells.partition_point(|k| (k.to_native() as u32) < x);
            while c < cells.len() && cells[c].to_native() as u32 <= y {
                scan(start + c);
                c += 1;
            }
        }
    }
}

/// How far a query looks: beyond that nothing is "near".
const MAX_REACH_M: f64 = 200_000.0;

/// A range of unwrapped columns, both ends in.
type Span = (i64, i64);

/// The columns of a row to scan so that `lo..=hi` (unwrapped, at most a
/// turn wide when taken modulo `ncols`) is covered, given those already
/// scanned; and the range scanned after.
fn columns_to_visit(seen: Option<Span>, lo: i64, hi: i64, ncols: i64) -> ([Option<Span>; 2], Span) {
    let Some((vlo, vhi)) = seen else {
        let hi = hi.min(lo + ncols - 1);
        return ([Some((lo, hi)), None], (lo, hi));
    };
    if vhi - vlo + 1 >= ncols {
        return ([None, None], (vlo, vhi));
    }
    let (nlo, nhi) = (lo.min(vlo), hi.max(vhi));
    if nhi - nlo + 1 >= ncols {
        // The rest of the turn, from just after the seen range round to just before it.
        return ([Some((vhi + 1, vlo - 1 + ncols)), None], (vlo, vlo + ncols - 1));
    }
    let piece = |a: i64, b: i64| (a <= b).then_some((a, b));
    ([piece(nlo, vlo - 1), piece(vhi + 1, nhi)], (nlo, nhi))
}

/// The haversine of the angle between two points, monotone in their
/// distance: what the walk orders points by.
fn h_angle(h: f64) -> f64 {
    2.0 * h.sqrt().min(1.0).asin()
}

/// The k nearest points found so far, as (haversine h, slot, point),
/// ordered so that ties resolve the same whatever order the points are
/// visited in.
struct Kept {
    k: usize,
    found: Vec<(f64, u32, Point)>,
    /// The angular distance of the k-th, in degrees, infinite until k are
    /// found: a point further in latitude alone cannot enter.
    bound_deg: f64,
}

impl Kept {
    fn offer(&mut self, cap: &Cap, q: Point, slot: u32, keep: &mut impl FnMut(u32) -> bool) {
        let h = cap.h(q);
        let k = self.k;
        if self.found.len() == k && (h, slot) >= (self.found[k - 1].0, self.found[k - 1].1) {
            return;
        }
        if !keep(slot) {
            return;
        }
        let i = self.found.partition_point(|f| (f.0, f.1) < (h, slot));
        self.found.insert(i, (h, slot, q));
        self.found.truncate(k);
        if self.found.len() == k {
            self.bound_deg = h_angle(self.found[k - 1].0).to_degrees();
        }
    }
}

/// Angles (radians, about 64 km) under which [`Cap::h`] takes its series.
const SERIES_RADIANS: f64 = 0.01;

/// A point to measure from, with what every measure from it needs.
struct Cap {
    at: Point,
    phi: f64,
    sin_phi: f64,
    cos_phi: f64,
}

impl Cap {
    fn new(at: Point) -> Cap {
        let phi = at.lat.to_radians();
        Cap { at, phi, sin_phi: phi.sin(), cos_phi: phi.cos() }
    }

    /// The haversine of the angle to `p`.
    fn h(&self, p: Point) -> f64 {
        let dphi = p.lat.to_radians() - self.phi;
        let mut dlam = (p.lon - self.at.lon).to_radians();
        if dlam > std::f64::consts::PI {
            dlam -= std::f64::consts::TAU;
        } else if dlam < -std::f64::consts::PI {
            dlam += std::f64::consts::TAU;
        }
        // Near the point (a few tens of kilometres, where a walk finds what
        // it keeps) the sines and the cosine are their Taylor series, exact
        // to f64's rounding there: three calls to the maths library a point
        // were most of a reverse query's cost.
        if dphi.abs() < SERIES_RADIANS && dlam.abs() < SERIES_RADIANS {
            let half_sin = |x: f64| {
                let y = x / 2.0;
                let y2 = y * y;
                y * (1.0 - y2 / 6.0 * (1.0 - y2 / 20.0))
            };
            let d2 = dphi * dphi;
            let cos_d = 1.0 - d2 / 2.0 * (1.0 - d2 / 12.0 * (1.0 - d2 / 30.0));
            let sin_d = dphi * (1.0 - d2 / 6.0 * (1.0 - d2 / 20.0));
            let cos_phi2 = self.cos_phi * cos_d - self.sin_phi * sin_d;
            let (a, b) = (half_sin(dphi), half_sin(dlam));
            return (a * a + self.cos_phi * cos_phi2 * b * b).clamp(0.0, 1.0);
        }
        let (a, b) = ((dphi / 2.0).sin(), (dlam / 2.0).sin());
        (a * a + self.cos_phi * p.lat.to_radians().cos() * b * b).min(1.0)
    }

    /// The angular distance from the point to the nearest edge of its cell
    /// `(ci, cj)`: no point outside the cell is nearer. Edges of latitude
    /// are parallels, at their difference in latitude; edges of longitude
    /// are meridians, whose nearest point is at asin(sin Δλ cos φ).
    fn inside_cell(&self, ci: i64, cj: i64, deg: f64) -> f64 {
        let (south, north) = ((ci as f64 * deg).to_radians(), ((ci + 1) as f64 * deg).to_radians());
        let (west, east) = ((cj as f64 * deg).to_radians(), ((cj + 1) as f64 * deg).to_radians());
        let lam = self.at.lon.to_radians();
        let meridian = |d: f64| (d.min(std::f64::consts::FRAC_PI_2).sin() * self.cos_phi).asin();
        (self.phi - south).min(north - self.phi).min(meridian(lam - west)).min(meridian(east - lam)).max(0.0)
    }

    /// The most longitude (radians, π for all of it) that the cap of
    /// angular radius `theta` spans at any latitude of `lat_lo..=lat_hi`
    /// (degrees); `None` when the cap misses that band.
    fn half_width(&self, theta: f64, lat_lo: f64, lat_hi: f64) -> Option<f64> {
        let (lo, hi) = (lat_lo.to_radians(), lat_hi.to_radians());
        // The cap's width in longitude grows from its edges to the latitude
        // where its boundary runs north-south, then shrinks: its largest in
        // the band is there, or at the band's end nearer to it.
        let ratio = self.sin_phi / theta.cos();
        let widest = if theta < std::f64::consts::FRAC_PI_2 && ratio.abs() <= 1.0 { ratio.asin() } else { self.phi };
        let mut best: Option<f64> = None;
        for phi in [lo, hi, widest.clamp(lo, hi)] {
            if let Some(w) = self.width_at(theta, phi) {
                best = Some(best.map_or(w, |b: f64| b.max(w)));
            }
        }
        best
    }

    /// Half the longitude span of the cap on the parallel `phi`, if it
    /// reaches that parallel.
    fn width_at(&self, theta: f64, phi: f64) -> Option<f64> {
        let denom = self.cos_phi * phi.cos();
        let num = theta.cos() - self.sin_phi * phi.sin();
        // A pole (or the query at one): the whole parallel or none of it.
        if denom.abs() < 1e-12 {
            return (num <= 1e-12).then_some(std::f64::consts::PI);
        }
        let x = num / denom;
        if x > 1.0 + 1e-12 {
            return None;
        }
        Some(if x <= -1.0 { std::f64::consts::PI } else { x.min(1.0).acos() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_is_floor() {
        for x in [0.0, -0.0, 0.5, -0.5, 1.0, -1.0, 71_999.999, -72_000.0, -72_000.000_1, 36_000.0, 1e-300, -1e-300] {
            assert_eq!(floor(x), x.floor() as i64, "{x}");
        }
    }

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
        let mut b = GeoBuilder::new(&path);
        b.add(Point { lat: 45.0, lon: 5.0 }, 0).unwrap();
        b.add(Point { lat: 45.001, lon: 5.0 }, 1).unwrap();
        b.add(Point { lat: 45.5, lon: 5.5 }, 2).unwrap();
        b.add(Point { lat: 95.0, lon: 5.5 }, 3).unwrap(); // invalid, dropped
        b.write().unwrap();
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

    /// The k nearest kept points within `reach_m` by great-circle distance
    /// (haversine, as `haversine_m` computes it), ties to the lower slot, by
    /// looking at all of them.
    fn brute_within(points: &[Point], at: Point, k: usize, reach_m: f64, keep: impl Fn(u32) -> bool) -> Vec<u32> {
        let cap = Cap::new(at);
        let mut all: Vec<(f64, u32)> = points
            .iter()
            .enumerate()
            .filter(|(i, p)| keep(*i as u32) && haversine_m(at, **p) <= reach_m)
            .map(|(i, p)| (cap.h(*p), i as u32))
            .collect();
        all.sort_by(|a, b| a.partial_cmp(b).unwrap());
        all.into_iter().take(k).map(|(_, s)| s).collect()
    }

    fn brute(points: &[Point], at: Point, k: usize, keep: impl Fn(u32) -> bool) -> Vec<u32> {
        brute_within(points, at, k, MAX_REACH_M, keep)
    }

    fn index_of(points: &[Point]) -> (tempfile::TempDir, GeoIndex) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo");
        let mut b = GeoBuilder::new(&path);
        for (slot, p) in points.iter().enumerate() {
            b.add(*p, slot as u32).unwrap();
        }
        b.write().unwrap();
        let g = GeoIndex::open(&path).unwrap();
        (dir, g)
    }

    /// The defects of a walk in degrees (issue 25, 7), each as found.
    #[test]
    fn nearest_is_by_distance_across_the_antimeridian_and_the_poles() {
        let ids =
            |g: &GeoIndex, at: Point, k: usize| g.nearest(at, k, |_| true).into_iter().map(|x| x.0).collect::<Vec<_>>();
        // At latitude 60 a degree of longitude is half a degree of latitude:
        // a point 167 km east is nearer than one 211 km north... and a point
        // 150 km east than one 190 km north (both within the 200 km reach).
        let at = Point { lat: 60.0, lon: 10.0 };
        let north = Point { lat: 60.0 + 190.0 / 111.2, lon: 10.0 };
        let east = Point { lat: 60.0, lon: 10.0 + 150.0 / 55.6 };
        let (_d, g) = index_of(&[north, east]);
        assert!(haversine_m(at, east) < haversine_m(at, north));
        assert_eq!(ids(&g, at, 1), [1]);
        assert_eq!(ids(&g, at, 2), [1, 0]);
        // 164 m away across the antimeridian, against 5 km away on this side.
        let at = Point { lat: 10.0, lon: 179.9995 };
        let across = Point { lat: 10.0, lon: -179.999 };
        let same_side = Point { lat: 10.045, lon: 179.9995 };
        let (_d, g) = index_of(&[same_side, across]);
        assert!(haversine_m(at, across) < 200.0);
        assert_eq!(ids(&g, at, 1), [1]);
        let found = g.nearest(at, 1, |_| true);
        assert!((found[0].1 - haversine_m(at, across)).abs() < 1e-6);
        // 1.7 km away across the pole, against 110 km away on this side.
        let at = Point { lat: 89.995, lon: 0.0 };
        let over = Point { lat: 89.99, lon: 180.0 };
        let far = Point { lat: 89.0, lon: 0.0 };
        let (_d, g) = index_of(&[far, over]);
        assert!(haversine_m(at, over) < 2_000.0);
        assert_eq!(ids(&g, at, 1), [1]);
        assert_eq!(ids(&g, at, 2), [1, 0]);
        // A point at the pole itself, and at longitude 180 exactly.
        let (_d, g) = index_of(&[Point { lat: 90.0, lon: 45.0 }, Point { lat: 0.0, lon: 180.0 }]);
        assert_eq!(ids(&g, Point { lat: 89.9, lon: -120.0 }, 1), [0]);
        assert_eq!(ids(&g, Point { lat: 0.0, lon: -179.9999 }, 1), [1]);
        // Nothing within the reach: nothing, at once.
        assert!(g.nearest(Point { lat: -40.0, lon: 60.0 }, 1, |_| true).is_empty());
    }

    /// Random points over the whole sphere, with clusters at the poles and
    /// on the antimeridian: the same as a scan of every point.
    #[test]
    fn nearest_agrees_with_a_full_scan_worldwide() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut anywhere = |spread: Option<(f64, f64, f64)>| -> Point {
            match spread {
                // Uniform on the sphere.
                None => Point { lat: (2.0 * next() - 1.0).asin().to_degrees(), lon: 360.0 * next() - 180.0 },
                Some((lat, lon, r)) => {
                    let lat = (lat + (next() - 0.5) * r).clamp(-90.0, 90.0);
                    let lon = lon + (next() - 0.5) * r * 20.0;
                    Point { lat, lon: (lon + 180.0).rem_euclid(360.0) - 180.0 }
                }
            }
        };
        let spots = [
            None,
            Some((89.9, 0.0, 0.3)),
            Some((-89.95, 0.0, 0.2)),
            Some((45.0, 180.0, 0.5)),
            Some((-60.0, 179.99, 1.0)),
        ];
        let points: Vec<Point> = (0..20_000).map(|i| anywhere(spots[i % spots.len()])).collect();
        let (_d, g) = index_of(&points);
        for i in 0..600 {
            let at = anywhere(spots[(i * 7 + 3) % spots.len()]);
            let k = [1, 3, 10][i % 3];
            let got: Vec<u32> = g.nearest(at, k, |_| true).into_iter().map(|x| x.0).collect();
            assert_eq!(got, brute(&points, at, k, |_| true), "query {i} at {at:?}, k {k}");
            let odd = |s: u32| s % 2 == 1;
            let got: Vec<u32> = g.nearest(at, k, odd).into_iter().map(|x| x.0).collect();
            assert_eq!(got, brute(&points, at, k, odd), "filtered query {i} at {at:?}, k {k}");
            let got: Vec<u32> = g.nearest_within(at, k, 5_000.0, |_| true).into_iter().map(|x| x.0).collect();
            assert_eq!(got, brute_within(&points, at, k, 5_000.0, |_| true), "within 5 km, query {i} at {at:?}");
        }
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

    /// Built in memory or through many sorted runs, the index is the same
    /// file, answers as a full scan does, and leaves no temporary file.
    #[test]
    fn nearest_agrees_with_a_full_scan() {
        let dir = tempfile::tempdir().unwrap();
        let points = random_points(135_000, 7);
        let build = |name: &str, memory: usize| {
            let path = dir.path().join(name);
            let mut b = GeoBuilder::new(&path);
            b.set_memory(memory);
            for (slot, p) in points.iter().enumerate() {
                b.add(*p, slot as u32).unwrap();
            }
            b.write().unwrap();
            path
        };
        let (path, small) = (build("geo", 1 << 30), build("small", 20 * 1000));
        assert!(std::fs::read(&path).unwrap() == std::fs::read(&small).unwrap(), "the files differ");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "temporary files left behind");
        let g = GeoIndex::open(&path).unwrap();
        assert_eq!(g.len(), points.len());
        check_against_brute(&g, &points, 99);
        assert!(g.check().is_ok());
    }

    /// A point is read back within a micrometre of where it was put, in
    /// the cell it was put in, at the edges of cells and of the world.
    #[test]
    fn points_read_back_in_their_cells() {
        for p in [
            Point { lat: 45.761_934, lon: 4.886_03 },
            Point { lat: 0.0, lon: 0.0 },
            Point { lat: -0.000_000_1, lon: -0.000_000_1 },
            Point { lat: 90.0, lon: 180.0 },
            Point { lat: -90.0, lon: -180.0 },
            Point { lat: 48.0025, lon: 2.004_999_999_9 },
        ] {
            let (ci, cj) = cell_of(p.lat, p.lon, CELL_DEG);
            let (lat, lon) = (from_fraction(ci, fraction(p.lat, ci)), from_fraction(cj, fraction(p.lon, cj)));
            assert!((lat - p.lat).abs() < 1e-11 && (lon - p.lon).abs() < 1e-11, "{p:?}: {lat} {lon}");
            assert_eq!(cell_at(cell_key(ci, cj)), (ci, cj));
        }
    }

    /// A flipped byte among the points does not stop the file opening; a
    /// query that reads its block finds the file damaged, and one that
    /// does not still answers.
    #[test]
    fn a_damaged_block_of_points_is_never_read_as_points() {
        let points = random_points(20_000, 3);
        let (dir, g) = index_of(&points);
        let path = dir.path().join("geo");
        let (at, _) = g.any_point().unwrap();
        drop(g);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let g = GeoIndex::open(&path).unwrap();
        // The points of block 0 are the southernmost: the northernmost
        // point's neighbours are blocks away.
        let far = *points.iter().max_by(|a, b| a.lat.total_cmp(&b.lat)).unwrap();
        assert!(!g.nearest(far, 3, |_| true).is_empty());
        assert!(g.check().is_ok(), "the damaged block is not read from far away");
        g.nearest(at, 1, |_| true);
        assert!(matches!(g.check(), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn inconsistent_cell_tables_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo");
        let write = |data: &GeoIndexData| {
            let mut body = BodyWriter::create(&path).unwrap();
            body.write(&[0u8; POINT]).unwrap();
            let (_, sums) = body.end_body().unwrap();
            let data = GeoIndexData {
                cells: data.cells.clone(),
                starts: data.starts.clone(),
                max_slot: Some(0),
                body_len: POINT as u64,
                sums,
            };
            body.finish(&rkyv::to_bytes::<rkyv::rancor::Error>(&data).unwrap(), *MAGIC).unwrap();
        };
        let ok = GeoIndexData { cells: vec![cell_key(0, 0)], starts: vec![0, 1], ..Default::default() };
        write(&ok);
        assert!(GeoIndex::open(&path).is_ok());
        // A cell with no points, starts past the points, cells out of order.
        for bad in [
            GeoIndexData { cells: vec![cell_key(0, 0), cell_key(1, 0)], starts: vec![0, 0, 1], ..Default::default() },
            GeoIndexData { cells: vec![cell_key(0, 0)], starts: vec![0, 2], ..Default::default() },
            GeoIndexData { cells: vec![cell_key(1, 0), cell_key(0, 0)], starts: vec![0, 1, 1], ..Default::default() },
        ] {
            write(&bad);
            assert!(matches!(GeoIndex::open(&path), Err(Error::Corrupt { .. })));
        }
    }

    #[test]
    fn corrupt_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo");
        std::fs::write(&path, b"not an index at all, just bytes").unwrap();
        assert!(matches!(GeoIndex::open(&path), Err(Error::Corrupt { .. })));
    }
}
