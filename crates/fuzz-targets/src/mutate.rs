//! A small deterministic mutator for the stable replay (`tests/replay.rs`): from the corpus of
//! a target, a reproducible sequence of inputs (bit flips, byte insertions and deletions,
//! interesting bytes, repeated and spliced chunks), so that CI exercises each target beyond its
//! seeds without libFuzzer, and a failure names an input that can be made again.

/// Bytes that matter to the parsers: JSON, TOML, YAML and HTTP punctuation, line ends, dots,
/// percent signs, and bytes that are not ASCII or not UTF-8.
const INTERESTING: &[u8] = b"\0\n\r\t :,.%/\\\"'{}[]#=-&?*0123456789eEfF\x7f\x80\xc3\xff";

/// A xorshift64* generator: the same seed gives the same inputs on every machine.
#[derive(Debug, Clone)]
pub struct Mutator {
    state: u64,
}

impl Mutator {
    /// A mutator starting from `seed`.
    pub fn new(seed: u64) -> Mutator {
        Mutator { state: seed.max(1) }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `bound` (0 when `bound` is 0).
    fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            return 0;
        }
        // The bound is small (an input's length): the modulo bias does not matter here.
        (self.next() % bound as u64) as usize
    }

    /// A new input: `base` changed by one to four mutations, some taking bytes from `other`
    /// (another input of the corpus). The result is at most `max_len` bytes.
    pub fn mutate(&mut self, base: &[u8], other: &[u8], max_len: usize) -> Vec<u8> {
        let mut input = base.to_vec();
        for _ in 0..1 + self.below(4) {
            self.mutate_once(&mut input, other);
        }
        input.truncate(max_len);
        input
    }

    fn mutate_once(&mut self, input: &mut Vec<u8>, other: &[u8]) {
        let len = input.len();
        match self.below(7) {
            0 if len > 0 => {
                let i = self.below(len);
                input[i] ^= 1 << self.below(8);
            }
            1 => {
                let at = self.below(len + 1);
                let byte = INTERESTING[self.below(INTERESTING.len())];
                input.insert(at, byte);
            }
            2 if len > 0 => {
                let i = self.below(len);
                input[i] = INTERESTING[self.below(INTERESTING.len())];
            }
            3 if len > 0 => {
                let start = self.below(len);
                let end = start + 1 + self.below((len - start).min(16));
                input.drain(start..end);
            }
            4 if len > 0 => {
                // Repeat a chunk: nesting, long lines, duplicate keys and headers.
                let start = self.below(len);
                let end = start + 1 + self.below((len - start).min(32));
                let chunk = input[start..end].to_vec();
                for _ in 0..1 + self.below(8) {
                    input.splice(end..end, chunk.iter().copied());
                }
            }
            5 if !other.is_empty() => {
                // Splice in a chunk of another input.
                let start = self.below(other.len());
                let end = start + 1 + self.below((other.len() - start).min(64));
                let at = self.below(len + 1);
                input.splice(at..at, other[start..end].iter().copied());
            }
            _ => {
                let at = self.below(len + 1);
                input.truncate(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Mutator;

    #[test]
    fn the_same_seed_gives_the_same_inputs_and_they_differ_from_the_base() {
        let base = b"{\"jsonrpc\":\"2.0\",\"id\":1}".as_slice();
        let run = |seed| {
            let mut mutator = Mutator::new(seed);
            (0..50)
                .map(|_| mutator.mutate(base, b"other", 64))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        assert!(run(7).iter().any(|input| input != base));
        assert!(run(7).iter().all(|input| input.len() <= 64));
    }
}
