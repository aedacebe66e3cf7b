//! Bounds-checked reading of the cache's little-endian, length-prefixed
//! encodings (responses, packed snapshots): every read says what it
//! expected, so a short or corrupt buffer is an error, never a panic.

pub(crate) struct Reader<'a> {
    rest: &'a [u8],
    /// Offset of `rest` in the whole buffer, for error messages.
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { rest: buf, at: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn offset(&self) -> usize {
        self.at
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!("truncated at byte {}: {what} needs {n} bytes, {} left", self.at, self.rest.len()));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        self.at += n;
        Ok(head)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u32(&mut self, what: &str) -> Result<usize, String> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")) as usize)
    }

    pub fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    /// u32 length, then that many bytes.
    pub fn blob(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.u32(what)?;
        self.take(n, what)
    }

    /// A blob that must be UTF-8.
    pub fn text(&mut self, what: &str) -> Result<&'a str, String> {
        let at = self.at;
        std::str::from_utf8(self.blob(what)?).map_err(|_| format!("{what} at byte {at} is not UTF-8"))
    }
}
