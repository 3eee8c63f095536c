//! A chunk result's shape, checked in its encoded bytes before it is decoded (issue 17).
//!
//! A result's size is checked against its chunk before a byte of it is read
//! (`JobSpec::max_result_bytes`), but postcard spends one byte on an empty list that takes 24
//! bytes in memory (a `Vec` header), and an empty contour piece three bytes for 56: a peer
//! could make 64 MiB on the wire into well over a gigabyte here before `ChunkResult::validate`
//! rejects it. So this walks the encoding without keeping anything and holds it to the
//! chunk's [`ResultForm`] (what the job's spec says every honest result of it looks like):
//! the variant, the number of heights, lines or levels, every raster line with 1 to `most`
//! points, every contour piece with a point. What passes decodes into at most a few times its
//! size (a one-point contour piece: 19 bytes on the wire, about 90 in memory), and `validate`
//! then checks the rest (finite numbers, keys, points per level) as before.

use millpond_core::geom::Point3;
use millpond_core::job::{ChunkResult, ResultForm};
use millpond_core::sim_job::MoveCut;
use millpond_core::sim_spec::StockForm;
use millpond_core::simulate::Verification;
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, SeqAccess, VariantAccess, Visitor,
};
use std::fmt;
use std::marker::PhantomData;

use crate::wire::WireError;

/// Decodes a chunk result once its shape has passed ([`check`]).
pub fn decode(bytes: &[u8], form: ResultForm) -> Result<ChunkResult, WireError> {
    check(bytes, form)?;
    crate::wire::decode_whole(bytes)
}

/// Walks an encoded [`ChunkResult`] without allocating, holding it to `form`.
pub fn check(bytes: &[u8], form: ResultForm) -> Result<(), WireError> {
    let mut de = postcard::Deserializer::from_bytes(bytes);
    ResultSeed(form)
        .deserialize(&mut de)
        .map_err(|e| WireError::Invalid(format!("result of an impossible shape: {e}")))
}

/// `ChunkResult { chunk, data }`, read and dropped.
struct ResultSeed(ResultForm);

impl<'de> DeserializeSeed<'de> for ResultSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_struct("ChunkResult", &["chunk", "data"], self)
    }
}

impl<'de> Visitor<'de> for ResultSeed {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a chunk result of the form {:?}", self.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        seq.next_element::<u32>()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        seq.next_element_seed(DataSeed(self.0))?
            .ok_or_else(|| de::Error::invalid_length(1, &self))
    }
}

/// `ChunkData`: the variant and the counts `ResultForm` says.
struct DataSeed(ResultForm);

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_enum(
            "ChunkData",
            &["Heights", "Polylines", "Chains", "Stock"],
            self,
        )
    }
}

impl<'de> Visitor<'de> for DataSeed {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "chunk data of the form {:?}", self.0)
    }
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let (variant, access): (u32, _) = data.variant()?;
        match (variant, self.0) {
            // Heights: 8 bytes each on the wire and in memory.
            (0, ResultForm::Heights(n)) => access
                .newtype_variant_seed(Items::<f64>::exactly(n))
                .map(|_| ()),
            (1, ResultForm::Polylines { lines, most }) => {
                access.newtype_variant_seed(Lines { lines, most })
            }
            (2, ResultForm::Chains { levels }) => access
                .newtype_variant_seed(Items::<Items<ChainShape>>::exactly(levels))
                .map(|_| ()),
            (3, ResultForm::Stock(form)) => access.newtype_variant_seed(StockShape(form)),
            (n, form) => Err(de::Error::custom(format!(
                "chunk data {n} where {form:?} is expected"
            ))),
        }
    }
}

/// `sim_job::StockChunk { chunk, heights, passes }`: a list of heights for each of its tiles
/// (1 to `cells_most` each), and for each pass a list of cuts and a check per tile. A tile's
/// cuts may be none, so each costs a byte on the wire and a list in memory, but there are
/// exactly `tiles` of them per pass and `passes` passes: the spec bounds them.
struct StockShape(StockForm);

impl<'de> DeserializeSeed<'de> for StockShape {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_struct("StockChunk", &["chunk", "heights", "passes"], self)
    }
}

impl<'de> Visitor<'de> for StockShape {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a simulation chunk of the form {:?}", self.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let StockForm {
            tiles,
            passes,
            cells_most,
        } = self.0;
        seq.next_element::<u32>()?
            .ok_or_else(|| de::Error::invalid_length(0, &self))?;
        let heights = Items::<()>::exactly(tiles).of_seeds(Items::<f32>::between(1, cells_most));
        seq.next_element_seed(heights)?
            .ok_or_else(|| de::Error::invalid_length(1, &self))?;
        let cuts = Items::<()>::exactly(tiles).of_seeds(Items::<MoveCut>::between(0, usize::MAX));
        let pass = Pair(cuts, Items::<Verification>::exactly(tiles));
        seq.next_element_seed(Items::<()>::exactly(passes).of_seeds(pass))?
            .ok_or_else(|| de::Error::invalid_length(2, &self))
            .map(|_| ())
    }
}

/// A struct of two fields (`ChunkPass { cuts, checks }`), each read with its seed.
#[derive(Clone, Copy)]
struct Pair<A, B>(A, B);

impl<'de, A, B> DeserializeSeed<'de> for Pair<A, B>
where
    A: DeserializeSeed<'de> + Clone,
    B: DeserializeSeed<'de> + Clone,
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_tuple(2, self)
    }
}

impl<'de, A, B> Visitor<'de> for Pair<A, B>
where
    A: DeserializeSeed<'de> + Clone,
    B: DeserializeSeed<'de> + Clone,
{
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("two fields")
    }
    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let short = |n| de::Error::invalid_length(n, &"two fields");
        seq.next_element_seed(self.0)?.ok_or_else(|| short(0))?;
        seq.next_element_seed(self.1)?.ok_or_else(|| short(1))?;
        Ok(())
    }
}

/// One polyline per raster line, each of 1 to `most` points.
struct Lines {
    lines: usize,
    most: usize,
}

impl<'de> DeserializeSeed<'de> for Lines {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let points = Items::<Point3>::between(1, self.most);
        Items::<()>::exactly(self.lines)
            .of_seeds(points)
            .deserialize(d)
            .map(|_| ())
    }
}

/// A list read item by item and dropped: between `least` and `most` items, each read with
/// `seed`. Its length prefix is judged before any item is read.
#[derive(Clone, Copy)]
struct Items<T, S = PhantomData<T>> {
    least: usize,
    most: usize,
    seed: S,
    of: PhantomData<T>,
}

impl<T> Items<T> {
    fn between(least: usize, most: usize) -> Self {
        Self {
            least,
            most,
            seed: PhantomData,
            of: PhantomData,
        }
    }
    fn exactly(n: usize) -> Self {
        Self::between(n, n)
    }
    /// The same bounds, each item read with `seed`.
    fn of_seeds<S>(self, seed: S) -> Items<T, S> {
        Items {
            least: self.least,
            most: self.most,
            seed,
            of: PhantomData,
        }
    }
}

impl<'de, T, S: DeserializeSeed<'de> + Clone> DeserializeSeed<'de> for Items<T, S> {
    /// How many there were.
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T, S: DeserializeSeed<'de> + Clone> Visitor<'de> for Items<T, S> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of {} to {} items", self.least, self.most)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        if let Some(n) = seq.size_hint()
            && (n < self.least || n > self.most)
        {
            return Err(de::Error::invalid_length(n, &self));
        }
        let mut n = 0;
        while seq.next_element_seed(self.seed.clone())?.is_some() {
            n += 1;
            if n > self.most {
                return Err(de::Error::invalid_length(n, &self));
            }
        }
        if n < self.least {
            return Err(de::Error::invalid_length(n, &self));
        }
        Ok(n)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Items::<T>::between(0, usize::MAX)
            .deserialize(d)
            .map(|_| Items::between(0, usize::MAX))
    }
}

/// `waterline::Chain { start, end, points }`, with a point at least.
struct ChainShape;

impl<'de> Deserialize<'de> for ChainShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ChainShape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a contour piece")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ChainShape, A::Error> {
                for i in 0..2 {
                    seq.next_element::<Option<u64>>()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))?;
                }
                let points = Items::<[f64; 2]>::between(1, usize::MAX);
                seq.next_element_seed(points)?
                    .ok_or_else(|| de::Error::invalid_length(2, &self))?;
                Ok(ChainShape)
            }
        }
        d.deserialize_struct("Chain", &["start", "end", "points"], V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use millpond_core::job::ChunkData;
    use millpond_core::waterline::Chain;

    fn encoded(data: ChunkData) -> Vec<u8> {
        postcard::to_stdvec(&ChunkResult { chunk: 3, data }).unwrap()
    }

    fn piece(points: usize) -> Chain {
        Chain {
            start: Some(7),
            end: None,
            points: vec![[1.5, -2.0]; points],
        }
    }

    fn line(points: usize) -> Vec<Point3> {
        vec![Point3::new(1.0, 2.0, 3.0); points]
    }

    const LINES: ResultForm = ResultForm::Polylines { lines: 3, most: 8 };

    #[test]
    fn honest_results_decode_as_they_were() {
        let results = [
            (
                ChunkData::Heights(vec![1.0, 2.5, -3.0]),
                ResultForm::Heights(3),
            ),
            (ChunkData::Heights(Vec::new()), ResultForm::Heights(0)),
            (ChunkData::Polylines(vec![line(4), line(1), line(8)]), LINES),
            // A level without a piece in this chunk is honest; a piece without a point not.
            (
                ChunkData::Chains(vec![vec![piece(1), piece(5)], Vec::new(), vec![piece(2)]]),
                ResultForm::Chains { levels: 3 },
            ),
        ];
        for (data, form) in results {
            let bytes = encoded(data.clone());
            let back = decode(&bytes, form).unwrap();
            assert_eq!(back.data, data);
            // What a member checks before it sends a result up holds for its real bytes.
            let bound = back.encoded_size_bound();
            assert!(bytes.len() as u64 <= bound && bound <= 4 * bytes.len() as u64 + 64);
        }
    }

    #[test]
    fn results_of_another_form_than_their_chunk_s_are_refused_before_decoding() {
        let refused = |data: ChunkData, form: ResultForm| {
            let err = decode(&encoded(data), form).unwrap_err().to_string();
            assert!(err.contains("impossible shape"), "{err}");
        };
        // Lists that swell in memory: each costs one to four bytes on the wire and 24 to 56
        // once decoded; a million of them, a few megabytes sent, would have been 24-56 MB.
        refused(
            ChunkData::Polylines(vec![Vec::new(); 1_000_000]),
            ResultForm::Polylines {
                lines: 1_000_000,
                most: 8,
            },
        );
        refused(
            ChunkData::Chains(vec![vec![piece(0); 1_000_000]]),
            ResultForm::Chains { levels: 1 },
        );
        // More levels, lines or heights than the chunk has, or fewer; judged by the length
        // before any of them is read.
        let levels = ResultForm::Chains { levels: 10 };
        refused(ChunkData::Chains(vec![Vec::new(); 1_000_000]), levels);
        refused(ChunkData::Chains(vec![Vec::new(); 9]), levels);
        refused(ChunkData::Polylines(vec![line(1); 4]), LINES);
        refused(ChunkData::Polylines(vec![line(1); 2]), LINES);
        refused(ChunkData::Heights(vec![0.0; 4]), ResultForm::Heights(3));
        // A line longer than a line of the grid can be, or an empty one among good ones.
        refused(ChunkData::Polylines(vec![line(1), line(9), line(1)]), LINES);
        refused(ChunkData::Polylines(vec![line(1), line(0), line(1)]), LINES);
        // The wrong kind of data for the job.
        refused(ChunkData::Heights(vec![0.0; 3]), LINES);
        refused(
            ChunkData::Polylines(vec![line(1); 3]),
            ResultForm::Heights(3),
        );
    }

    fn stock(tiles: usize, cells: usize, cuts: usize) -> ChunkData {
        let check = Verification {
            tolerance: 1e-3,
            cells,
            gouge: None,
            gouge_cells: 0,
            on_size_cells: cells / 2,
            remaining_max: Some(millpond_core::simulate::Deviation {
                deviation: 0.4,
                x: 1.0,
                y: 2.0,
            }),
            remaining_mean: 0.1,
            remaining_mm3: 12.5,
            histogram: [3; 10],
        };
        let cut = |index| MoveCut {
            index,
            depth: 0.5,
            removed: 1.25,
            across: (-1.0, 1.0),
        };
        ChunkData::Stock(millpond_core::sim_job::StockChunk {
            chunk: 3,
            heights: vec![vec![-0.5; cells]; tiles],
            passes: vec![
                millpond_core::sim_job::ChunkPass {
                    cuts: vec![(0..cuts as u32).map(cut).collect(); tiles],
                    checks: vec![check; tiles],
                };
                2
            ],
        })
    }

    #[test]
    fn simulation_chunks_are_held_to_their_tiles_and_passes_before_decoding() {
        let form = ResultForm::Stock(StockForm {
            tiles: 3,
            passes: 2,
            cells_most: 16,
        });
        for data in [stock(3, 16, 5), stock(3, 1, 0)] {
            let bytes = encoded(data.clone());
            let back = decode(&bytes, form).unwrap();
            assert_eq!(back.data, data);
            let bound = back.encoded_size_bound();
            assert!(bytes.len() as u64 <= bound && bound <= 4 * bytes.len() as u64 + 64);
        }
        let refused = |data: ChunkData| {
            let err = decode(&encoded(data), form).unwrap_err().to_string();
            assert!(err.contains("impossible shape"), "{err}");
        };
        // Tiles or passes more or fewer than the chunk has: a million tiles of one cell, or of
        // none, would swell 24 bytes for each byte sent.
        refused(stock(1_000_000, 1, 0));
        refused(stock(3, 0, 0));
        refused(stock(2, 16, 0));
        refused(stock(3, 17, 0));
        let ChunkData::Stock(mut three) = stock(3, 4, 1) else {
            unreachable!()
        };
        three.passes.push(three.passes[0].clone());
        refused(ChunkData::Stock(three));
        // Another kind of result where a simulation chunk is due, and the other way round.
        refused(ChunkData::Heights(vec![0.0; 3]));
        assert!(decode(&encoded(stock(3, 4, 1)), ResultForm::Heights(3)).is_err());
    }

    #[test]
    fn a_result_cut_short_or_with_bytes_after_it_is_refused() {
        let bytes = encoded(ChunkData::Polylines(vec![line(1), line(2), line(3)]));
        assert!(decode(&bytes, LINES).is_ok());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], LINES).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, LINES).is_err());
    }
}
