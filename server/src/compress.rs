//! Response compression negotiated from `Accept-Encoding`.

use std::io::Write;

/// A content coding cairn can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    Brotli,
}

// Fast settings: responses are compressed on every cache miss, and on
// 1-10 KB of JSON these keep most of the ratio of the slow ones.
const GZIP_LEVEL: u32 = 3;
const BROTLI_QUALITY: u32 = 4;
const BROTLI_WINDOW: u32 = 20;

impl Encoding {
    /// The client's preferred coding among those it accepts (q > 0); brotli
    /// when it ranks brotli and gzip alike, since it is the smaller.
    pub fn negotiate(accept: Option<&str>) -> Encoding {
        let Some(accept) = accept else { return Encoding::Identity };
        let (mut br, mut gzip, mut star) = (None, None, None);
        for item in accept.split(',') {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or_else(|| p.trim().strip_prefix("Q=")))
                .find_map(|v| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match name.as_str() {
                "br" => br = Some(q),
                "gzip" | "x-gzip" => gzip = Some(q),
                "*" => star = Some(q),
                _ => {}
            }
        }
        let br = br.or(star).unwrap_or(0.0);
        let gzip = gzip.or(star).unwrap_or(0.0);
        if br > 0.0 && br >= gzip {
            Encoding::Brotli
        } else if gzip > 0.0 {
            Encoding::Gzip
        } else {
            Encoding::Identity
        }
    }

    /// The `Content-Encoding` value.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Encoding::Identity => None,
            Encoding::Gzip => Some("gzip"),
            Encoding::Brotli => Some("br"),
        }
    }

    pub fn compress(self, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() / 3 + 64);
        {
            let mut w = self.writer(&mut out);
            // Writing to a Vec cannot fail.
            let _ = w.write_all(body);
            let _ = w.flush();
        }
        out
    }

    /// A writer that compresses into `inner`, finishing the stream when
    /// dropped.
    pub fn writer<'a, W: Write + Send + 'a>(self, inner: W) -> Box<dyn Write + Send + 'a> {
        match self {
            Encoding::Identity => Box::new(inner),
            Encoding::Gzip => Box::new(flate2::write::GzEncoder::new(inner, flate2::Compression::new(GZIP_LEVEL))),
            Encoding::Brotli => {
                Box::new(brotli::CompressorWriter::new(inner, 16 * 1024, BROTLI_QUALITY, BROTLI_WINDOW))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn negotiation_follows_q_values() {
        assert_eq!(Encoding::negotiate(None), Encoding::Identity);
        assert_eq!(Encoding::negotiate(Some("gzip, deflate")), Encoding::Gzip);
        assert_eq!(Encoding::negotiate(Some("gzip, deflate, br")), Encoding::Brotli);
        assert_eq!(Encoding::negotiate(Some("br;q=0.5, gzip")), Encoding::Gzip);
        assert_eq!(Encoding::negotiate(Some("br;q=0, gzip;q=0")), Encoding::Identity);
        assert_eq!(Encoding::negotiate(Some("*")), Encoding::Brotli);
        assert_eq!(Encoding::negotiate(Some("identity")), Encoding::Identity);
    }

    #[test]
    fn compressed_bodies_decode_to_the_original() {
        let body = "{\"type\":\"FeatureCollection\"}".repeat(100);
        let gz = Encoding::Gzip.compress(body.as_bytes());
        let mut back = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut back).unwrap();
        assert_eq!(back, body);
        let br = Encoding::Brotli.compress(body.as_bytes());
        let mut back = String::new();
        brotli::Decompressor::new(&br[..], 4096).read_to_string(&mut back).unwrap();
        assert_eq!(back, body);
        assert!(br.len() < body.len() / 10 && gz.len() < body.len() / 10);
    }
}
