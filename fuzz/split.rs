//! How both fuzz targets read their input: a count byte, that many chunk lengths, two
//! parameter bytes, then the payload, cut at those lengths (the rest is the last chunk),
//! so the fuzzer explores where the bytes are split as well as what they are.

/// A fuzz input, read.
pub struct Input<'a> {
    /// The two parameter bytes (each target makes its caps of them).
    pub params: [u8; 2],
    /// The payload, in the chunks it arrives in.
    pub chunks: Vec<&'a [u8]>,
}

/// Reads `data` as above; `None` when it is too short to say all that.
pub fn split(data: &[u8]) -> Option<Input<'_>> {
    let (&count, rest) = data.split_first()?;
    let count = (count % 16) as usize;
    if rest.len() < count + 2 {
        return None;
    }
    let (lengths, rest) = rest.split_at(count);
    let mut payload = &rest[2..];
    let mut chunks = Vec::new();
    for &length in lengths {
        let take = (length as usize).min(payload.len());
        let (chunk, tail) = payload.split_at(take);
        chunks.push(chunk);
        payload = tail;
    }
    chunks.push(payload);
    Some(Input {
        params: [rest[0], rest[1]],
        chunks,
    })
}
