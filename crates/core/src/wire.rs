//! Byte-level reading and writing shared by every format.
//!
//! Integers are big-endian. `lp16` is a 2-byte length followed by that many bytes, `lp32`
//! a 4-byte length. Every format starts with a 3-byte magic and a version byte.

use alloc::vec::Vec;

use crate::error::{Error, FormatError, Result};

/// The only version of every format this build writes and reads.
pub(crate) const VERSION: u8 = 1;

/// A cursor over input bytes. Every read checks bounds; nothing panics on short input.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Reads the 3-byte magic and the version byte, accepting only [`VERSION`].
    pub(crate) fn magic(&mut self, magic: &[u8; 3]) -> Result<()> {
        let got: [u8; 3] = self.array()?;
        if &got != magic {
            return Err(FormatError::BadMagic.into());
        }
        match self.u8()? {
            VERSION => Ok(()),
            v => Err(FormatError::UnknownVersion(v).into()),
        }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(FormatError::UnexpectedEnd.into());
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A 2-byte length prefix and its bytes; the length must lie in `min..=max`.
    pub(crate) fn lp16(&mut self, min: usize, max: usize) -> Result<&'a [u8]> {
        let n = usize::from(self.u16()?);
        check_len(n, min, max)?;
        self.bytes(n)
    }

    /// A 4-byte length prefix and its bytes; the length must lie in `min..=max`.
    pub(crate) fn lp32(&mut self, min: usize, max: usize) -> Result<&'a [u8]> {
        let n = usize::try_from(self.u32()?).map_err(|_| FormatError::TooLong)?;
        check_len(n, min, max)?;
        self.bytes(n)
    }

    /// The bytes not read yet, consuming them.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.buf)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Succeeds only if every byte was consumed.
    pub(crate) fn finish(self) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FormatError::TrailingBytes.into())
        }
    }
}

fn check_len(n: usize, min: usize, max: usize) -> Result<()> {
    if n > max {
        Err(FormatError::TooLong.into())
    } else if n < min {
        Err(FormatError::InvalidValue.into())
    } else {
        Ok(())
    }
}

pub(crate) fn put_magic(out: &mut Vec<u8>, magic: &[u8; 3]) {
    out.extend_from_slice(magic);
    out.push(VERSION);
}

/// Appends a 2-byte length prefix and the bytes. Callers pass values whose length the type
/// system or an earlier check already bounds; a longer value is a [`Error::Limit`].
pub(crate) fn put_lp16(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let n = u16::try_from(bytes.len()).map_err(|_| Error::Limit)?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// Appends a 4-byte length prefix and the bytes.
pub(crate) fn put_lp32(out: &mut Vec<u8>, bytes: &[u8]) -> Result<()> {
    let n = u32::try_from(bytes.len()).map_err(|_| Error::Limit)?;
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// The AEAD associated data of a header: its 4-byte big-endian length, then the header.
pub(crate) fn length_prefixed_aad(header: &[u8]) -> Result<Vec<u8>> {
    let mut aad = Vec::with_capacity(header.len() + 4);
    put_lp32(&mut aad, header)?;
    Ok(aad)
}
