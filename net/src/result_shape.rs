//! A chunk result's shape, checked in its encoded bytes before it is decoded (issue 17).
//!
//! A result's size is checked against its chunk before a byte of it is read
//! (`JobSpec::max_result_bytes`), but postcard spends one byte on an empty list that takes 24
//! bytes in memory (a `Vec` header), and an empty contour piece three bytes for 56: a peer
//! could make 64 MiB on the wire into well over a gigabyte here before `ChunkResult::validate`
//! rejects it. No honest result has empty lists there: every raster line has a point, every
//! contour piece a point, and a job has at most `waterline::MAX_LEVELS` levels. So this walks
//! the encoding without keeping anything and refuses those shapes; what passes decodes into
//! at most a few times its size (a one-point contour piece: 19 bytes on the wire, about 90 in
//! memory), and `validate` then checks it against its job as before.

use millpond_core::geom::Point3;
use millpond_core::job::ChunkResult;
use millpond_core::waterline::MAX_LEVELS;
use serde::Deserialize;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, SeqAccess, VariantAccess, Visitor,
};
use std::fmt;
use std::marker::PhantomData;

use crate::wire::WireError;

/// Decodes a chunk result once its shape has passed ([`check`]).
pub fn decode(bytes: &[u8]) -> Result<ChunkResult, WireError> {
    check(bytes)?;
    crate::wire::decode_whole(bytes)
}

/// Walks an encoded [`ChunkResult`] without allocating: no empty raster line, no empty
/// contour piece, at most `MAX_LEVELS` levels.
pub fn check(bytes: &[u8]) -> Result<(), WireError> {
    postcard::from_bytes::<ResultShape>(bytes)
        .map(|_| ())
        .map_err(|e| WireError::Invalid(format!("result of an impossible shape: {e}")))
}

/// `ChunkResult { chunk, data }`, read and dropped.
struct ResultShape;

impl<'de> Deserialize<'de> for ResultShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ResultShape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a chunk result")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ResultShape, A::Error> {
                seq.next_element::<u32>()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                seq.next_element::<DataShape>()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                Ok(ResultShape)
            }
        }
        d.deserialize_struct("ChunkResult", &["chunk", "data"], V)
    }
}

/// `ChunkData`: heights, polylines or contour pieces per level.
struct DataShape;

impl<'de> Deserialize<'de> for DataShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DataShape;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("chunk data")
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<DataShape, A::Error> {
                let (variant, access): (u32, _) = data.variant()?;
                match variant {
                    // Heights: 8 bytes each on the wire and in memory.
                    0 => access.newtype_variant_seed(Items::<f64>::any())?,
                    // One polyline per raster line, each with a point.
                    1 => access.newtype_variant_seed(Items::<NonEmpty<Point3>>::any())?,
                    // Per level, its contour pieces, each with a point.
                    2 => access
                        .newtype_variant_seed(Items::<Items<ChainShape>>::at_most(MAX_LEVELS))?,
                    n => return Err(de::Error::custom(format!("unknown chunk data {n}"))),
                };
                Ok(DataShape)
            }
        }
        d.deserialize_enum("ChunkData", &["Heights", "Polylines", "Chains"], V)
    }
}

/// A list read item by item and dropped, of at most `most` items.
struct Items<T> {
    most: usize,
    of: PhantomData<T>,
}

impl<T> Items<T> {
    fn any() -> Self {
        Self::at_most(usize::MAX)
    }
    fn at_most(most: usize) -> Self {
        Self {
            most,
            of: PhantomData,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Items<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Items::<T>::any().deserialize(d).map(|_| Items::any())
    }
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Items<T> {
    /// How many there were.
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for Items<T> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a list of at most {} items", self.most)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while seq.next_element::<T>()?.is_some() {
            n += 1;
            if n > self.most {
                return Err(de::Error::invalid_length(n, &self));
            }
        }
        Ok(n)
    }
}

/// A list with at least one item.
struct NonEmpty<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for NonEmpty<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Items::<T>::any().deserialize(d)? {
            0 => Err(de::Error::invalid_length(0, &"at least one item")),
            _ => Ok(NonEmpty(PhantomData)),
        }
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
                seq.next_element::<NonEmpty<[f64; 2]>>()?
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

    #[test]
    fn honest_results_decode_as_they_were() {
        let results = [
            ChunkData::Heights(vec![1.0, 2.5, -3.0]),
            ChunkData::Heights(Vec::new()),
            ChunkData::Polylines(vec![vec![Point3::new(1.0, 2.0, 3.0); 4]; 3]),
            // A level without a piece in this chunk is honest; a piece without a point not.
            ChunkData::Chains(vec![vec![piece(1), piece(5)], Vec::new(), vec![piece(2)]]),
        ];
        for data in results {
            let bytes = encoded(data.clone());
            let back = decode(&bytes).unwrap();
            assert_eq!(back.data, data);
            // What a member checks before it sends a result up holds for its real bytes.
            let bound = back.encoded_size_bound();
            assert!(bytes.len() as u64 <= bound && bound <= 4 * bytes.len() as u64 + 64);
        }
    }

    #[test]
    fn lists_that_swell_in_memory_are_refused_before_decoding() {
        // Each costs one to four bytes on the wire and 24 to 56 once decoded: a million
        // of them, a few megabytes sent, would have been 24-56 MB here.
        let empty_lines = ChunkData::Polylines(vec![Vec::new(); 1_000_000]);
        let empty_pieces = ChunkData::Chains(vec![vec![piece(0); 1_000_000]]);
        let levels = ChunkData::Chains(vec![Vec::new(); MAX_LEVELS + 1]);
        for data in [empty_lines, empty_pieces, levels] {
            let bytes = encoded(data);
            assert!(bytes.len() <= 4_000_010, "{}", bytes.len());
            let err = decode(&bytes).unwrap_err().to_string();
            assert!(err.contains("impossible shape"), "{err}");
        }
        // One empty line among good ones is enough.
        let mut lines = vec![vec![Point3::new(0.0, 0.0, 0.0)]; 10];
        lines[7].clear();
        assert!(decode(&encoded(ChunkData::Polylines(lines))).is_err());
        // At the level cap, empty levels are still honest.
        let at_cap = ChunkData::Chains(vec![Vec::new(); MAX_LEVELS]);
        assert!(decode(&encoded(at_cap)).is_ok());
    }

    #[test]
    fn a_result_cut_short_or_with_bytes_after_it_is_refused() {
        let bytes = encoded(ChunkData::Polylines(vec![vec![Point3::new(1.0, 2.0, 3.0)]]));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }
}
