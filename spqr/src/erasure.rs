//! The erasure code that splits each braid payload into 32-byte chunks, one per message.
//!
//! A payload of `2n` bytes is read as `n` big-endian 16-bit words. Word `i` becomes the value at
//! `x = i / 16` of polynomial number `i % 16`, so each of the 16 polynomials is fixed by the
//! words it holds. Chunk number `c` carries the 16 values of those polynomials at `x = c`: the
//! first chunks are the payload itself, every later one is redundancy, and any large enough set
//! of distinct chunks rebuilds the payload. This is how SPQR survives lost messages without
//! retransmission: the sender keeps emitting fresh chunks until the peer moves on.

use std::collections::BTreeMap;

use crate::gf16::Gf16;

/// Bytes of payload carried by one chunk.
pub(crate) const CHUNK_BYTES: usize = 32;
/// Field elements per chunk, hence the number of interleaved polynomials.
const POLYS: usize = CHUNK_BYTES / 2;

/// One piece of an encoded payload, as carried by a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Which evaluation point this chunk holds.
    pub(crate) index: u16,
    /// The 16 big-endian field values at that point.
    pub(crate) data: [u8; CHUNK_BYTES],
}

/// How many words polynomial `poly` holds in a payload of `words` words.
fn words_in_poly(words: usize, poly: usize) -> usize {
    words / POLYS + usize::from(poly < words % POLYS)
}

fn word_at(bytes: &[u8], word: usize) -> u16 {
    let hi = bytes.get(2 * word).copied().unwrap_or(0);
    let lo = bytes.get(2 * word + 1).copied().unwrap_or(0);
    u16::from_be_bytes([hi, lo])
}

/// Coefficients (lowest degree first) of the unique polynomial of degree below `points.len()`
/// through `points`, whose x values must be distinct.
fn interpolate(points: &[(Gf16, Gf16)]) -> Vec<Gf16> {
    let k = points.len();
    // full = product of (x - x_j) over all points, degree k.
    let mut full = vec![Gf16::ZERO; k + 1];
    if let Some(top) = full.first_mut() {
        *top = Gf16::ONE;
    }
    for (degree, &(xj, _)) in points.iter().enumerate() {
        // Multiply the degree-`degree` polynomial in full[..=degree] by (x - xj), in place.
        for d in (0..=degree + 1).rev() {
            let shifted = if d > 0 { full.get(d - 1).copied().unwrap_or(Gf16::ZERO) } else { Gf16::ZERO };
            let scaled = full.get(d).copied().unwrap_or(Gf16::ZERO) * xj;
            if let Some(c) = full.get_mut(d) {
                *c = shifted - scaled;
            }
        }
    }
    let mut out = vec![Gf16::ZERO; k];
    let mut basis = vec![Gf16::ZERO; k];
    for (i, &(xi, yi)) in points.iter().enumerate() {
        // basis = full / (x - xi), by synthetic division from the top coefficient down.
        let mut carry = Gf16::ZERO;
        for d in (0..k).rev() {
            carry = full.get(d + 1).copied().unwrap_or(Gf16::ZERO) + carry * xi;
            if let Some(b) = basis.get_mut(d) {
                *b = carry;
            }
        }
        let mut denominator = Gf16::ONE;
        for (j, &(xj, _)) in points.iter().enumerate() {
            if j != i {
                denominator *= xi - xj;
            }
        }
        let scale = yi / denominator;
        for (o, b) in out.iter_mut().zip(basis.iter()) {
            *o += *b * scale;
        }
    }
    out
}

/// Evaluates a polynomial given by its coefficients (lowest degree first) at `x`.
fn evaluate(coefficients: &[Gf16], x: Gf16) -> Gf16 {
    coefficients.iter().rev().fold(Gf16::ZERO, |acc, &c| acc * x + c)
}

/// The `len`-byte payload that `polys` (one polynomial per chunk position, coefficients from
/// the constant term up, as upstream stores an encoder once it has interpolated) evaluate to at
/// x = 0, 1, ...; `None` unless there are exactly 16 of them.
pub(crate) fn payload_from_polys(len: usize, polys: &[Vec<u16>]) -> Option<Vec<u8>> {
    if polys.len() != POLYS || !len.is_multiple_of(2) {
        return None;
    }
    let mut payload = vec![0u8; len];
    for (word, out) in payload.chunks_exact_mut(2).enumerate() {
        let coefficients: Vec<Gf16> = polys.get(word % POLYS)?.iter().map(|&c| Gf16(c)).collect();
        let x = u16::try_from(word / POLYS).ok()?;
        out.copy_from_slice(&evaluate(&coefficients, Gf16(x)).0.to_be_bytes());
    }
    Some(payload)
}

/// Produces the chunks of one payload, in index order.
#[derive(Clone)]
pub(crate) struct Encoder {
    payload: Vec<u8>,
    next_index: u32,
    /// The 16 interpolated polynomials, computed the first time a redundancy chunk is needed.
    /// Derived data: never serialized.
    polys: Option<Vec<Vec<Gf16>>>,
}

impl Encoder {
    /// Starts encoding `payload`, whose length must be even and at most 2^20 bytes (every
    /// payload in the braid is a fixed size well inside that).
    pub(crate) fn new(payload: Vec<u8>) -> Option<Encoder> {
        Encoder::resume(payload, 0)
    }

    /// Rebuilds an encoder that has already handed out `next_index` chunks.
    pub(crate) fn resume(payload: Vec<u8>, next_index: u32) -> Option<Encoder> {
        if !payload.len().is_multiple_of(2) || payload.len() > POLYS * 2 * (1 << 16) {
            return None;
        }
        Some(Encoder { payload, next_index, polys: None })
    }

    /// The payload being encoded.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The index the next chunk will have (before truncation to 16 bits).
    pub(crate) fn next_index(&self) -> u32 {
        self.next_index
    }

    /// The next chunk. Indexes count up and wrap at 2^16, as upstream's do.
    pub(crate) fn next_chunk(&mut self) -> Chunk {
        let index = (self.next_index & 0xffff) as u16;
        self.next_index = self.next_index.wrapping_add(1);
        self.chunk_at(index)
    }

    /// The chunk with the given index.
    pub(crate) fn chunk_at(&mut self, index: u16) -> Chunk {
        let words = self.payload.len() / 2;
        let x = usize::from(index);
        let mut data = [0u8; CHUNK_BYTES];
        for (poly, out) in data.chunks_exact_mut(2).enumerate() {
            let value = if x < words_in_poly(words, poly) {
                word_at(&self.payload, x * POLYS + poly)
            } else {
                let polys = self.polys.get_or_insert_with(|| interpolate_payload(&self.payload));
                let coefficients = polys.get(poly).map(Vec::as_slice).unwrap_or(&[]);
                evaluate(coefficients, Gf16(index)).0
            };
            out.copy_from_slice(&value.to_be_bytes());
        }
        Chunk { index, data }
    }
}

fn interpolate_payload(payload: &[u8]) -> Vec<Vec<Gf16>> {
    let words = payload.len() / 2;
    (0..POLYS)
        .map(|poly| {
            let points: Vec<(Gf16, Gf16)> = (0..words_in_poly(words, poly))
                .map(|x| (Gf16(x as u16), Gf16(word_at(payload, x * POLYS + poly))))
                .collect();
            interpolate(&points)
        })
        .collect()
}

/// Collects chunks of one payload until it can be rebuilt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Decoder {
    words: usize,
    /// Received points per polynomial, keyed by x. A later chunk with the same index replaces
    /// the earlier values, exactly as upstream's sorted set does.
    points: Vec<BTreeMap<u16, u16>>,
}

impl Decoder {
    /// A decoder for a payload of `len` bytes (even, and small enough that `len / 2 / 16` fits
    /// a chunk index).
    pub(crate) fn new(len: usize) -> Decoder {
        Decoder { words: len / 2, points: vec![BTreeMap::new(); POLYS] }
    }

    /// Rebuilds a decoder from stored points; `None` if they are inconsistent with `len`.
    pub(crate) fn from_points(len: usize, points: Vec<Vec<(u16, u16)>>) -> Option<Decoder> {
        if points.len() != POLYS || !len.is_multiple_of(2) {
            return None;
        }
        let words = len / 2;
        let mut maps = Vec::with_capacity(POLYS);
        for (poly, pts) in points.into_iter().enumerate() {
            // Upstream never holds more than the needed points plus the low-index ones.
            if pts.len() > 2 * words_in_poly(words, poly) + 1 {
                return None;
            }
            let map: BTreeMap<u16, u16> = pts.into_iter().collect();
            maps.push(map);
        }
        Some(Decoder { words, points: maps })
    }

    /// The stored points, per polynomial, in x order.
    /// The received points of each polynomial as big-endian `x ‖ y` pairs, in x order (the
    /// persisted form), written straight from the maps.
    pub(crate) fn points_be(&self) -> Vec<Vec<u8>> {
        self.points
            .iter()
            .map(|map| {
                let mut out = Vec::with_capacity(map.len() * 4);
                for (x, y) in map {
                    out.extend_from_slice(&x.to_be_bytes());
                    out.extend_from_slice(&y.to_be_bytes());
                }
                out
            })
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn points(&self) -> Vec<Vec<(u16, u16)>> {
        self.points.iter().map(|m| m.iter().map(|(&x, &y)| (x, y)).collect()).collect()
    }

    /// Takes in one chunk. Keeps a value only if its x is among the first ones the polynomial
    /// needs (so decoding may skip interpolation) or if the polynomial still lacks points.
    pub(crate) fn add_chunk(&mut self, chunk: &Chunk) {
        let words = self.words;
        for (poly, (map, value)) in self.points.iter_mut().zip(chunk.data.chunks_exact(2)).enumerate() {
            let needed = words_in_poly(words, poly);
            if usize::from(chunk.index) < needed || map.len() < needed {
                let y = u16::from_be_bytes([value.first().copied().unwrap_or(0), value.get(1).copied().unwrap_or(0)]);
                map.insert(chunk.index, y);
            }
        }
    }

    /// The payload, once every polynomial has enough points.
    pub(crate) fn decoded(&self) -> Option<Vec<u8>> {
        let words = self.words;
        if self.points.iter().enumerate().any(|(poly, map)| map.len() < words_in_poly(words, poly)) {
            return None;
        }
        let mut polys: Vec<Option<Vec<Gf16>>> = vec![None; POLYS];
        let mut out = Vec::with_capacity(words * 2);
        for word in 0..words {
            let poly = word % POLYS;
            let x = (word / POLYS) as u16;
            let map = self.points.get(poly)?;
            let y = match map.get(&x) {
                Some(&y) => y,
                None => {
                    let slot = polys.get_mut(poly)?;
                    let coefficients = slot.get_or_insert_with(|| {
                        // Interpolate through the lowest-x points, as many as needed.
                        let pts: Vec<(Gf16, Gf16)> = map
                            .iter()
                            .take(words_in_poly(words, poly))
                            .map(|(&px, &py)| (Gf16(px), Gf16(py)))
                            .collect();
                        interpolate(&pts)
                    });
                    evaluate(coefficients, Gf16(x)).0
                }
            };
            out.extend_from_slice(&y.to_be_bytes());
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_payload_comes_back_from_its_polynomials() {
        let payload: Vec<u8> = (0..96u8).map(|b| b.wrapping_mul(37)).collect();
        let polys: Vec<Vec<u16>> =
            interpolate_payload(&payload).into_iter().map(|p| p.into_iter().map(|c| c.0).collect()).collect();
        assert_eq!(payload_from_polys(payload.len(), &polys), Some(payload.clone()));
        assert_eq!(payload_from_polys(payload.len(), &polys[1..]), None);
    }

    #[test]
    fn first_chunks_are_the_payload() {
        let payload: Vec<u8> = (0..96u8).collect();
        let mut enc = Encoder::new(payload.clone()).unwrap();
        let mut joined = Vec::new();
        for _ in 0..3 {
            let c = enc.next_chunk();
            // Chunk c holds words c*16 .. c*16+16, i.e. bytes c*32 .. c*32+32.
            joined.extend_from_slice(&c.data);
        }
        assert_eq!(joined, payload);
    }

    #[test]
    fn interpolation_passes_through_points() {
        let pts: Vec<(Gf16, Gf16)> =
            (0..36u16).map(|i| (Gf16(i.wrapping_mul(7919) ^ 0x55), Gf16(i.wrapping_mul(31337)))).collect();
        let coeffs = interpolate(&pts);
        for (x, y) in pts {
            assert_eq!(evaluate(&coeffs, x), y);
        }
    }

    #[test]
    fn small_payload_decodes_from_redundancy() {
        let mut enc = Encoder::new(b"abcdefghij".to_vec()).unwrap();
        let mut dec = Decoder::new(10);
        dec.add_chunk(&enc.chunk_at(1));
        dec.add_chunk(&enc.chunk_at(2));
        assert_eq!(dec.decoded().unwrap(), b"abcdefghij");
    }

    #[test]
    fn replaced_chunk_changes_the_result() {
        // Mirrors upstream: a chunk with an index already held replaces the held values.
        let payload = vec![7u8; 64];
        let mut enc = Encoder::new(payload.clone()).unwrap();
        let mut dec = Decoder::new(64);
        let c0 = enc.chunk_at(0);
        let mut bad = c0;
        bad.data[0] ^= 1;
        dec.add_chunk(&c0);
        dec.add_chunk(&bad);
        dec.add_chunk(&enc.chunk_at(1));
        assert_ne!(dec.decoded().unwrap(), payload);
        dec.add_chunk(&c0);
        assert_eq!(dec.decoded().unwrap(), payload);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Any `needed` distinct chunks rebuild the payload, for every braid payload size.
        #[test]
        fn any_k_of_n_chunks_decode(
            size in prop::sample::select(vec![2usize, 10, 96, 160, 960, 1152]),
            seed: u64,
            picks in prop::collection::vec(any::<u16>(), 80),
        ) {
            let payload: Vec<u8> = (0..size).map(|i| (seed.rotate_left(i as u32 % 64) as u8) ^ (i as u8)).collect();
            let mut enc = Encoder::new(payload.clone()).unwrap();
            let needed = (size / 2).div_ceil(POLYS);
            let mut dec = Decoder::new(size);
            let mut used = std::collections::BTreeSet::new();
            for p in picks {
                let index = p % 100;
                if !used.insert(index) { continue; }
                prop_assert!(dec.decoded().is_none() || used.len() > needed);
                dec.add_chunk(&enc.chunk_at(index));
                if used.len() >= needed { break; }
            }
            if used.len() >= needed {
                prop_assert_eq!(dec.decoded().unwrap(), payload);
            }
        }

        #[test]
        fn decoder_points_round_trip(size in prop::sample::select(vec![96usize, 160]), idx in prop::collection::vec(0u16..20, 0..8)) {
            let mut enc = Encoder::new(vec![3u8; size]).unwrap();
            let mut dec = Decoder::new(size);
            for i in idx { dec.add_chunk(&enc.chunk_at(i)); }
            let back = Decoder::from_points(size, dec.points()).unwrap();
            prop_assert_eq!(back, dec);
        }
    }
}
