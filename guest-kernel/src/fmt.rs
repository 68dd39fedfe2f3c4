//! Allocation-free text output for kernel messages.
//!
//! Ring 0 must stay off the precompiled `core`'s SSE-using formatting paths
//! (padding, width, char counting), so kernel messages are assembled with
//! these helpers into a fixed buffer instead of `write!` with numbers.

/// A fixed-capacity byte buffer that silently truncates.
pub struct MsgBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> MsgBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// Append bytes, truncating at capacity.
    pub fn bytes(&mut self, s: &[u8]) -> &mut Self {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s[..n]);
        self.len += n;
        self
    }

    /// Append a string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }

    /// Append `0x` and the value in lower-case hex, without leading zeros.
    pub fn hex(&mut self, v: u64) -> &mut Self {
        let mut digits = [0u8; 16];
        let mut n = 0;
        let mut x = v;
        loop {
            digits[15 - n] = b"0123456789abcdef"[(x & 0xf) as usize];
            n += 1;
            x >>= 4;
            if x == 0 {
                break;
            }
        }
        self.str("0x").bytes(&digits[16 - n..])
    }

    /// Append the value in decimal.
    pub fn dec(&mut self, v: u64) -> &mut Self {
        let mut digits = [0u8; 20];
        let mut n = 0;
        let mut x = v;
        loop {
            digits[19 - n] = b'0' + (x % 10) as u8;
            n += 1;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        self.bytes(&digits[20 - n..])
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl<const N: usize> Default for MsgBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> core::fmt::Write for MsgBuf<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_dec_render_like_printf() {
        let mut m = MsgBuf::<64>::new();
        m.str("a ")
            .hex(0)
            .str(" ")
            .hex(0xdead_beef)
            .str(" ")
            .dec(0)
            .str(" ")
            .dec(u64::MAX);
        assert_eq!(m.as_bytes(), b"a 0x0 0xdeadbeef 0 18446744073709551615");
    }

    #[test]
    fn msgbuf_truncates_at_capacity() {
        let mut m = MsgBuf::<4>::new();
        m.str("hello");
        assert_eq!(m.as_bytes(), b"hell");
    }
}
